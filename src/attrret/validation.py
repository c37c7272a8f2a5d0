"""One validation layer for the files attrret reads: typed models with bounds, one error.

Every structured file attrret reads back (an index header and its names file, a shard
manifest, checkpoint metadata, ONNX metadata, an import source's records) is described by a
pydantic model next to its reader, built from the field types here, and read through
:func:`load`. So every value is checked for kind, range, finiteness and uniqueness *before*
anything uses it, in one place per file, and a bad value is one :class:`AttrretError` that names
the file and the field (``models[0].path``), not a ``KeyError`` three calls later.

Why strict: a file attrret wrote holds exactly the kinds it wrote. A float ``count``, a string
width or ``true`` for a number is damage (or tampering), and guessing what it meant is how a
wrong answer gets through. Bulk numbers (probability matrices, label matrices) are not records:
their readers check them with NumPy in one pass (finiteness and range), beside these models.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, PlainValidator, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from attrret.errors import AttrretError, CheckpointError

__all__ = ["Record", "STRICT", "Count", "Positive", "Name", "Finite", "PositiveFinite", "Sha256", "MAX_INPUT_SIDE",
           "Pixels", "ImageSize", "Span", "unique", "UniqueNames", "load", "describe"]

#: The configuration of every model and adapter here: no coercion, no NaN or infinity, and the
#: input value kept out of the error (it may be megabytes; :func:`describe` quotes a short form).
STRICT = ConfigDict(strict=True, allow_inf_nan=False, hide_input_in_errors=True)


class Record(BaseModel):
    """Base of the file models: strict, immutable, and open to fields a newer attrret adds (a
    file may carry more than this version reads; what it reads is checked)."""

    model_config = ConfigDict(**STRICT, frozen=True, extra="allow", populate_by_name=True)


#: A count: a whole number >= 0 (``True`` is not one).
Count = Annotated[int, Field(ge=0)]
#: A whole number >= 1.
Positive = Annotated[int, Field(ge=1)]
#: A non-empty string.
Name = Annotated[str, StringConstraints(min_length=1)]
#: A finite number (an int is accepted where a float is meant, as JSON writes ``1.0`` as ``1``).
Finite = Annotated[float, Field(allow_inf_nan=False)]
#: A finite number > 0.
PositiveFinite = Annotated[float, Field(gt=0, allow_inf_nan=False)]
#: A SHA-256 digest: 64 lowercase hex digits.
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
#: The largest image side (pixels) a file may ask for: model inputs are allocated from it, a
#: batch at a time (64 x 3 x 4096 x 4096 float32 is 12 GiB already).
MAX_INPUT_SIDE = 4096
#: An image side in pixels, 1..MAX_INPUT_SIDE.
Pixels = Annotated[int, Field(ge=1, le=MAX_INPUT_SIDE)]


def _image_size(value: object) -> list[int]:
    def side(x: object) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= MAX_INPUT_SIDE

    if side(value):  # N: N x N, as files from before rectangles have it
        return [value, value]  # type: ignore[list-item]
    if isinstance(value, list) and len(value) == 2 and all(map(side, value)):
        return list(value)
    raise ValueError(f"must be [height, width] in pixels, each 1..{MAX_INPUT_SIDE:,}, got {_short(value)}")


#: An image size: ``[H, W]`` (or ``N``, read as ``[N, N]``), each side 1..MAX_INPUT_SIDE.
ImageSize = Annotated[object, PlainValidator(_image_size)]


def _span(v: list[int]) -> list[int]:
    if v[0] >= v[1]:
        raise ValueError(f"[start, stop] needs start < stop, got {v}")
    return v


#: Columns ``[start, stop)`` of a matrix, ``start < stop``: a task's probabilities in an index.
Span = Annotated[list[Count], Field(min_length=2, max_length=2), AfterValidator(_span)]


def unique(items: list) -> list:
    """Refuse a list with a repeated entry, naming the first (a repeated image name lists one
    image twice; a repeated class makes two columns one)."""
    if len(set(items)) != len(items):
        seen: set = set()
        dup = next(x for x in items if x in seen or seen.add(x))
        raise ValueError(f"{_short(dup)} appears twice")
    return items


#: Distinct non-empty strings.
UniqueNames = Annotated[list[Name], AfterValidator(unique)]

M = TypeVar("M")


def load(
    model: type[M] | TypeAdapter,
    raw: object,
    what: str,
    fix: str = "",
    error: Callable[[str], AttrretError] = CheckpointError,
    context: dict | None = None,
) -> M:
    """``raw`` (parsed JSON, a metadata map, a source record) validated as ``model``, or one
    ``error(f"{what}: {field}: {problem}; {fix}")``. ``what`` names the file and what it is
    (``"/x/index/header.json: damaged index header"``); the error carries no traceback context.
    ``context``: what a model's validators check against (the schema, for import sources)."""
    adapter = model if isinstance(model, TypeAdapter) else _adapter(model)
    try:
        return adapter.validate_python(raw, context=context)
    except ValidationError as exc:
        message = f"{what}: {describe(exc)}" if what else describe(exc)
        raise error(f"{message}; {fix}" if fix else message) from None


def describe(exc: ValidationError) -> str:
    """The first problem of ``exc`` as ``field path: problem`` (``models[0].path: Field required``)."""
    first = exc.errors(include_url=False)[0]
    where = field_path(first["loc"])
    problem = first["msg"].removeprefix("Value error, ")
    if first["type"] not in ("missing", "value_error") and "input" in first:  # what was there instead
        problem += f", got {_short(first['input'])}"
    more = exc.error_count() - 1
    problem += f" (and {more} more problem{'s' * (more > 1)})" if more else ""
    return f"{where}: {problem}" if where else problem


def field_path(loc: Sequence[int | str]) -> str:
    """pydantic's error location as a path a user can find in the file: ``models[0].path``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part) in _TYPE_TAGS or re.fullmatch(r"[\w-]+\[.*\]", str(part)):
            continue  # a union member's tag (int, list[int]), not a place in the file
        else:
            out += f".{part}" if out else str(part)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_TAGS = frozenset({"int", "float", "str", "bool", "list", "dict", "none"})


@functools.cache
def _adapter(model: type) -> TypeAdapter:
    """One adapter per model or type (building one compiles its validator)."""
    own = hasattr(model, "__pydantic_config__") or (isinstance(model, type) and issubclass(model, BaseModel))
    return TypeAdapter(model) if own else TypeAdapter(model, config=STRICT)
