"""Track-2 file formats, read and written exactly (see docs/track2.md).

- label files: ``image$attribute$caption`` per line; the attribute is a 21-bit code for
  pedestrians and text such as ``white Audi.`` for vehicles;
- ``test_text.txt``: one caption per line;
- the submission: ``{"results": [{"text": line, "image_names": [...]}, ...]}`` in caption order;
- the organisers' ground truth ``test_gt.txt``: ``text$img1$img2...``.

A pedestrian code has a bit for every Track-2 group, so a label file alone cannot say that a
group is unknown (imported PETA images have no orientation), nor hold a group outside the code
(hair, clothing colours: groups without ``bits``, unknown unless said otherwise). A sparse side
file beside the label file, ``<split>_unknown.jsonl`` for ``<split>_label.txt``
(``labels_unknown.jsonl`` for ``labels.txt``), says both per image: the code's groups to drop
and the values of groups outside the code, ``{"image": "x.jpg", "unknown": ["orientation"],
"values": {"hair": "long", "upper_color_red": "yes"}}`` (``values`` optional).
:func:`read_label_file` applies it, so every reader sees the same values.

Captions are kept byte-exact: only the line terminator (``\\n`` or ``\\r\\n``) is removed.
Every error names the file and line. With ``skip_bad=True`` a bad line is reported through
``on_skip`` and left out instead of stopping the read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from attrret.errors import InputError
from attrret.io import atomic_write_text
from attrret.schema import Schema, load_schema
from attrret.schema.codes import CodeError, code21_to_values, parse_code21, vehicle_text_to_values

__all__ = [
    "LabelLine",
    "iter_lines",
    "read_label_file",
    "is_label_file",
    "read_test_text",
    "write_submission",
    "read_submission",
    "read_gt",
    "write_gt",
    "check_image_name",
    "unknown_file",
]

SkipHandler = Callable[[InputError], None]


@dataclass(frozen=True)
class LabelLine:
    """One parsed label line: ``values`` holds the known groups only (vehicle labels are incomplete)."""

    image: str
    kind: str  # "pedestrian" | "vehicle"
    attribute: str
    caption: str
    values: dict[str, str]
    line: int


def iter_lines(
    path: str | Path,
    *,
    on_error: Callable[[InputError], None] | None = None,
    data: bytes | None = None,
) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for a UTF-8 text file; BOM stripped, terminators removed.

    Non-UTF-8 bytes raise an :class:`InputError` naming the line (decoding line by line so
    the message can say where). With ``on_error``, such a line is reported through it and
    skipped instead, so a caller's "skip bad lines" mode also steps over undecodable ones
    (later line numbers are unchanged). ``data``: the bytes to read instead of opening
    ``path`` (e.g. stdin); ``path`` then only names the source in messages.
    """
    if data is None:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise InputError("file not found", path) from None
        except IsADirectoryError:
            raise InputError("is a directory, expected a file", path) from None
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", path) from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    for i, raw in enumerate(raw_lines, start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            err = InputError(f"not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})", path, i)
            if on_error is None:
                raise err from None
            on_error(err)
            continue
        yield i, text


def check_image_name(name: str) -> str:
    """Refuse image names that could escape the image folder (absolute paths, ``..``)."""
    if not name or name.strip() != name:
        raise ValueError(f"bad image name {name!r}")
    for p in (PurePosixPath(name), PureWindowsPath(name)):
        if p.is_absolute() or p.anchor or ".." in p.parts:
            raise ValueError(f"image name {name!r} is an absolute path or leaves the image folder")
    return name


def parse_label_line(text: str, schema: Schema) -> tuple[str, str, str, str, dict[str, str]]:
    """Split and decode one label line; raises ValueError with a reason on bad input."""
    fields = text.split("$")
    if len(fields) != 3:
        raise ValueError(f"expected 3 '$'-separated fields (image$attribute$caption), found {len(fields)}")
    image, attribute, caption = fields
    check_image_name(image)
    if not caption.strip():
        raise ValueError("empty caption")
    if "," in attribute or attribute.strip().isdigit():
        values = code21_to_values(parse_code21(attribute, schema.pedestrian), schema.pedestrian)
        kind = "pedestrian"
    else:
        values = vehicle_text_to_values(attribute, schema)
        kind = "vehicle"
    return image, kind, attribute, caption, values


def read_label_file(
    path: str | Path,
    schema: Schema | None = None,
    *,
    skip_bad: bool = False,
    on_skip: SkipHandler | None = None,
) -> list[LabelLine]:
    """Read a Track-2 label file (``image$attribute$caption``), in file order.

    Empty lines are errors too (they would shift any line-indexed alignment); with
    ``skip_bad`` they are skipped and reported like any other bad line.
    """
    schema = schema or load_schema()
    out: list[LabelLine] = []
    seen: dict[str, int] = {}
    for no, text in iter_lines(path):
        try:
            if not text.strip():
                raise ValueError("empty line")
            image, kind, attribute, caption, values = parse_label_line(text, schema)
            if image in seen:
                raise ValueError(f"image {image!r} already labelled on line {seen[image]}")
        except (ValueError, CodeError) as exc:
            err = InputError(str(exc), path, no)
            if not skip_bad:
                raise err from None
            if on_skip:
                on_skip(err)
            continue
        seen[image] = no
        out.append(LabelLine(image, kind, attribute, caption, values, no))
    if not out:
        raise InputError("no label lines", path)
    side = unknown_file(path)
    if side.is_file():  # groups the code cannot leave out (see the module note)
        sides = _read_unknown(side, {ll.image: ll for ll in out}, schema, strict=not skip_bad)
        out = [ll if ll.image not in sides else
               LabelLine(ll.image, ll.kind, ll.attribute, ll.caption,
                         {**{g: c for g, c in ll.values.items() if g not in sides[ll.image][0]}, **sides[ll.image][1]},
                         ll.line)
               for ll in out]
    return out


def unknown_file(label_file: str | Path) -> Path:
    """The side file naming the unknown groups of ``label_file``'s lines (it may not exist)."""
    label_file = Path(label_file)
    return label_file.with_name(label_file.stem.removesuffix("_label") + "_unknown.jsonl")


def _read_unknown(path: Path, lines: dict[str, LabelLine], schema: Schema,
                  strict: bool = True) -> dict[str, tuple[list[str], dict[str, str]]]:
    """``{image: ([unknown groups], {group outside the code: class})}`` from a side file; every image
    must be a pedestrian of the label file (``strict=False``: images whose label line was skipped
    as bad are passed over)."""
    subject = schema.pedestrian
    out: dict[str, tuple[list[str], dict[str, str]]] = {}
    for no, text in iter_lines(path):
        if not text.strip():
            continue
        try:
            doc = json.loads(text)
            image, unknown, values = doc["image"], doc["unknown"], doc.get("values", {})
            if not isinstance(image, str) or not isinstance(unknown, list) or not isinstance(values, dict):
                raise TypeError
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InputError('expected {"image": name, "unknown": [group, ...], "values": {group: class, ...}}',
                             path, no) from None
        ll = lines.get(image)
        if ll is None and not strict:
            continue
        if ll is None:
            raise InputError(f"image {image!r} is not in the label file beside it", path, no)
        if ll.kind != "pedestrian":
            raise InputError(f"image {image!r} is a vehicle (its label text already leaves groups out)", path, no)
        bad = [g for g in [*unknown, *values] if g not in subject.group_names]
        if bad:
            raise InputError(f"not pedestrian groups: {', '.join(map(str, bad))} "
                             f"(valid: {', '.join(subject.group_names)})", path, no)
        for g, c in values.items():
            group = subject.group(g)
            if group.bits:
                raise InputError(f"{g} is in the code: its value comes from the label line, not the side file", path, no)
            if c not in group.classes:
                raise InputError(f"{g}: unknown class {c!r}; valid: {', '.join(group.classes)}", path, no)
        out[image] = (unknown, dict(values))
    return out


def is_label_file(path: str | Path, probe_lines: int = 5) -> bool:
    """Heuristic used to auto-detect label files: the first non-empty lines have 3 '$' fields."""
    try:
        checked = 0
        for _, text in iter_lines(path):
            if not text.strip():
                continue
            if text.count("$") != 2:
                return False
            checked += 1
            if checked >= probe_lines:
                break
        return checked > 0
    except InputError:
        return False


def read_test_text(path: str | Path, *, skip_bad: bool = False, on_skip: SkipHandler | None = None) -> list[str]:
    """Read ``test_text.txt``: one caption per line, byte-exact (terminator removed).

    A file without captions is an error: ranking nothing would write an empty submission.
    """
    out = []
    for no, text in iter_lines(path):
        if not text.strip():
            err = InputError("empty caption line", path, no)
            if not skip_bad:
                raise err
            if on_skip:
                on_skip(err)
            continue
        out.append(text)
    if not out:
        raise InputError("no captions", path)
    return out


def write_submission(path: str | Path, results: Sequence[tuple[str, Sequence[str]]]) -> None:
    """Write the Track-2 submission JSON atomically, in the given (caption) order."""
    doc = {"results": [{"text": text, "image_names": list(names)} for text, names in results]}
    atomic_write_text(path, json.dumps(doc, ensure_ascii=False) + "\n")


def read_submission(path: str | Path) -> list[tuple[str, list[str]]]:
    """Read a submission back as ``[(text, image_names), ...]`` in file order."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a JSON submission: {exc}", path) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise InputError('expected {"results": [...]}', path)
    out = []
    for i, item in enumerate(doc["results"]):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("text"), str)
            or not isinstance(item.get("image_names"), list)
            or not all(isinstance(n, str) for n in item["image_names"])
        ):
            raise InputError(f'results[{i}] must be {{"text": str, "image_names": [str, ...]}}', path)
        out.append((item["text"], list(item["image_names"])))
    return out


def read_gt(path: str | Path) -> list[tuple[str, list[str]]]:
    """Read the organisers' ground truth ``text$img1$img2...`` in file order."""
    out = []
    for no, text in iter_lines(path):
        if not text.strip():
            continue
        caption, *images = text.split("$")
        if not images:
            raise InputError("expected text$img1$img2...", path, no)
        out.append((caption, images))
    return out


def write_gt(path: str | Path, rows: Sequence[tuple[str, Sequence[str]]]) -> None:
    atomic_write_text(path, "".join("$".join([text, *images]) + "\n" for text, images in rows))
