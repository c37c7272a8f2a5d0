"""Filters on image metadata: which index rows a search may return.

``camera`` (any of the values given), ``after`` / ``before`` (a time range, inclusive at both
ends, by :func:`attrret.retrieval.meta.parse_time`'s rule) and ``where`` (``column=value``, any of
several values for one column: ``track=17,18``). A filter keeps the rows that pass *every*
condition; a row without the value a condition needs (no time, no camera) does not pass it.

The result is the ascending id list of the rows that pass. The ranker intersects it with the
rows of the query's kind and hands it to the exact top-K scan as its row subset, so the top-K
is exact among the rows that pass: no over-fetching and cutting, and fewer than k results only
when fewer than k rows pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from attrret.errors import OptionError
from attrret.retrieval.meta import NO_TIME, ImageMeta, format_time, parse_time

__all__ = ["Filters", "parse_filters", "MAX_FILTER_VALUES"]

#: The most values one condition may list (a request must not make the server compare millions).
MAX_FILTER_VALUES = 1000


@dataclass(frozen=True)
class Filters:
    """Conditions on metadata columns (module doc). Hashable: equal filters share a ranking."""

    camera: tuple[str, ...] = ()
    after: int | None = None  # ns UTC, inclusive
    before: int | None = None
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.camera or self.where) or self.after is not None or self.before is not None

    def describe(self) -> str:
        parts = [f"camera {','.join(self.camera)}"] if self.camera else []
        parts += [f"after {format_time(self.after)}"] if self.after is not None else []
        parts += [f"before {format_time(self.before)}"] if self.before is not None else []
        parts += [f"{c}={','.join(v)}" for c, v in self.where]
        return ", ".join(parts)

    def to_json(self) -> dict:
        out: dict = {}
        if self.camera:
            out["camera"] = list(self.camera)
        if self.after is not None:
            out["after"] = format_time(self.after)
        if self.before is not None:
            out["before"] = format_time(self.before)
        if self.where:
            out["where"] = {c: list(v) for c, v in self.where}
        return out

    def rows(self, meta: ImageMeta | None, count: int) -> np.ndarray | None:
        """Ascending ids of the rows that pass (None: no condition, every row)."""
        mask = self.mask(meta, count)
        return None if mask is None else np.flatnonzero(mask)

    def mask(self, meta: ImageMeta | None, count: int) -> np.ndarray | None:
        """A bool per row, true where the row passes (None: no condition, every row). A
        condition on a column the index does not have is one :class:`OptionError` naming the
        columns it has."""
        if not self:
            return None
        have = meta.names if meta is not None else ()
        needed = [*(("camera",) if self.camera else ()), *(("time",) if self.after is not None or self.before is not None else ()),
                  *(c for c, _ in self.where)]
        unknown = [c for c in dict.fromkeys(needed) if c not in have]
        if unknown:
            hint = f"the index has {', '.join(have)}" if have else "the index has no metadata (attrret predict --meta FILE)"
            raise OptionError(f"no metadata column {unknown[0]!r} to filter on; {hint}")
        assert meta is not None
        keep = np.ones(count, bool)
        for column, values in ((("camera", self.camera),) if self.camera else ()) + self.where:
            col = meta.columns[column]
            wanted = set(values)
            codes = [i for i, v in enumerate(col.values) if v in wanted]
            if not codes:
                keep[:] = False
            elif len(codes) == 1:
                keep &= col.codes == codes[0]
            else:  # a lookup table over the codes: one gather, whatever the number of values
                table = np.zeros(len(col.values) + 1, bool)
                table[codes] = True
                keep &= table[col.codes]  # code -1 (no value) reads the last entry: False
        if self.after is not None or self.before is not None:
            t = meta.time
            keep &= t != NO_TIME
            if self.after is not None:
                keep &= t >= self.after
            if self.before is not None:
                keep &= t <= self.before
        return keep


def _values(text: str | Iterable[str], what: str) -> tuple[str, ...]:
    items = text.split(",") if isinstance(text, str) else [v for t in text for v in str(t).split(",")]
    values = tuple(dict.fromkeys(v.strip() for v in items if v.strip()))
    if not values:
        raise OptionError(f"{what}: no value given")
    if len(values) > MAX_FILTER_VALUES:
        raise OptionError(f"{what}: {len(values):,} values; at most {MAX_FILTER_VALUES:,}")
    return values


def parse_filters(
    camera: str | Sequence[str] | None = None,
    after: str | None = None,
    before: str | None = None,
    where: Sequence[str] = (),
) -> Filters:
    """Filters from their text forms (the CLI's options, the API's query parameters); one
    :class:`OptionError` for a bad value: an unparsable time, ``before`` earlier than ``after``,
    a ``where`` without ``=`` or on a reserved column (use ``camera`` / ``after`` / ``before``)."""
    cams = _values(camera, "camera") if camera not in (None, "", []) else ()
    t0 = parse_time(after, "after") if after not in (None, "") else None
    t1 = parse_time(before, "before") if before not in (None, "") else None
    if t0 is not None and t1 is not None and t1 < t0:
        raise OptionError(f"before {before} is earlier than after {after}: no time is in that range")
    conditions: dict[str, tuple[str, ...]] = {}
    for item in where:
        column, eq, value = str(item).partition("=")
        column = column.strip()
        if not eq or not column:
            raise OptionError(f"where {str(item)[:60]!r}: expected COLUMN=VALUE[,VALUE...], e.g. track=17")
        if column in ("image", "time", "camera"):
            raise OptionError(f"where {column}=...: filter {column} with --{'camera' if column == 'camera' else 'after/--before'}"
                              if column != "image" else "where image=...: the image is not a metadata column")
        conditions[column] = tuple(dict.fromkeys(conditions.get(column, ()) + _values(value, f"where {column}")))
    return Filters(cams, t0, t1, tuple(sorted(conditions.items())))
