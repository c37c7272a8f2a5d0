"""Synthetic classifier quality: the 3 vehicle tasks and the router on the demo set.

    .venv/bin/python bench/classifiers_synth.py [--data DIR] [--epochs E] [--img-size S]

Generates the demo set (``attrret.data.synth.generate`` with its default ``SynthConfig``:
2,400 images, Track-2 layout) into a temporary folder unless ``--data`` names one, then
trains ``vehicle.color``, ``vehicle.type``, ``vehicle.brand`` and ``router`` with the
``attrret train`` defaults: train split for training, val split for model selection,
test/test_label.txt (full labels) for the reported numbers. The majority class of the
training labels is the reference. Prints a Markdown table; writes
``bench/results/classifiers_synth.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from attrret.classifiers.data import load_task_data  # noqa: E402
from attrret.classifiers.metrics import classification_metrics  # noqa: E402
from attrret.classifiers.train import TrainConfig, train_tasks  # noqa: E402
from attrret.io import atomic_write_text  # noqa: E402
from attrret.schema import load_schema  # noqa: E402

TASKS = ("vehicle.color", "vehicle.type", "vehicle.brand", "router")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="An existing synthetic Track-2 folder (default: generate the demo set).")
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--img-size", type=int, default=TrainConfig.img_size)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "classifiers_synth.json"))
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="attrret-bench-synth-") as tmp:
        data = Path(args.data) if args.data else None
        gen_s = 0.0
        if data is None:
            from attrret.data.synth import SynthConfig, generate

            t0 = time.perf_counter()
            data = Path(tmp) / "demo"
            generate(data, SynthConfig())
            gen_s = time.perf_counter() - t0
        schema = load_schema()
        rows, seconds = [], {}
        for task in TASKS:
            cfg = TrainConfig(task=task, data=str(data), workdir=f"{tmp}/w", epochs=args.epochs, img_size=args.img_size)
            t0 = time.perf_counter()
            (r,) = train_tasks(cfg, progress=sys.stderr.isatty())
            seconds[task] = time.perf_counter() - t0
            g = schema.task(task)
            td = load_task_data(data, [g])[task]
            majority = Counter(y for _, y in td.train).most_common(1)[0][0]
            y = np.array([c for _, c in td.holdout])
            maj = classification_metrics(y, np.full(len(y), majority), g.classes)
            rows.append({"task": task, "classes": g.size, "n_train": r.n_train, "n_val": r.n_val, "n_test": r.n_holdout,
                         "best_epoch": r.best_epoch, "val": r.val, "test": r.holdout, "majority": maj, "seconds": seconds[task]})
            print(f"{task}: {seconds[task]:.0f} s", file=sys.stderr, flush=True)

    print("| task | classes | train | val | test | val acc | val mA | test acc | test mA | majority test acc | majority test mA |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['task']} | {r['classes']} | {r['n_train']} | {r['n_val']} | {r['n_test']} | {r['val']['accuracy']:.3f} | "
              f"{r['val']['mA']:.3f} | {r['test']['accuracy']:.3f} | {r['test']['mA']:.3f} | "
              f"{r['majority']['accuracy']:.3f} | {r['majority']['mA']:.3f} |")
    print(f"\ndemo set generated in {gen_s:.0f} s; training {sum(seconds.values()):.0f} s for the 4 tasks "
          f"(the trunk cache is built by the first task and reused by the others)")
    out = {
        "bench": "classifiers_synth",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "config": TrainConfig(epochs=args.epochs, img_size=args.img_size).as_dict(),
        "generate_seconds": gen_s,
        "tasks": rows,
    }
    atomic_write_text(args.out, json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
