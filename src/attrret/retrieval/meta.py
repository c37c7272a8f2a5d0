"""Image metadata beside the index: camera, time and free columns (track, frame, box, ...).

An analyst filters by where and when a crop was seen ("camera 3 or 4, yesterday between 8 and
9") and groups crops of one track. ``attrret predict --meta FILE`` joins a CSV or JSON-lines
table on its ``image`` column; without one, ``--camera-from-folder`` takes the camera from a
``<camera>/<file>`` gallery layout and ``--time-from-exif`` the time from EXIF
DateTimeOriginal. The index stores the result as ``meta-<token>.parquet`` (one row per index
row, in row order), named by its header like the other data files, so it is swapped with
them atomically.

Columns:

- ``camera``: a string (``3``, ``gate-north``);
- ``time``: an instant, stored as nanoseconds since 1970-01-01 UTC. **The rule**: a time is ISO
  8601 (``2026-12-01T08:15:00``, ``2026-12-01 08:15:00.250``, ``...+01:00``, ``...Z``); one with a
  zone or offset is converted to UTC; one without is read as UTC. Filters (``--after``,
  ``--before``) are read by the same rule, so naive times compare with naive times as written.
  EXIF times are naive (read as UTC) unless the file records OffsetTimeOriginal;
- any other column: a string, exactly as written (a JSON number as JSON writes it: ``17``).

In memory each string column is dictionary-encoded (int32 codes per row, -1 for missing, and
the distinct values), so a million rows of camera, time, track and a box take tens of MiB and
a filter is a vectorised comparison of codes (:mod:`attrret.retrieval.filters`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from attrret.errors import InputError, OptionError

__all__ = ["ImageMeta", "MetaSource", "RESERVED", "NO_TIME", "parse_time", "format_time", "read_meta_file", "gather_meta",
           "MAX_META_COLUMNS", "MAX_VALUE_CHARS"]

#: Columns with a meaning of their own; every other column is free (stored as strings).
RESERVED = ("image", "camera", "time")
#: A row without a time (int64 nanoseconds; no real instant is this one).
NO_TIME = np.iinfo(np.int64).min
#: Bounds of a metadata table: a column list or a cell of this size is a mistake, not metadata.
MAX_META_COLUMNS = 64
MAX_VALUE_CHARS = 1024


def parse_time(text: str, what: str = "time") -> int:
    """Nanoseconds since 1970-01-01 UTC of an ISO 8601 time (module doc: naive is UTC), or
    :class:`OptionError` naming ``what`` and the accepted form."""
    value = text.strip() if isinstance(text, str) else text
    try:
        if not isinstance(value, str) or not value:
            raise ValueError
        t = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
    except ValueError:
        raise OptionError(f"{what} {str(text)[:60]!r} is not an ISO 8601 time (e.g. 2026-12-01T08:00, "
                          "2026-12-01 08:00:00+01:00 or 2026-12-01T07:00:00Z)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    delta = t - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def format_time(ns: int) -> str | None:
    """ISO 8601 in UTC (``2026-12-01T08:15:00Z``, fractions when there are any); None for NO_TIME."""
    if ns == NO_TIME:
        return None
    seconds, frac = divmod(int(ns), 1_000_000_000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


@dataclass(frozen=True)
class Column:
    """A dictionary-encoded string column: ``codes[row]`` indexes ``values`` (-1: missing)."""

    codes: np.ndarray  # int32
    values: tuple[str, ...]

    @classmethod
    def of(cls, cells: Sequence[str | None]) -> Column:
        values: dict[str, int] = {}
        codes = np.fromiter((-1 if c is None else values.setdefault(c, len(values)) for c in cells), np.int32, len(cells))
        return cls(codes, tuple(values))

    def get(self, row: int) -> str | None:
        code = int(self.codes[row])
        return None if code < 0 else self.values[code]

    def take(self, rows: np.ndarray) -> Column:
        return Column.of([self.get(int(r)) for r in rows])


@dataclass(frozen=True)
class ImageMeta:
    """Metadata of an index's rows, in row order (module doc)."""

    count: int
    time: np.ndarray | None  # int64 ns UTC per row (NO_TIME: none); None: no time column
    columns: Mapping[str, Column]  # camera and the free columns

    @property
    def names(self) -> tuple[str, ...]:
        """The columns a filter or a record may name, ``time`` among them when present."""
        return (*self.columns, *(("time",) if self.time is not None else ()))

    def record(self, row: int) -> dict[str, str | None]:
        """One row as JSON values: camera and free columns as strings, time as ISO 8601 UTC."""
        out = {name: col.get(row) for name, col in self.columns.items()}
        if self.time is not None:
            out["time"] = format_time(int(self.time[row]))
        return out

    def take(self, rows: Sequence[int]) -> ImageMeta:
        """The metadata of ``rows`` (in that order)."""
        idx = np.asarray(rows, np.int64)
        return ImageMeta(len(idx), None if self.time is None else self.time[idx],
                         {n: c.take(idx) for n, c in self.columns.items()})

    def to_parquet(self, names: Sequence[str]) -> bytes:
        """The index's ``meta-<token>.parquet``: ``image`` (the row's name), then the columns."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrays = {"image": pa.array(list(names), pa.string())}
        for name, col in self.columns.items():
            arrays[name] = pa.DictionaryArray.from_arrays(pa.array(col.codes, pa.int32(), mask=col.codes < 0),
                                                          pa.array(list(col.values), pa.string()))
        if self.time is not None:
            arrays["time"] = pa.array(self.time, pa.timestamp("ns", tz="UTC"), mask=self.time == NO_TIME)
        buf = io.BytesIO()
        pq.write_table(pa.table(arrays), buf, compression="zstd")
        return buf.getvalue()

    @classmethod
    def from_parquet(cls, path: Path, names: Sequence[str]) -> ImageMeta:
        """Read :meth:`to_parquet`'s file; its ``image`` column must be ``names`` (else it is not
        this index's metadata: :class:`ValueError`)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if table.column_names[:1] != ["image"] or table.column("image").to_pylist() != list(names):
            raise ValueError("its image column is not the index's names in row order")
        time, columns = None, {}
        for name in table.column_names[1:]:
            col = table.column(name).combine_chunks()
            if name == "time":
                if not pa.types.is_timestamp(col.type):
                    raise ValueError("its time column is not a timestamp")
                time = col.cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).fill_null(NO_TIME).to_numpy()
            else:
                if not pa.types.is_dictionary(col.type):
                    col = col.cast(pa.string()).dictionary_encode()
                codes = col.indices.cast(pa.int32()).fill_null(-1).to_numpy(zero_copy_only=False)
                values = tuple(str(v) for v in col.dictionary.to_pylist())
                columns[name] = Column(np.ascontiguousarray(codes, np.int32), values)
        return cls(len(names), time, columns)

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, str | int | None]]) -> ImageMeta | None:
        """Per index row, its values (``time`` as ns, NO_TIME or absent for none); None when no
        row has any value."""
        names = list(dict.fromkeys(k for r in rows for k in r))
        if not names:
            return None
        time = None
        if "time" in names:
            time = np.fromiter((NO_TIME if r.get("time") is None else r["time"] for r in rows), np.int64, len(rows))
        columns = {n: Column.of([r.get(n) for r in rows]) for n in names if n != "time"}  # type: ignore[misc]
        return cls(len(rows), time, columns)

    def rows_json(self) -> dict[str, list]:
        """The columns as JSON lists (a shard carries its rows' metadata so)."""
        out: dict[str, list] = {n: [c.get(i) for i in range(self.count)] for n, c in self.columns.items()}
        if self.time is not None:
            out["time"] = [None if t == NO_TIME else int(t) for t in self.time.tolist()]
        return out

    @classmethod
    def from_rows_json(cls, data: Mapping[str, list], count: int) -> ImageMeta | None:
        """:meth:`rows_json`'s form back (checked by the reader's model first)."""
        rows: list[dict] = [{} for _ in range(count)]
        for name, cells in data.items():
            for r, v in zip(rows, cells):
                if v is not None:
                    r[name] = v
        meta = cls.from_rows(rows)
        if meta is not None:  # columns that hold nothing still exist
            cols = {n: meta.columns.get(n, Column(np.full(count, -1, np.int32), ())) for n in data if n != "time"}
            meta = cls(count, meta.time if "time" in data else None, cols)
            if "time" in data and meta.time is None:
                meta = cls(count, np.full(count, NO_TIME, np.int64), cols)
        return meta


@dataclass(frozen=True)
class MetaSource:
    """Where a predict run takes its images' metadata from (module doc). Empty: none, and an
    existing index keeps the metadata it has for the images it still holds."""

    file: Path | None = None
    camera_from_folder: bool = False
    time_from_exif: bool = False

    def __bool__(self) -> bool:
        return self.file is not None or self.camera_from_folder or self.time_from_exif


def _cell(value: object, src: Path, line: int, column: str) -> str | None:
    """A metadata cell as the string it is stored as (None: empty)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InputError(f"column {column!r}: a {type(value).__name__} is not a metadata value (text or a number)", src, line)
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"column {column!r}: {value} is not a metadata value", src, line)
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) > MAX_VALUE_CHARS:
        raise InputError(f"column {column!r}: a value of {len(text):,} characters (at most {MAX_VALUE_CHARS:,})", src, line)
    return text


def read_meta_file(src: str | Path) -> dict[str, dict[str, str | int]]:
    """``image -> {column: value}`` of a CSV (with a header) or JSON-lines file (``.jsonl`` /
    ``.ndjson``, or content starting with ``{``). ``time`` becomes ns (:func:`parse_time`); empty
    cells are left out. One :class:`InputError` naming the file and line for anything else."""
    src = Path(src)
    if not src.is_file():
        raise InputError("no such metadata file", src)
    try:
        text = src.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", src) from None
    jsonl = src.suffix.lower() in (".jsonl", ".ndjson", ".json") or text.lstrip().startswith("{")
    rows = _jsonl_rows(src, text) if jsonl else _csv_rows(src, text)
    out: dict[str, dict[str, str | int]] = {}
    for line, raw in rows:
        extra = [k for k in raw if not isinstance(k, str) or not k.strip()]
        if extra:
            raise InputError("a column without a name", src, line)
        if len(raw) > MAX_META_COLUMNS:
            raise InputError(f"{len(raw)} columns; at most {MAX_META_COLUMNS}", src, line)
        image = _cell(raw.get("image"), src, line, "image")
        if image is None:
            raise InputError("no image (every row names the image it describes in its 'image' column)", src, line)
        if image in out:
            raise InputError(f"image {image!r} is described twice", src, line)
        values: dict[str, str | int] = {}
        for key, value in raw.items():
            key = key.strip()
            if key == "image":
                continue
            cell = _cell(value, src, line, key)
            if cell is None:
                continue
            if key == "time":
                try:
                    values["time"] = parse_time(cell)
                except OptionError as exc:
                    raise InputError(str(exc), src, line) from None
            else:
                values[key] = cell
        out[image] = values
    if not out:
        raise InputError("no metadata rows", src)
    return out


def _csv_rows(src: Path, text: str):
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = [c.strip() for c in reader.fieldnames or []]
        if "image" not in header:
            raise InputError(f"no 'image' column (columns: {', '.join(header) or 'none'})", src, 1)
        repeated = sorted({c for c in header if header.count(c) > 1})
        if repeated:
            raise InputError(f"column {repeated[0]!r} appears twice in the header", src, 1)
        rows = []
        for raw in reader:
            if None in raw:
                raise InputError("more cells than the header has columns", src, reader.line_num)
            rows.append((reader.line_num, {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in raw.items()}))
        return rows
    except csv.Error as exc:
        raise InputError(f"not readable as CSV ({exc})", src, reader.line_num or None) from None


def _jsonl_rows(src: Path, text: str):
    rows = []
    for line, s in enumerate(text.splitlines(), 1):
        if not s.strip():
            continue
        try:
            raw = json.loads(s)
        except json.JSONDecodeError as exc:
            raise InputError(f"not a JSON object ({exc.msg})", src, line) from None
        if not isinstance(raw, dict):
            raise InputError(f"a JSON {type(raw).__name__}, not an object", src, line)
        rows.append((line, raw))
    return rows


def exif_time(path: Path) -> int | None:
    """EXIF DateTimeOriginal (with OffsetTimeOriginal where recorded) as ns, or None."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            exif = im.getexif().get_ifd(0x8769)  # the Exif sub-IFD
    except (OSError, ValueError, SyntaxError):
        return None
    stamp, offset = exif.get(36867), exif.get(36881)  # DateTimeOriginal, OffsetTimeOriginal
    if not isinstance(stamp, str) or len(stamp) < 19:
        return None
    iso = stamp[:10].replace(":", "-") + "T" + stamp[11:19] + (offset if isinstance(offset, str) else "")
    try:
        return parse_time(iso)
    except OptionError:
        return None


def gather_meta(source: MetaSource, gallery: Sequence[tuple[str, Path]], log=None) -> ImageMeta | None:
    """The metadata of ``gallery``'s rows (``(name, path)`` in row order) from ``source``.

    ``--meta`` rows join on the gallery name (its path under the gallery folder), else on the
    file name when that is unambiguous. Rows naming no gallery image are counted in one warning
    (``log``). Folder cameras and EXIF times fill only what the table leaves empty."""
    if not source:
        return None
    table = read_meta_file(source.file) if source.file is not None else {}
    in_gallery = {name for name, _ in gallery}
    by_file: dict[str, str | None] = {}
    for name, _ in gallery:
        base = name.rsplit("/", 1)[-1]
        by_file[base] = None if base in by_file else name
    joined: dict[str, dict] = {}
    unmatched = 0
    for image, values in table.items():
        name = image if image in in_gallery else by_file.get(image.rsplit("/", 1)[-1])
        if name is None or name in joined:
            unmatched += 1
            continue
        joined[name] = values
    if unmatched and log is not None:
        log(f"attrret: warning: {source.file}: {unmatched:,} row(s) name no image of the gallery (by path or file name); left out")
    rows = []
    for name, path in gallery:
        values = dict(joined.get(name, {}))
        if source.camera_from_folder and "camera" not in values and "/" in name:
            values["camera"] = name.split("/", 1)[0]
        if source.time_from_exif and "time" not in values:
            t = exif_time(path)
            if t is not None:
                values["time"] = t
        rows.append(values)
    meta = ImageMeta.from_rows(rows)
    if meta is None:
        return None
    cols = dict(meta.columns)
    if source.camera_from_folder and "camera" not in cols:
        cols["camera"] = Column(np.full(len(rows), -1, np.int32), ())
    time = meta.time if meta.time is not None or not source.time_from_exif else np.full(len(rows), NO_TIME, np.int64)
    return ImageMeta(len(rows), time, cols)
