"""What an importer hands to the writer: source images with their mapped values."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from attrret.errors import InputError
from attrret.schema import Schema

__all__ = ["ImportOptions", "SourceImage", "Source", "Format"]


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
        """This image with every field checked (``record.SourceRecord``), or one :class:`InputError`
        naming where the source lists it and the field."""
        from attrret.data.importers.record import SourceRecord  # pydantic: only when importing
        from attrret.validation import load

        raw = {"name": self.name, "kind": self.kind, "values": self.values, "split": self.split,
               "identity": self.identity}
        load(SourceRecord, raw, "", error=lambda message: InputError(message, self.where),
             context={"schema": schema})
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
