"""The sealed query set (tests/parser/sealed/queries.txt): how many free-form queries the parser reads right.

    .venv/bin/python -m bench parse_sealed

The set was written before the parser work of issue 30 and is never edited; it is scored on the
parser as it stands. A query is right when its kind, stated values, negated sets and either sets
all equal the file's (unmatched and unsupported words are not scored here; the never-silent
tests hold those). Prints the score per category and overall; writes
``bench/results/parse_sealed.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from attrret.io import atomic_write_text  # noqa: E402
from bench import json_header  # noqa: E402
from tests.parser.test_free_form import read_cases  # noqa: E402

SEALED = ROOT / "tests" / "parser" / "sealed" / "queries.txt"


def score(path: Path = SEALED) -> dict:
    from attrret.parser import CaptionParser

    parser = CaptionParser()
    per: dict[str, list[bool]] = {}
    wrong = []
    for c in read_cases(path):
        q = parser.parse(c.query)
        got = (q.kind, q.stated, {g: frozenset(x) for g, x in q.negated.items()}, {g: frozenset(x) for g, x in q.either.items()})
        ok = got == (c.kind, c.stated, c.negated, c.either)
        per.setdefault(c.category, []).append(ok)
        if not ok:
            wrong.append({"line": c.line, "query": c.query, "got": {"kind": q.kind, "stated": q.stated, "negated": q.negated,
                                                                   "either": q.either}})
    total = [x for v in per.values() for x in v]
    return {"right": sum(total), "n": len(total), "score": sum(total) / len(total),
            "categories": {k: {"right": sum(v), "n": len(v)} for k, v in per.items()}, "wrong": wrong}


def main(argv: list[str] | None = None) -> int:
    res = score()
    print("| category | right |\n|---|---:|")
    for k, v in res["categories"].items():
        print(f"| {k} | {v['right']}/{v['n']} |")
    print(f"| **all** | **{res['right']}/{res['n']} = {res['score']:.2f}** |")
    atomic_write_text(ROOT / "bench" / "results" / "parse_sealed.json", json.dumps({**json_header("parse_sealed"), **res}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
