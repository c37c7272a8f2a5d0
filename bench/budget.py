"""The training time budget: the default ``attrret train --task pedestrian`` as a user runs it (the
CLI in a subprocess, a fresh workdir, so the trunk cache is built and paid for inside the timed
run), on all 1,500 pa100k-mini crops (limit 15 minutes on this 2-core machine) and, with
``--two-datasets``, on pa100k-mini (its annotation.mat: lower type and boots too) plus the 5,299
peta-train crops (limit 30 minutes; the imports are made first and not timed).

    .venv/bin/python -m bench budget                              # the default recipe, both rows
    .venv/bin/python bench/budget.py --recipes default,accurate   # each recipe in turn
    .venv/bin/python bench/budget.py --rows two                   # only pa100k-mini + peta-train

Prints a Markdown table; writes ``bench/results/budget.json``. Nothing is held out: this times
the command, it does not measure accuracy (bench/accuracy.py does).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench import json_header  # noqa: E402
from attrret.io import atomic_write_text  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
DATA = SHARED / "pa100k-mini"
LIMIT_S = 15 * 60
TWO_LIMIT_S = 30 * 60


def _imports(work: Path) -> tuple[Path, Path]:
    """pa100k-mini (annotation.mat) and peta-train imported into ``work``, images hard-linked."""
    pa, peta = work / "pa100k", work / "peta-train"
    for fmt, src, out, extra in (("pa100k", SHARED / "pa100k-mini", pa, ()),
                                 ("peta", SHARED / "peta-train" / "raw", peta, ("--test-fraction", "0"))):
        subprocess.run([sys.executable, "-m", "attrret", "data", "import", fmt, str(src), "--out", str(out), "--link", *extra],
                       check=True, stdout=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return pa, peta


def time_recipe(recipe: str, data: Path | tuple[Path, ...], task: str, limit_s: int = LIMIT_S) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"attrret-budget-{recipe}-"))
    datas = data if isinstance(data, tuple) else (data,)
    cmd = [sys.executable, "-m", "attrret", "train", "--task", task, *[a for d in datas for a in ("--data", str(d))],
           "--workdir", str(work / "w"), "--recipe", recipe, "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    print(" ".join(cmd[1:]), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    seconds = time.perf_counter() - t0
    shutil.rmtree(work, ignore_errors=True)
    return {"recipe": recipe, "data": " + ".join(d.name for d in datas), "command": "attrret " + " ".join(cmd[3:]),
            "seconds": round(seconds, 1), "limit_s": limit_s, "within": seconds <= limit_s}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", default="default")
    ap.add_argument("--task", default="pedestrian")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--rows", default="one,two",
                    help="one: pa100k-mini alone (limit 15 min); two: pa100k-mini + peta-train (limit 30 min)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "budget.json"))
    args = ap.parse_args(argv)
    data = Path(args.data)
    if not data.is_dir():
        print(f"{data}: not here; nothing timed", file=sys.stderr)
        return 0
    n = sum(1 for line in (data / "labels.txt").read_text().splitlines() if line.strip()) if (data / "labels.txt").is_file() else None
    wanted = set(args.rows.split(","))
    rows = [time_recipe(r, data, args.task) for r in args.recipes.split(",")] if "one" in wanted else []
    if "two" in wanted and (SHARED / "peta-train" / "raw").is_dir():
        imports = Path(tempfile.mkdtemp(prefix="attrret-budget-data-"))
        rows.append(time_recipe("default", _imports(imports), args.task, TWO_LIMIT_S))
        shutil.rmtree(imports, ignore_errors=True)
    print(f"\n`attrret train --task {args.task}`, fresh workdir (trunk cache included); pa100k-mini: {n or '?'} images\n")
    print("| recipe | data | wall (s) | limit (s) | within the limit |")
    print("|---|---|---:|---:|---|")
    for r in rows:
        print(f"| {r['recipe']} | {r['data']} | {r['seconds']:.0f} | {r['limit_s']} | {'yes' if r['within'] else 'NO'} |")
    doc = {**json_header("budget"), "data": str(data), "images": n, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
