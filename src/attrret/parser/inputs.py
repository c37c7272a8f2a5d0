"""Reading captions to parse: plain text, JSON Lines, Track-2 label files, or stdin.

Every bad line is an :class:`~attrret.errors.InputError` naming the file and line; with
``skip_bad`` it is handed to ``on_skip`` and the rest is read. Unlike
:func:`attrret.data.track2.iter_lines`, which stops at the first undecodable line, this
reader decodes line by line so that ``--skip-bad`` can step over a non-UTF-8 line too
(same BOM, terminator and error-message conventions). Label lines are decoded with
:func:`attrret.data.track2.parse_label_line`, so a label file is held to the same rules here
as everywhere else (field count, 21-bit code, vehicle vocabulary).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from attrret.data.track2 import parse_label_line
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


def _split_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    for i, raw in enumerate(raw_lines, start=1):
        yield i, raw[:-1] if raw.endswith(b"\r") else raw


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})") from None


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
    if data is None:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise InputError("file not found", name) from None
        except IsADirectoryError:
            raise InputError("is a directory, expected a file", name) from None
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", name) from None

    lines = list(_split_lines(data))
    if fmt == "auto":
        first = None
        for _, raw in lines:
            if raw.strip():
                try:
                    first = _decode(raw)
                except ValueError:
                    continue
                break
        fmt = detect_format(name, first)
    schema = schema or load_schema()

    out: list[CaptionLine] = []
    for no, raw in lines:
        try:
            text = _decode(raw)
            if not text.strip():
                raise ValueError("empty line")
            if fmt == "txt":
                caption = text
            elif fmt == "jsonl":
                caption = _caption_from_json(text)
            else:
                caption = parse_label_line(text, schema)[3]
        except (ValueError, CodeError) as exc:
            err = InputError(str(exc), name, no)
            if not skip_bad:
                raise err from None
            if on_skip is not None:
                on_skip(err)
            continue
        out.append(CaptionLine(caption, no))
    if not out:
        raise InputError("no captions to parse", name)
    return out, fmt  # type: ignore[return-value]
