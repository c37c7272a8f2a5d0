"""`attrret demo` end to end: wall time of the default and the ``--fast`` run, and what they score.

    .venv/bin/python bench/demo.py

Runs the real console entry point (``python -m attrret demo``, a fresh process, a fresh
temporary workdir, so data synthesis, every model and the trunk cache are built inside the
timed run) once with ``--fast`` and once with the defaults, and reads each run's
``demo.json``. Targets (issue: the main job): the default at most 10 minutes and ``--fast`` at
most 2 minutes on 2 CPU cores. Prints a Markdown table; writes ``bench/results/demo.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # the bench package, when run as a script

from attrret.io import atomic_write_text  # noqa: E402
from bench import json_header  # noqa: E402

LIMITS = {"--fast": 120.0, "default": 600.0}


def run(flag: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="attrret-bench-demo-") as tmp:
        cmd = [sys.executable, "-m", "attrret", "demo", "--workdir", tmp, *([flag] if flag else [])]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        out = json.loads((Path(tmp) / "demo.json").read_text())
    return {"wall_s": wall, "stages_s": out["seconds"], "sizes": out["sizes"], "retrieval": out["retrieval"],
            "tasks": out["tasks"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "demo.json"))
    args = ap.parse_args(argv)
    runs = {"--fast": run("--fast"), "default": run(None)}

    print("| run | images (ped + veh) | px | epochs | wall s | limit s | met | official mAP@10 | sound mAP@10 | R@1 | R@10 |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    ok = True
    for name, r in runs.items():
        z, m = r["sizes"], r["retrieval"]["all"]
        met = r["wall_s"] <= LIMITS[name]
        ok &= met
        print(f"| `attrret demo{' --fast' if name == '--fast' else ''}` | {z['pedestrians']} + {z['vehicles']} | {z['img_size']} | "
              f"{z['epochs']} | {r['wall_s']:.0f} | {LIMITS[name]:.0f} | {'yes' if met else 'NO'} | {m['official_map@10']:.3f} | "
              f"{m['sound_map@10']:.3f} | {m['R@1']:.3f} | {m['R@10']:.3f} |")
    stages = runs["default"]["stages_s"]
    print("\nDefault run by stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items())
          + ". Wall includes interpreter start and imports. Scores: the synthetic test queries over the synthetic test gallery.")
    atomic_write_text(args.out, json.dumps({
        **json_header("demo"),
        "limits_s": LIMITS, "runs": runs, "targets_met": ok}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
