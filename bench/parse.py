"""Caption parser speed (and correctness) on real Track-2 lines, beside plain substring rules.

    .venv/bin/python bench/parse.py [--repeat N] [--rounds R]

Captions: the 2,000 real Track-2 validation lines plus the 1,500 pa100k-mini captions
(3,500 lines, 2,536 distinct), repeated to at least 50,000 captions, in file order. The
real test set repeats captions the same way (17,611 captions, far fewer distinct ones).

Methods, timed in the same run on the same machine (median of ``--rounds``; each timing
records wall-clock and this process's CPU time, since the 2 cores are shared and wall-clock
also counts other people's jobs):

- ``attrret, cached``: the full parser as ``attrret parse`` uses it (regular-expression
  tokenizer, first-token phrase table, grammar rules, per-caption and per-clause LRU caches)
  on the whole workload, a fresh parser per round so every cache starts cold. Every row
  includes the parser's two Track-2 fast paths, which are not caches (they hold nothing a
  parse computed): the clauses the pedestrian grammar writes are read once when the parser
  is built (about 470, part of the build time printed), and a vehicle caption of the grammar
  (``This is a white Audi.``) is read from its slots by one regular expression;
- ``attrret, no caption cache, distinct, cold``: ``cache_size=0`` on the distinct captions
  only, each once, a fresh parser per round: every caption is new, and so is every clause
  the first time it is seen (the strict reading of the issue's >= 50,000 captions/s);
- ``attrret, no caption cache, distinct, warm``: the same on a parser that has seen the
  clauses before: still no caption was parsed before by that parser's caption cache (it has
  none), but its clauses are known (steady state of a long run over new captions);
- ``attrret, no caches``: ``cache_size=0, clause_cache_size=0``: every clause outside the
  grammar's table tokenized, matched and read from scratch;
- ``attrret, one real file as is``: ``val_sample.txt``'s 2,000 captions in file order, a fresh
  parser per round (what ``attrret parse val_sample.txt`` does): the real repetition of a
  Track-2 file (1,571 distinct of 2,000), nothing seen before;
- ``substring rules`` (the reference): keyword-in-caption checks, the way the published
  baseline reads captions, last match per group wins.

Targets. The issue's workload is the first row (real lines repeated to >= 50,000 captions,
the full parser). The new-caption rows are a stricter reading (no caption seen before), shown
against the same 50,000 for comparison.

Estimated test file. The Track-2 test set (17,611 captions) is not here, and a file's speed
depends on how much it repeats. The bench prints a model: this run's cost of a new caption
whose clauses are known (warm row), of a repeat (cached row), and of a new clause (fitted so
the model reproduces the "one real file as is" row), times the test file's expected distinct
captions and clauses, extrapolated from val_sample.txt's repetition (Shen, Chao and Lin 2003).

"lines correct" counts real lines whose every output value agrees with the label's code or
attribute (for attrret: stated + implied; for the reference: what it outputs). Prints a
Markdown table and writes ``bench/results/parse.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# runnable from a checkout without installing; ATTRRET_PARSE_SRC: another source tree's parser (--against)
sys.path.insert(0, os.environ.get("ATTRRET_PARSE_SRC") or str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # the bench package, when run as a script

from attrret.data.track2 import read_label_file  # noqa: E402
from bench import json_header  # noqa: E402
from attrret.io import atomic_write_text  # noqa: E402
from attrret.schema import Schema, load_schema  # noqa: E402

SHARED = Path(os.environ.get("ATTRRET_SHARED_DATA", ROOT.parent / "shared" / "data"))
SOURCES = (SHARED / "track2" / "val_sample.txt", SHARED / "pa100k-mini" / "labels.txt")
RESULTS = ROOT / "bench" / "results" / "parse.json"
MIN_CAPTIONS = 50_000
TARGET = 50_000  # captions/s the issue asks for
TEST_CAPTIONS = 17_611  # size of the Track-2 test set
CACHED = "attrret, cached (repeated lines hit the caption cache)"


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


@dataclass(frozen=True)
class Timing:
    wall_s: float  # median wall-clock seconds
    cpu_s: float  # median CPU seconds of this process over the same rounds


def timed(fn: Callable[[object], object], rounds: int, setup: Callable[[], object] = lambda: None) -> Timing:
    """Median wall and CPU seconds of ``fn(setup())`` over ``rounds``; ``setup`` is not timed."""
    walls, cpus = [], []
    for _ in range(rounds):
        state = setup()
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        fn(state)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return Timing(statistics.median(walls), statistics.median(cpus))


def expected_distinct(items: Sequence[str], total: float) -> float:
    """Expected number of distinct items in ``total`` draws from the population ``items`` was drawn
    from: the Shen-Chao-Lin (2003) extrapolation from the sample's singletons and doubletons."""
    counts = Counter(Counter(items).values())
    n, s, f1, f2 = len(items), len(set(items)), counts[1], counts[2]
    if total <= n or f1 == 0:
        return float(min(s, total))
    f0 = (n - 1) / n * (f1 * f1 / (2 * f2) if f2 else f1 * (f1 - 1) / 2)
    return s + f0 * (1 - (1 - f1 / (n * f0 + f1)) ** (total - n))


def file_cost(clauses: float, new: float, hits: float, costs: dict[str, float]) -> float:
    """Seconds to parse a file with that many distinct clauses, distinct captions and repeats."""
    return clauses * costs["clause"] + new * costs["caption"] + hits * costs["hit"]


def cold_row(rounds: int) -> dict:
    """The cold, distinct, no-caption-cache row alone (what ``--against`` compares)."""
    from attrret.parser import CaptionParser

    schema = load_schema()
    distinct = list(dict.fromkeys(ln.caption for src in SOURCES if src.exists() for ln in read_label_file(src, schema)))
    t = timed(lambda p: p.parse_many(distinct), rounds, lambda: CaptionParser(schema, cache_size=0))
    return {"captions": len(distinct), "wall_s": t.wall_s, "cpu_s": t.cpu_s, "captions_per_s": len(distinct) / t.wall_s,
            "cpu_captions_per_s": len(distinct) / t.cpu_s}


def against(ref: str, rounds: int, pairs: int = 3) -> dict:
    """The cold row of git ``ref``'s parser and of this checkout's, alternated ``pairs`` times
    in fresh processes of this one run (same host, same load), medians reported."""
    import subprocess
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory(prefix="attrret-parse-ref-") as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], check=True, capture_output=True).stdout
        import io

        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        runs: dict[str, list[dict]] = {ref: [], "this checkout": []}
        for _ in range(pairs):
            for label, src in ((ref, str(Path(tmp) / "src")), ("this checkout", str(ROOT / "src"))):
                out = subprocess.run([sys.executable, __file__, "--cold-only", "--rounds", str(rounds)], check=True, capture_output=True,
                                     text=True, env={**os.environ, "ATTRRET_PARSE_SRC": src})
                runs[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {label: {k: statistics.median(r[k] for r in rs) for k in ("captions_per_s", "cpu_captions_per_s")} | {"runs": rs}
            for label, rs in runs.items()}


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=0, help="repeat the real lines this often (default: to >= 50,000)")
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds per method (median reported)")
    ap.add_argument("--against", metavar="GIT_REF", help="also time the cold, distinct, no-cache row of that commit's parser beside "
                    "this checkout's, alternating fresh processes in this run (before / after a parser change)")
    ap.add_argument("--cold-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.cold_only:
        print(json.dumps(cold_row(args.rounds)))
        return {}
    if args.against:
        cmp = against(args.against, args.rounds)
        print(f"\nCold, distinct, no caption cache, {args.rounds} rounds x 3 alternating processes per parser:\n")
        print("| parser | captions/s (wall) | CPU captions/s | target |")
        print("|---|---:|---:|---|")
        for label, r in cmp.items():
            print(f"| {label} | {r['captions_per_s']:,.0f} | {r['cpu_captions_per_s']:,.0f} | "
                  f"{'met' if r['captions_per_s'] >= TARGET else 'NOT met'} (>= {TARGET:,}) |")
        atomic_write_text(RESULTS.with_name("parse_against.json"), json.dumps({**json_header("parse --against"), "ref": args.against,
                                                                             "rows": cmp}, indent=2))
        return cmp

    from attrret.parser import CaptionParser

    schema = load_schema()
    lines = [ln for src in SOURCES if src.exists() for ln in read_label_file(src, schema)]
    if not lines:
        raise SystemExit(f"no real Track-2 lines found under {SHARED}")
    captions = [ln.caption for ln in lines]
    distinct = list(dict.fromkeys(captions))
    one_file = [ln.caption for ln in read_label_file(SOURCES[0], schema)] if SOURCES[0].exists() else distinct
    repeat = args.repeat or -(-MIN_CAPTIONS // len(captions))
    workload = captions * repeat

    t0 = time.perf_counter()
    CaptionParser(schema)
    build_s = time.perf_counter() - t0

    reference = make_reference(schema)
    warm = CaptionParser(schema, cache_size=0)
    warm.parse_many(distinct)  # has seen every clause once
    bare = CaptionParser(schema, cache_size=0, clause_cache_size=0)
    bare.parse_many(distinct[:100])  # spaCy's own first-call set-up out of the timing

    def fresh(**kw: int) -> Callable[[], object]:
        return lambda: CaptionParser(schema, **kw)  # built untimed: each round starts cold

    # New captions (no caption-cache hits) lead: that is what a user's own captions cost; the
    # cached row, where the repeated lines hit the cache, comes after them.
    timings = {
        "attrret, no caption cache, distinct, cold": (
            len(distinct), timed(lambda p: p.parse_many(distinct), args.rounds, fresh(cache_size=0))),
        "attrret, no caption cache, distinct, warm": (
            len(distinct), timed(lambda _: warm.parse_many(distinct), args.rounds)),
        "attrret, no caches": (len(distinct), timed(lambda _: bare.parse_many(distinct), args.rounds)),
        "attrret, one real file as is": (len(one_file), timed(lambda p: p.parse_many(one_file), args.rounds, fresh())),
        "attrret, cached (repeated lines hit the caption cache)": (
            len(workload), timed(lambda p: p.parse_many(workload), args.rounds, fresh())),
        "substring rules (reference)": (len(workload), timed(lambda _: [reference(c) for c in workload], args.rounds)),
    }

    # correctness on the real lines
    parser = CaptionParser(schema)
    ok_attrret = ok_reference = 0
    for ln in lines:
        q = parser.parse(ln.caption)
        known = q.known(use_implied=True)
        ok_attrret += q.kind == ln.kind and all(ln.values.get(g) == c for g, c in known.items())
        kind, values = reference(ln.caption)
        ok_reference += kind == ln.kind and all(ln.values.get(g) == c for g, c in values.items())

    rows = []
    ref_n, ref_t = timings["substring rules (reference)"]
    for method, (n, t) in timings.items():
        rate, cpu_rate = n / t.wall_s, n / t.cpu_s
        rows.append({
            "method": method,
            "captions": n,
            "seconds": t.wall_s,
            "cpu_seconds": t.cpu_s,
            "captions_per_s": rate,
            "cpu_captions_per_s": cpu_rate,
            "vs_reference": rate / (ref_n / ref_t.wall_s),
            "cpu_vs_reference": cpu_rate / (ref_n / ref_t.cpu_s),
            "test_set_seconds": TEST_CAPTIONS / rate,
            "correct": ok_reference if method.startswith("substring") else ok_attrret,
        })

    # What the Track-2 test file would cost: this run's cost of a new caption with known clauses
    # (warm row) and of a repeat (cached row beyond its first reads), a new clause's cost fitted
    # so that the model reproduces the one real file's measured row (a fresh parser, as
    # `attrret parse` runs), times the test file's repetition extrapolated from that file.
    splitter = CaptionParser(schema)
    file_clauses = [text for c in one_file for _, text, _ in splitter.clauses(c)]
    cold_s = timings["attrret, no caption cache, distinct, cold"][1].wall_s
    file_s = timings["attrret, one real file as is"][1].wall_s
    costs = {
        "caption": timings["attrret, no caption cache, distinct, warm"][1].wall_s / len(distinct),
        "hit": max(timings[CACHED][1].wall_s - cold_s, 0.0) / (len(workload) - len(distinct)),
    }
    file_new, file_hits = len(set(one_file)), len(one_file) - len(set(one_file))
    costs["clause"] = max(file_s - file_new * costs["caption"] - file_hits * costs["hit"], 0.0) / len(set(file_clauses))
    test_new = expected_distinct(one_file, TEST_CAPTIONS)
    test_clauses = expected_distinct(file_clauses, len(file_clauses) / len(one_file) * TEST_CAPTIONS)
    test_s = file_cost(test_clauses, test_new, TEST_CAPTIONS - test_new, costs)
    estimate = {
        "method": "this run's per-item costs (new clause fitted to the real file's row) x the test file's repetition "
                  "extrapolated from that file (Shen-Chao-Lin)",
        "costs_s": costs, "test_distinct_captions": test_new, "test_distinct_clauses": test_clauses,
        "test_seconds": test_s, "test_captions_per_s": TEST_CAPTIONS / test_s,
    }

    print(f"\nCaption parsing on {len(lines):,} real Track-2 lines ({len(distinct):,} distinct), "
          f"repeated x{repeat}; median of {args.rounds} rounds; parser build {build_s:.2f} s\n")
    print("| method | captions | wall s | captions/s | vs reference | CPU captions/s | CPU vs reference | 17,611 captions at this rate | lines correct |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['captions']:,} | {r['seconds']:.3f} | {r['captions_per_s']:,.0f} | "
              f"{r['vs_reference']:.2f}x | {r['cpu_captions_per_s']:,.0f} | {r['cpu_vs_reference']:.2f}x | "
              f"{r['test_set_seconds']:.2f} s | {r['correct']:,} / {len(lines):,} |")
    print()
    for r in rows:  # new captions first: the target as a user meets it
        if r["method"].startswith("attrret, no caption cache"):
            print(f"target >= {TARGET:,} new captions/s, {r['method']}: {r['captions_per_s']:,.0f} wall "
                  f"({'met' if r['captions_per_s'] >= TARGET else 'NOT met'}), {r['cpu_captions_per_s']:,.0f} CPU "
                  f"({'met' if r['cpu_captions_per_s'] >= TARGET else 'NOT met'})")
    for r in rows:
        if r["method"] == CACHED:
            print(f"secondary: the issue's workload (real lines repeated to >= {MIN_CAPTIONS:,}), {r['method']}: "
                  f"{r['captions_per_s']:,.0f} wall ({'met' if r['captions_per_s'] >= TARGET else 'NOT met'}), "
                  f"{r['cpu_captions_per_s']:,.0f} CPU ({'met' if r['cpu_captions_per_s'] >= TARGET else 'NOT met'})")
    print("\nA model, not a measurement (kept apart from the targets):")
    print(f"estimated Track-2 test file ({TEST_CAPTIONS:,} captions; from the one real file's repetition, Shen-Chao-Lin: "
          f"~{test_new:,.0f} distinct captions, ~{test_clauses:,.0f} distinct clauses), at this run's costs per new clause "
          f"{costs['clause'] * 1e6:.0f} us (fitted to the real file's row), new caption {costs['caption'] * 1e6:.1f} us, "
          f"repeat {costs['hit'] * 1e6:.1f} us: {test_s:.2f} s = {TEST_CAPTIONS / test_s:,.0f} captions/s (a model, not a measurement)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    result = {
        **json_header("parse"),
        "command": " ".join(["bench/parse.py", *(argv if argv is not None else sys.argv[1:])]),
        "sources": [str(s) for s in SOURCES if s.exists()],
        "lines": len(lines),
        "distinct": len(distinct),
        "repeat": repeat,
        "rounds": args.rounds,
        "parser_build_seconds": build_s,
        "load_average_1min": load,
        "target_captions_per_s": TARGET,
        "target_met": {
            r["method"]: {"wall": r["captions_per_s"] >= TARGET, "cpu": r["cpu_captions_per_s"] >= TARGET}
            for r in rows
            if r["method"] == CACHED or r["method"].startswith("attrret, no caption cache")
        },
        "rows": rows,
        "test_file_estimate": estimate,
    }
    atomic_write_text(RESULTS, json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
