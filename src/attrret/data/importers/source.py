"""What an importer hands to the writer: source images with their mapped values."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from attrret.data.records import SPLITS
from attrret.data.track2 import check_image_name
from attrret.errors import InputError
from attrret.schema import Schema
from attrret.validation import Name, Record, load

__all__ = ["ImportOptions", "SourceImage", "SourceRecord", "Source", "Format"]

#: The longest image name or identity an import writes (a file name's limit on most file systems).
MAX_NAME = 255


@dataclass(frozen=True)
class ImportOptions:
    """Options shared by the formats. ``images``: where the images are when the format's usual
    places do not hold them (PA-100K, CSV). ``kind``: the subject of a CSV without a kind column.
    The fractions and seed make the identity split of a source without a split of its own."""

    images: Path | None = None
    kind: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    skip_missing: bool = False


@dataclass(frozen=True)
class SourceImage:
    """One image to import. ``values`` holds the known groups only. ``split`` is the source's own
    split, or ``None`` (then :func:`attrret.data.splits.identity_split` decides by ``identity``).
    ``name`` is the (flat, unique) name in the output; ``where`` says where the source lists it."""

    path: Path
    name: str
    kind: str
    values: dict[str, str]
    split: str | None
    identity: str
    where: str

    def checked(self, schema: Schema) -> SourceImage:
        """This image with every field checked (:class:`SourceRecord`), or one :class:`InputError`
        naming where the source lists it and the field."""
        raw = {"name": self.name, "kind": self.kind, "values": self.values, "split": self.split,
               "identity": self.identity}
        load(SourceRecord, raw, "", error=lambda message: InputError(message, self.where),
             context={"schema": schema})
        return self


class SourceRecord(Record):
    """What every importer hands over, whatever the source format: checked in one place, against
    the schema (``context["schema"]``: its groups and classes for the image's kind)."""

    name: Annotated[Name, Field(max_length=MAX_NAME)]
    kind: Literal["pedestrian", "vehicle"]
    values: dict[str, str]
    split: Literal[*SPLITS] | None = None
    identity: Annotated[Name, Field(max_length=MAX_NAME)]

    @field_validator("name")
    @classmethod
    def _flat_name(cls, name: str) -> str:
        check_image_name(name)
        if "$" in name or "\n" in name or "/" in name or "\\" in name:
            raise ValueError(f"image name {name!r} has a '/', a '$' or a line break")
        return name

    @model_validator(mode="after")
    def _known_values(self, info: ValidationInfo) -> SourceRecord:
        schema: Schema = info.context["schema"]
        subject = schema.pedestrian if self.kind == "pedestrian" else schema.vehicle
        for group, cls in self.values.items():
            if group not in subject.group_names:
                raise ValueError(f"{group} is not a {self.kind} group (valid: {', '.join(subject.group_names)})")
            classes = subject.group(group).classes
            if cls not in classes:
                raise ValueError(f"{group}: unknown class {cls!r}; valid: {', '.join(classes)}")
        if self.kind == "vehicle" and not self.values:
            raise ValueError(f"a vehicle needs at least one of {', '.join(subject.group_names)}")
        return self


@dataclass
class Source:
    """A parsed source: its images and the counts of what was left out, by reason."""

    items: list[SourceImage]
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


@dataclass(frozen=True)
class Format:
    """A row of the format registry: the module whose ``read(src, options, schema)`` parses the format."""

    name: str
    module: str
    help: str

    @property
    def read(self) -> Callable[[Path, ImportOptions, Schema], Source]:
        return importlib.import_module(self.module).read
