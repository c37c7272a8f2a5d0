"""Reading captions to parse: plain text, JSON Lines, Track-2 label files, or stdin.

Every bad line is an :class:`~attrret.errors.InputError` naming the file and line; with
``skip_bad`` it is handed to ``on_skip`` and the rest is read. Lines come from
:func:`attrret.data.track2.iter_lines` (BOM, terminators, UTF-8 errors by line), whose
``on_error`` hook lets ``--skip-bad`` step over a non-UTF-8 line too. Label lines are decoded with
:func:`attrret.data.track2.parse_label_line`, so a label file is held to the same rules here
as everywhere else (field count, 21-bit code, vehicle vocabulary).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from attrret.data.track2 import iter_lines, parse_label_line
from attrret.errors import InputError
from attrret.schema import Schema, load_schema
from attrret.schema.codes import CodeError

__all__ = ["CaptionLine", "Format", "FORMATS", "read_captions", "detect_format", "STDIN_NAME"]

Format = Literal["txt", "jsonl", "label"]
FORMATS: tuple[str, ...] = ("auto", "txt", "jsonl", "label")
STDIN_NAME = "<stdin>"
SkipHandler = Callable[[InputError], None]


@dataclass(frozen=True)
class CaptionLine:
    """A caption to parse and where it came from (1-based line number)."""

    caption: str
    line: int


def detect_format(name: str, first_line: str | None) -> Format:
    """``.jsonl``/``.ndjson`` files and lines starting with ``{`` are JSON Lines; lines with
    ``$`` are Track-2 labels (captions never contain ``$``); anything else is plain text."""
    if name.lower().endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if first_line is not None:
        if first_line.lstrip().startswith("{"):
            return "jsonl"
        if "$" in first_line:
            return "label"
    return "txt"


def _caption_from_json(text: str) -> str:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, found {type(obj).__name__}")
    for key in ("caption", "text"):
        if key in obj:
            value = obj[key]
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{key!r} must be a non-empty string")
            return value
    raise ValueError("JSON object has no 'caption' or 'text' key")


def _caption_of(text: str, fmt: str, schema: Schema) -> str:
    """The caption on one decoded line; ValueError or CodeError says why there is none."""
    if not text.strip():
        raise ValueError("empty line")
    if fmt == "txt":
        return text
    if fmt == "jsonl":
        return _caption_from_json(text)
    return parse_label_line(text, schema)[3]


def read_captions(
    path: str | Path,
    *,
    fmt: str = "auto",
    skip_bad: bool = False,
    on_skip: SkipHandler | None = None,
    data: bytes | None = None,
    schema: Schema | None = None,
) -> tuple[list[CaptionLine], Format]:
    """Read the captions of ``path`` in order; returns them and the format used.

    ``data``: the bytes to read instead of opening ``path`` (stdin; ``path`` then only names
    the source in messages). ``fmt``: one of :data:`FORMATS`.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    name = str(path)
    # Undecodable lines come back as errors in their place, so they are raised or skipped in
    # line order together with every other kind of bad line.
    lines: list[tuple[int, str] | InputError] = []
    for entry in iter_lines(name, on_error=lines.append, data=data):
        lines.append(entry)
    if fmt == "auto":
        first = next((ln[1] for ln in lines if isinstance(ln, tuple) and ln[1].strip()), None)
        fmt = detect_format(name, first)
    schema = schema or load_schema()

    out: list[CaptionLine] = []
    for entry in lines:
        if isinstance(entry, InputError):
            err = entry
        else:
            no, text = entry
            try:
                out.append(CaptionLine(_caption_of(text, fmt, schema), no))
                continue
            except (ValueError, CodeError) as exc:
                err = InputError(str(exc), name, no)
        if not skip_bad:
            raise err
        if on_skip is not None:
            on_skip(err)
    if not out:
        raise InputError("no captions to parse", name)
    return out, fmt  # type: ignore[return-value]
