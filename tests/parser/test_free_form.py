"""Free-form queries as users type them (tests/parser/free_form_queries.txt, written by hand):
each one's kind, stated values, negated and alternative sets, unmatched words and unsupported
constructs must be exactly as written there, for pedestrians and vehicles, in every category
of issue 17 (everyday words, orientation, accessories, clothes, age, negation forms,
key: value and list forms, alternatives, typos, ignored words, vehicle colours, types, brands)
and of issue 32 (clothing colours, garments, hair, boots)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from attrret.schema import load_schema

CASES_FILE = Path(__file__).with_name("free_form_queries.txt")
KINDS = {"p": "pedestrian", "v": "vehicle", "-": None}


class Case(NamedTuple):
    line: int
    category: str
    query: str
    kind: str | None
    stated: dict[str, str]
    negated: dict[str, frozenset[str]]
    either: dict[str, frozenset[str]]
    unmatched: tuple[str, ...]
    unsupported: tuple[str, ...]
    any_of: tuple[frozenset[str], ...] = ()


def _pairs(field: str) -> list[tuple[str, str]]:
    return [tuple(x.strip() for x in item.split("=", 1)) for item in field.split(";") if item.strip()]  # type: ignore[misc]


def _phrases(field: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in field.split(" / ") if x.strip())


def read_cases(path: Path = CASES_FILE) -> list[Case]:
    cases, category = [], ""
    for no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if raw.startswith("# ----"):
            category = raw.strip("# -")
        if not raw.strip() or raw.startswith("#"):
            continue
        fields = [f.strip() for f in raw.split("|")] + [""] * 8
        query, kind, stated, negated, either, unmatched, unsupported, any_of = fields[:8]
        cases.append(Case(
            no, category, query, KINDS[kind], dict(_pairs(stated)),
            {g: frozenset(c.split(",")) for g, c in _pairs(negated)},
            {g: frozenset(c.split(",")) for g, c in _pairs(either)},
            _phrases(unmatched), _phrases(unsupported),
            tuple(frozenset(g.strip() for g in alt.split(" or ")) for alt in _phrases(any_of)),
        ))
    return cases


CASES = read_cases()


def test_the_table_is_large_and_covers_both_kinds_in_every_category():
    assert len(CASES) >= 300
    assert len({c.query for c in CASES}) == len(CASES)  # no query twice
    kinds = {c.kind for c in CASES}
    assert {"pedestrian", "vehicle", None} <= kinds
    schema = load_schema()
    for c in CASES:  # every expectation names real groups and classes
        if c.kind:
            sub = schema.subject(c.kind)
            for g, cls in c.stated.items():
                sub.group(g).index(cls)
            for g, classes in {**c.negated, **c.either}.items():
                assert all(sub.group(g).index(x) >= 0 for x in classes)
    # set constraints, typos and ignored words for both kinds
    for kind in ("pedestrian", "vehicle"):
        mine = [c for c in CASES if c.kind == kind]
        assert any(c.negated for c in mine) and any(c.either for c in mine) and any(c.unmatched for c in mine)
        assert any(c.unsupported for c in mine)
        assert sum(c.category == "typos" for c in mine) >= 5


@pytest.mark.parametrize("case", CASES, ids=[f"{c.line}:{c.query}" for c in CASES])
def test_free_form_query(parser, case: Case):
    q = parser.parse(case.query)
    got = (q.kind, q.stated, {g: frozenset(c) for g, c in q.negated.items()},
           {g: frozenset(c) for g, c in q.either.items()}, q.unmatched, q.unsupported, tuple(frozenset(a) for a in q.any_of))
    want = (case.kind, case.stated, case.negated, case.either, case.unmatched, case.unsupported, case.any_of)
    assert got == want, f"{CASES_FILE.name}:{case.line}: {case.query!r}"
    # set constraints are in schema order and never hold a stated group
    if q.kind:
        sub = load_schema().subject(q.kind)
        for g, classes in {**q.negated, **q.either}.items():
            assert list(classes) == [c for c in sub.group(g).classes if c in classes]
            assert g not in q.stated and 2 <= len(classes) + (g in q.negated) < sub.group(g).size + 1
        parts = [*q.stated, *q.implied, *q.negated, *q.either, *q.unknown, *{g for a in q.any_of for g in a}]
        assert sorted(parts) == sorted(sub.group_names)
    for s in q.spans:
        assert q.caption[s.start : s.end] == s.text
