"""What the report says about each query, as compact JSON-able rows for the page's script.

Per query: the caption, the parsed attributes with their state (stated / implied / unknown)
and the caption spans that stated them, and per returned image: its thumbnail id, how many
of the caption's known attributes the image agrees with (by its label, else by the index's
prediction), which ones it contradicts, and whether it is relevant (when relevance is known).
Keys are short because 17,611 queries x 10 results repeat them 200,000 times.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from attrret.parser.query import Query
from attrret.report.thumbs import ThumbnailTable

__all__ = ["ImageFacts", "agreement", "query_row"]

STATED, IMPLIED = 0, 1


@dataclass(frozen=True)
class ImageFacts:
    """What is known of a gallery image: its kind and attribute values, and where they come from."""

    kind: str | None
    values: Mapping[str, str]
    source: str  # "label" | "predicted"


def agreement(query: Query, facts: ImageFacts | None) -> tuple[int, int, list[str]] | None:
    """``(agreeing, known, contradicted groups)`` of the query's stated + implied values, or None.

    An image of the other kind contradicts every known group. Groups the image's facts do not
    cover (an incomplete label) count as neither agreeing nor contradicting.
    """
    if facts is None or query.kind is None:
        return None
    known = query.known(use_implied=True)
    if not known:
        return None
    if facts.kind is not None and facts.kind != query.kind:
        return 0, len(known), [f"is a {facts.kind}"]
    bad = [f"{g}={facts.values[g]}" for g, c in known.items() if g in facts.values and facts.values[g] != c]
    covered = sum(1 for g in known if g in facts.values)
    return covered - len(bad), covered, bad


def _unknown(query: Query, families: Mapping[str, str]) -> list[str]:
    said = {families[g] for g in families if g not in query.unknown}  # a family some part of which the query states
    out: list[str] = []
    for g in query.unknown:
        family = families.get(g)
        if family is None:
            out.append(g)
        elif family not in said and family not in out:
            out.append(family)
    return out


def query_row(
    query: Query,
    names: Sequence[str],
    *,
    thumbs: ThumbnailTable,
    facts: Callable[[str], ImageFacts | None],
    is_relevant: Callable[[str], bool] | None,
    scores: Mapping[str, float | int] | None,
    families: Mapping[str, str] | None = None,
) -> dict:
    """The JSON row of one query (see the module docstring for what it holds). ``families``:
    yes/no group -> its multi-label group; a multi-label group the query leaves wholly unknown
    is listed once, by its name, among the unknown groups (not its eleven colours one by one)."""
    attrs = [[g, c, STATED] for g, c in query.stated.items()] + [[g, c, IMPLIED] for g, c in query.implied.items()]
    results = []
    for name in names:
        agree = agreement(query, facts(name))
        rel = None if is_relevant is None else int(is_relevant(name))
        if agree is None:
            results.append([thumbs.id(name), None, None, rel, ""])
        else:
            results.append([thumbs.id(name), agree[0], agree[1], rel, ", ".join(agree[2])])
    row = {
        "c": query.caption,
        "k": query.kind,
        "sp": [[s.start, s.end, f"{s.group}={s.cls}" + (" (fuzzy)" if s.fuzzy else "")] for s in query.spans],
        "a": attrs,
        "u": _unknown(query, families or {}),
        "r": results,
    }
    if scores:
        row.update(scores)
    return row
