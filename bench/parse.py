"""Caption parser speed (and correctness) on real Track-2 lines, beside plain substring rules.

    .venv/bin/python bench/parse.py [--repeat N] [--rounds R]

Captions: the 2,000 real Track-2 validation lines plus the 1,500 pa100k-mini captions
(3,500 lines, 2,536 distinct), repeated to at least 50,000 captions, in file order. The
real test set repeats captions the same way (17,611 captions, far fewer distinct ones).

Methods, timed in the same run on the same machine (median of ``--rounds``):

- ``attrret``: the full parser as ``attrret parse`` uses it (spaCy tokenizer + PhraseMatcher,
  grammar rules, per-caption LRU cache), a fresh parser per round so the cache starts cold;
- ``attrret, no cache``: the same parser with ``cache_size=0`` on the distinct captions only:
  the honest per-caption cost for queries never seen before;
- ``substring rules`` (the reference): keyword-in-caption checks, the way the published
  baseline reads captions, last match per group wins.

"lines correct" counts real lines whose every output value agrees with the label's code or
attribute (for attrret: stated + implied; for the reference: what it outputs). Prints a
Markdown table and writes ``bench/results/parse.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # runnable from a checkout without installing

from attrret.data.track2 import read_label_file  # noqa: E402
from attrret.io import atomic_write_text  # noqa: E402
from attrret.schema import Schema, load_schema  # noqa: E402

SHARED = Path(os.environ.get("ATTRRET_SHARED_DATA", ROOT.parent / "shared" / "data"))
SOURCES = (SHARED / "track2" / "val_sample.txt", SHARED / "pa100k-mini" / "labels.txt")
RESULTS = ROOT / "bench" / "results" / "parse.json"
MIN_CAPTIONS = 50_000
TEST_CAPTIONS = 17_611  # size of the Track-2 test set


def substring_rules(schema: Schema) -> list[tuple[str, str, str, str]]:
    """(needle, subject, group, class): plain lower-case substring checks, baseline style."""
    ped = [
        ("female", "gender", "female"), ("male", "gender", "male"),
        ("18 and 60", "age", "18-60"), ("18-60", "age", "18-60"), ("adult", "age", "18-60"),
        ("18 or younger", "age", "under18"), ("less than 18", "age", "under18"),
        ("not an adult", "age", "under18"), ("minor", "age", "under18"),
        ("over 60", "age", "over60"), ("60 or older", "age", "over60"), ("at least 60", "age", "over60"),
        ("facing the camera", "orientation", "front"), ("sideways", "orientation", "side"),
        ("back to the camera", "orientation", "back"),
        ("hat", "hat", "yes"), ("glasses", "glasses", "yes"), ("handbag", "handbag", "yes"),
        ("shoulder", "bag", "shoulder"), ("backpack", "bag", "backpack"), ("holds objects", "holding", "yes"),
        ("short sleeve", "sleeve", "short"), ("long sleeve", "sleeve", "long"),
        ("stripe", "upper", "stripe"), ("logo", "upper", "logo"), ("plaid", "upper", "plaid"),
        ("splice", "upper", "splice"), ("longcoat", "coat", "yes"), ("coat that is long", "coat", "yes"),
        ("skirt", "skirt", "yes"),
    ]
    rules = [(n, "pedestrian", g, c) for n, g, c in ped]
    for group in schema.vehicle.groups:
        rules += [(c.lower(), "vehicle", group.name, c) for c in group.classes]
    return rules


def make_reference(schema: Schema) -> Callable[[str], tuple[str | None, dict[str, str]]]:
    rules = substring_rules(schema)
    ped_groups = set(schema.pedestrian.group_names)

    def parse(caption: str) -> tuple[str | None, dict[str, str]]:
        low = caption.lower()
        values: dict[str, dict[str, str]] = {"pedestrian": {}, "vehicle": {}}
        for needle, subject, group, cls in rules:
            if needle in low:
                values[subject][group] = cls
        kind = "pedestrian" if "pedestrian" in low or "walking" in low or len(values["pedestrian"]) > len(values["vehicle"]) else "vehicle"
        out = values[kind]
        return kind, {g: c for g, c in out.items() if kind == "vehicle" or g in ped_groups}

    return parse


def timed(fn: Callable[[object], object], rounds: int, setup: Callable[[], object] = lambda: None) -> float:
    """Median seconds of ``fn(setup())`` over ``rounds``; ``setup`` is not timed."""
    times = []
    for _ in range(rounds):
        state = setup()
        t0 = time.perf_counter()
        fn(state)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=0, help="repeat the real lines this often (default: to >= 50,000)")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds per method (median reported)")
    args = ap.parse_args(argv)

    from attrret.parser import CaptionParser

    schema = load_schema()
    lines = [ln for src in SOURCES if src.exists() for ln in read_label_file(src, schema)]
    if not lines:
        raise SystemExit(f"no real Track-2 lines found under {SHARED}")
    captions = [ln.caption for ln in lines]
    distinct = list(dict.fromkeys(captions))
    repeat = args.repeat or -(-MIN_CAPTIONS // len(captions))
    workload = captions * repeat

    t0 = time.perf_counter()
    CaptionParser(schema)
    build_s = time.perf_counter() - t0

    reference = make_reference(schema)
    uncached = CaptionParser(schema, cache_size=0)
    n_distinct_runs = max(1, -(-10_000 // len(distinct)))
    distinct_workload = distinct * n_distinct_runs

    # a fresh parser per round (built untimed) so every round starts with a cold cache
    cached_s = timed(lambda p: p.parse_many(workload), args.rounds, setup=lambda: CaptionParser(schema))
    uncached_s = timed(lambda _: uncached.parse_many(distinct_workload), args.rounds)
    reference_s = timed(lambda _: [reference(c) for c in workload], args.rounds)

    # correctness on the real lines
    parser = CaptionParser(schema)
    ok_attrret = ok_reference = 0
    for ln in lines:
        q = parser.parse(ln.caption)
        known = q.known(use_implied=True)
        ok_attrret += q.kind == ln.kind and all(ln.values.get(g) == c for g, c in known.items())
        kind, values = reference(ln.caption)
        ok_reference += kind == ln.kind and all(ln.values.get(g) == c for g, c in values.items())

    rows = [
        {"method": "attrret (cached, cold start)", "captions": len(workload), "seconds": cached_s, "correct": ok_attrret},
        {"method": "attrret, no cache, distinct captions", "captions": len(distinct_workload), "seconds": uncached_s, "correct": ok_attrret},
        {"method": "substring rules (reference)", "captions": len(workload), "seconds": reference_s, "correct": ok_reference},
    ]
    ref_rate = len(workload) / reference_s
    for r in rows:
        r["captions_per_s"] = r["captions"] / r["seconds"]
        r["vs_reference"] = r["captions_per_s"] / ref_rate
        r["test_set_seconds"] = TEST_CAPTIONS / r["captions_per_s"]

    print(f"\nCaption parsing on {len(lines):,} real Track-2 lines ({len(distinct):,} distinct), "
          f"repeated x{repeat}; median of {args.rounds} rounds; parser build {build_s:.2f} s\n")
    print("| method | captions | seconds | captions/s | vs reference | 17,611 captions | lines correct |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['captions']:,} | {r['seconds']:.3f} | {r['captions_per_s']:,.0f} | "
              f"{r['vs_reference']:.2f}x | {r['test_set_seconds']:.2f} s | {r['correct']:,} / {len(lines):,} |")

    result = {
        "bench": "parse",
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "command": " ".join(["bench/parse.py", *(argv if argv is not None else sys.argv[1:])]),
        "sources": [str(s) for s in SOURCES if s.exists()],
        "lines": len(lines),
        "distinct": len(distinct),
        "repeat": repeat,
        "rounds": args.rounds,
        "parser_build_seconds": build_s,
        "target_captions_per_s": 50_000,
        "rows": rows,
    }
    atomic_write_text(RESULTS, json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
