"""The typed models of an index's files (the validation layer, :mod:`attrret.validation`): its
``header.json`` and names file, and the header a shard carries. Apart from
:mod:`attrret.retrieval.index` so that importing the index module (every command does, through
the ranker) does not import pydantic; they load when a file is read."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator
from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

from attrret.precisions import PRECISION_NAMES
from attrret.retrieval.index_names import FORMAT, plain_data_file
from attrret.validation import STRICT, Count, Finite, ImageSize, Name, Record, Sha256, Span, UniqueNames

__all__ = ["HeaderFile", "PlannedHeader", "ModelEntry", "FileRecord", "NamesFile"]


def _data_file_name(name: str) -> str:
    if not plain_data_file(name):
        raise ValueError(f"{name[:60]!r} is not an index data file name (probs-*.npy, names-*.json or meta-*.parquet, no folder)")
    return name


DataFile = Annotated[str, AfterValidator(_data_file_name)]


class ModelEntry(Record):
    """One model of an index header: what staleness (``check_fresh``) and the explanations read."""

    task: Name
    path: Name
    sha256: Name
    relpath: str = ""


class HeaderFile(Record):
    """``header.json`` as written by :func:`write_index` (:class:`IndexHeader` is what code uses)."""

    format: Literal[FORMAT]
    schema_fingerprint: Name = Field(alias="schema")
    count: Count
    columns: dict[Name, Span]
    models: list[ModelEntry]
    img_sizes: list[ImageSize]
    tta: Literal["flip", "none"]
    weights: list[Finite]
    probs_file: DataFile
    names_file: DataFile
    source: str = ""
    schema_source: str = ""
    precision: Literal["", *PRECISION_NAMES] = ""  # empty: written before precision was recorded
    meta_file: Literal[""] | DataFile = ""
    meta_source: str = ""
    meta_sha256: Literal[""] | Sha256 = ""
    gate: Literal["", "router", "none"] = ""  # empty: written before gating (every model on every image)


class PlannedHeader(HeaderFile):
    """The header a run plans before it writes data files (a shard carries it): no file names yet."""

    probs_file: Literal[""] = ""
    names_file: Literal[""] = ""
    meta_file: Literal[""] = ""


class FileRecord(TypedDict, total=False):
    """Where a row's image was when it was predicted (serve checks the file is still that one).
    Each field is optional (a library caller may record none), and checked when present."""

    __pydantic_config__ = ConfigDict(**STRICT, extra="allow")  # type: ignore[misc]
    path: Name
    size: Count
    mtime_ns: int


class NamesFile(Record):
    """``names-<token>.json``: the image names in row order, unique, and (since predict records
    them) one file record per name."""

    names: UniqueNames
    files: list[FileRecord] = []

    @model_validator(mode="after")
    def _one_record_per_name(self) -> NamesFile:
        if self.files and len(self.files) != len(self.names):
            raise ValueError(f"files lists {len(self.files)} records for {len(self.names)} names")
        return self
