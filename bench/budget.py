"""The training time budget: the default ``attrret train`` of the 12 pedestrian tasks on all 1,500
pa100k-mini crops, as a user runs it (the CLI in a subprocess, a fresh workdir, so the trunk
cache is built and paid for inside the timed run). The issue's limit is 15 minutes on this
2-core machine.

    .venv/bin/python -m bench budget                              # the default recipe
    .venv/bin/python bench/budget.py --recipes default,accurate   # each recipe in turn

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

DATA = ROOT.parent / "shared" / "data" / "pa100k-mini"
LIMIT_S = 15 * 60


def time_recipe(recipe: str, data: Path, task: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"attrret-budget-{recipe}-"))
    cmd = [sys.executable, "-m", "attrret", "train", "--task", task, "--data", str(data), "--workdir", str(work / "w"),
           "--recipe", recipe, "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    print(" ".join(cmd[1:]), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    seconds = time.perf_counter() - t0
    shutil.rmtree(work, ignore_errors=True)
    return {"recipe": recipe, "command": "attrret " + " ".join(cmd[3:]), "seconds": round(seconds, 1), "limit_s": LIMIT_S,
            "within": seconds <= LIMIT_S}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", default="default")
    ap.add_argument("--task", default="pedestrian")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "budget.json"))
    args = ap.parse_args(argv)
    data = Path(args.data)
    if not data.is_dir():
        print(f"{data}: not here; nothing timed", file=sys.stderr)
        return 0
    n = sum(1 for line in (data / "labels.txt").read_text().splitlines() if line.strip()) if (data / "labels.txt").is_file() else None
    rows = [time_recipe(r, data, args.task) for r in args.recipes.split(",")]
    print(f"\n`attrret train --task {args.task}` on {n or '?'} images of {data.name}, fresh workdir (limit {LIMIT_S // 60} min)\n")
    print("| recipe | wall (s) | within the limit |")
    print("|---|---:|---|")
    for r in rows:
        print(f"| {r['recipe']} | {r['seconds']:.0f} | {'yes' if r['within'] else 'NO'} |")
    doc = {**json_header("budget"), "data": str(data), "images": n, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
