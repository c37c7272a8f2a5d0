"""The parser's output value: what a caption says, implies and leaves unknown."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Span", "Query"]


@dataclass(frozen=True)
class Span:
    """A lexicon match in the caption (character offsets into ``Query.caption``)."""

    text: str
    start: int
    end: int
    group: str
    cls: str
    fuzzy: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "start": self.start, "end": self.end, "group": self.group, "class": self.cls, "fuzzy": self.fuzzy}


@dataclass(frozen=True)
class Query:
    """A parsed caption.

    Tri-state per group of the query's kind: a group is in ``stated`` (its words say so),
    in ``implied`` (the Track-2 grammar fixes it without words), or listed in ``unknown``.
    The three are disjoint and together cover every group of ``kind``; with no kind
    (nothing recognised) all three are empty.
    """

    caption: str
    kind: str | None
    stated: dict[str, str] = field(default_factory=dict)
    implied: dict[str, str] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()
    spans: tuple[Span, ...] = ()
    unmatched: tuple[str, ...] = ()

    def known(self, use_implied: bool = False) -> dict[str, str]:
        """Values the ranker enforces: the stated ones, plus the implied ones on request."""
        return {**self.implied, **self.stated} if use_implied else dict(self.stated)

    def to_json(self) -> dict[str, Any]:
        return {
            "caption": self.caption,
            "kind": self.kind,
            "stated": dict(self.stated),
            "implied": dict(self.implied),
            "unknown": list(self.unknown),
            "spans": [s.to_json() for s in self.spans],
            "unmatched": list(self.unmatched),
        }
