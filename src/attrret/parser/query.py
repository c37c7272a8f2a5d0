"""The parser's output value: what a caption says, implies and leaves unknown."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = ["Span", "Query"]


class Span(NamedTuple):
    """A lexicon match in the caption (character offsets into ``Query.caption``).

    ``relation``: what the mention does to its group: ``"is"`` states ``cls`` (a negated
    two-class group states the other class: "no hat" -> hat is no), ``"not"`` excludes it
    ("no backpack"), ``"or"`` allows it among alternatives ("black or white"), ``"any"``
    makes it one of yes/no groups of which at least one is yes ("black or grey trousers",
    "dressed in red").

    A named tuple, not a dataclass: a parse builds several per caption and a tuple is built
    in a third of the time (bench/parse.py).
    """

    text: str
    start: int
    end: int
    group: str
    cls: str
    fuzzy: bool = False
    relation: str = "is"

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "start": self.start, "end": self.end, "group": self.group, "class": self.cls,
                "fuzzy": self.fuzzy, "relation": self.relation}


@dataclass(frozen=True)
class Query:
    """A parsed caption.

    Per group of the query's kind, at most one of: ``stated`` (its words give one class),
    ``implied`` (the Track-2 grammar fixes it without words), ``negated`` (classes excluded,
    "not black": only for groups of more than two classes, since a two-class group's negation
    states the other class), ``either`` (classes allowed, "black or white"); every other group
    is listed in ``unknown``. Together they cover every group of ``kind``; with no kind
    (nothing recognised) all are empty. Class lists are in schema order.

    ``unmatched``: content words and phrases that map to no attribute ("red jacket",
    "umbrella"); ``unsupported``: phrases of constructs the parser recognised but cannot
    express, whose words were therefore not used: alternatives across two groups ("a hat or
    glasses"), a negation of several groups at once ("not a girl"), a second value for a
    group ("a red and white bus": "white").

    ``any_of``: alternatives across yes/no groups, each a tuple of groups of which at least
    one is "yes" ("black or grey trousers": lower_color_black or lower_color_grey; "dressed
    in red": upper_color_red or lower_color_red). Their groups are not ``unknown``.
    """

    caption: str
    kind: str | None
    stated: dict[str, str] = field(default_factory=dict)
    implied: dict[str, str] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()
    spans: tuple[Span, ...] = ()
    unmatched: tuple[str, ...] = ()
    negated: dict[str, tuple[str, ...]] = field(default_factory=dict)
    either: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unsupported: tuple[str, ...] = ()
    any_of: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def make(cls, caption: str, kind: str | None, stated: dict[str, str], implied: dict[str, str],
             unknown: tuple[str, ...], spans: tuple[Span, ...], unmatched: tuple[str, ...],
             negated: dict[str, tuple[str, ...]], either: dict[str, tuple[str, ...]],
             unsupported: tuple[str, ...], any_of: tuple[tuple[str, ...], ...] = ()) -> Query:
        """``Query(...)`` with every field given, in a third of the time.

        Why: the parser builds one Query per caption, and a frozen dataclass's ``__init__``
        sets each of its ten fields through ``object.__setattr__``: a quarter of what a new
        Track-2 caption costs (bench/parse.py). This fills the instance dict in one step
        instead; the result is the same value (tests/parser compare both).
        """
        q = object.__new__(cls)
        q.__dict__.update(caption=caption, kind=kind, stated=stated, implied=implied, unknown=unknown, spans=spans,
                          unmatched=unmatched, negated=negated, either=either, unsupported=unsupported, any_of=any_of)
        return q

    def known(self, use_implied: bool = False) -> dict[str, str]:
        """Values the ranker enforces: the stated ones, plus the implied ones on request."""
        return {**self.implied, **self.stated} if use_implied else dict(self.stated)

    def ignored(self) -> list[tuple[str, str]]:
        """``(words, why)`` for everything in the caption the query does not use, in order."""
        return [(w, "no attribute for it") for w in self.unmatched] + [
            (w, "not supported: alternatives across groups, a negation of several groups or a second value for a group")
            for w in self.unsupported
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "caption": self.caption,
            "kind": self.kind,
            "stated": dict(self.stated),
            "implied": dict(self.implied),
            "unknown": list(self.unknown),
            "spans": [s.to_json() for s in self.spans],
            "unmatched": list(self.unmatched),
            "negated": {g: list(c) for g, c in self.negated.items()},
            "either": {g: list(c) for g, c in self.either.items()},
            "unsupported": list(self.unsupported),
            "any_of": [list(a) for a in self.any_of],
        }
