"""``attrret search`` start-up: time from process start to the first answer on a Track-2-sized index.

    .venv/bin/python bench/search.py [--n 17611] [--rounds 5]

Data: an index of ``--n`` images (the Track-2 test gallery's size) with random per-task
probability vectors (gamma(1) rows normalised per task, seed 0) and a router column, written
with ``attrret.retrieval.index.write_index`` into a temporary folder outside the project.

Each round starts fresh processes, one after another, and reads the time from ``Popen`` to the
first line of stdout (the first answer; ``--json`` prints one line per query):

- ``attrret search QUERY --json``: the command under test (target: first answer <= 1.5 s);
- ``attrret rank`` of the same one query from a caption file: the peer that answered one
  query before ``search`` existed (it checks the models' hashes and writes a submission file,
  so it ends before printing: its time is the process's whole run);
- ``python -c "import attrret.search"``: the floor of the interpreter and the imports.

The first ``search`` process also compiles the numba kernels into numba's on-disk cache when
none is there yet (a fresh install); it is reported apart and not counted in the medians.
Prints a Markdown table; writes ``bench/results/search.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # the bench package, when run as a script

import numpy as np  # noqa: E402

from bench import json_header  # noqa: E402
from attrret.io import atomic_write_text  # noqa: E402
from attrret.retrieval.index import IndexHeader, write_index  # noqa: E402
from attrret.retrieval.indexer import task_columns  # noqa: E402
from attrret.schema import load_schema  # noqa: E402

QUERY = "A female pedestrian who is a minor, with her body facing the camera and carrying a backpack."
TARGET_S = 1.5


def write_random_index(path: Path, n: int, seed: int = 0) -> None:
    schema = load_schema()
    rng = np.random.default_rng(seed)
    columns = task_columns(None, schema)
    at = max(stop for _, stop in columns.values())
    probs = np.empty((n, at), np.float32)
    for task, (a, b) in columns.items():
        x = rng.gamma(1.0, size=(n, b - a)).astype(np.float32)
        probs[:, a:b] = x / x.sum(axis=1, keepdims=True)
    names = [f"{i:06d}.jpg" for i in range(n)]
    files = [{"path": f"/gallery/{name}", "size": 0, "mtime_ns": 0} for name in names]
    header = IndexHeader(schema=schema.fingerprint, count=n, columns=columns, models=(), img_sizes=(160,),
                         tta="flip", weights=(1.0,))
    write_index(path, probs, names, files, header)


def first_line_s(cmd: list[str]) -> float:
    """Seconds from starting ``cmd`` to its first stdout line (or its end when it prints none)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    t = time.perf_counter() - t0
    proc.stdout.read()
    if proc.wait() != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    if not line:
        t = time.perf_counter() - t0
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=17611)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "search.json"))
    args = ap.parse_args(argv)
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="attrret-bench-search-") as tmp:
        index = Path(tmp) / "index"
        write_random_index(index, args.n)
        captions = Path(tmp) / "q.txt"
        captions.write_text(QUERY + "\n", encoding="utf-8")
        search = [py, "-m", "attrret", "search", QUERY, "--index", str(index), "--json"]
        rank = [py, "-m", "attrret", "rank", "--queries", str(captions), "--index", str(index), "-o", str(Path(tmp) / "s.json")]
        floor = [py, "-c", "import attrret.search"]
        first = first_line_s(search)
        runs: dict[str, list[float]] = {"search": [], "rank": [], "floor": []}
        for _ in range(args.rounds):  # interleaved, so load changes hit every method alike
            runs["search"].append(first_line_s(search))
            runs["rank"].append(first_line_s(rank))
            runs["floor"].append(first_line_s(floor))
    med = {k: statistics.median(v) for k, v in runs.items()}
    rows = [
        ("`attrret search QUERY --json` (first answer)", med["search"], min(runs["search"])),
        ("`attrret rank` of the same query (whole run)", med["rank"], min(runs["rank"])),
        ("`python -c 'import attrret.search'` (floor)", med["floor"], min(runs["floor"])),
    ]
    print(f"First answer of one query on a {args.n:,}-image index, from process start; median (best) of {args.rounds} "
          "interleaved rounds of fresh processes\n")
    print("| command | median s | best s | vs search |")
    print("|---|---:|---:|---:|")
    for label, m, best in rows:
        print(f"| {label} | {m:.2f} | {best:.2f} | {m / med['search']:.2f}x |")
    met = med["search"] <= TARGET_S
    print(f"\nfirst process (numba kernels compiled into the on-disk cache if none was there): {first:.2f} s")
    print(f"target: first answer <= {TARGET_S} s on {args.n:,} images: {'met' if met else 'NOT met'} ({med['search']:.2f} s median)")
    res = {**json_header("search"), "n": args.n, "rounds": runs, "median_s": med, "first_process_s": first,
           "target_s": TARGET_S, "met": met}
    atomic_write_text(args.out, json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
