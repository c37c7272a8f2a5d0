"""The one check of what every importer hands over (:meth:`attrret.data.importers.source.SourceImage.checked`):
a typed model of the validation layer (:mod:`attrret.validation`), checked against the schema."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from attrret.data.records import SPLITS
from attrret.data.track2 import check_image_name
from attrret.schema import Schema
from attrret.validation import Name, Record

__all__ = ["SourceRecord", "MAX_NAME"]

#: The longest image name or identity an import writes (a file name's limit on most file systems).
MAX_NAME = 255


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
