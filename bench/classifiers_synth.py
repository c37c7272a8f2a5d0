"""Synthetic classifier quality: every task (12 pedestrian, 3 vehicle, router) on the demo set.

    .venv/bin/python bench/classifiers_synth.py [--data DIR] [--epochs E] [--img-size HxW]

Generates the demo set (``attrret.data.synth.generate`` with its default ``SynthConfig``:
2,400 images, Track-2 layout) into a temporary folder unless ``--data`` names one, then
trains all 16 tasks in one ``attrret train --task all`` run with the defaults (the pedestrian
rows document how hard the renderer makes each group; the vehicle and router rows are the
synthetic half of the classifier table): train split for training, val split for model selection,
test/test_label.txt (full labels) for the reported numbers. The majority class of the
training labels is the reference. Prints a Markdown table; writes
``bench/results/classifiers_synth.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
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
from attrret.geometry import hw_label, parse_hw  # noqa: E402
from attrret.io import atomic_write_text  # noqa: E402
from attrret.schema import load_schema  # noqa: E402

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="An existing synthetic Track-2 folder (default: generate the demo set).")
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--img-size", type=parse_hw, default=TrainConfig.img_size,
                    help="HxW or N; default: each subject's schema input")
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
        cfg = TrainConfig(task="all", data=str(data), workdir=f"{tmp}/w", epochs=args.epochs, img_size=args.img_size)
        t0 = time.perf_counter()
        results = {r.task: r for r in train_tasks(cfg, progress=sys.stderr.isatty())}
        train_s = time.perf_counter() - t0
        data_by_task = load_task_data(data, schema.tasks)
        rows = []
        for g in schema.tasks:
            r, td = results[g.task], data_by_task[g.task]
            majority = Counter(y for _, y in td.train).most_common(1)[0][0]
            y = np.array([c for _, c in td.holdout])
            maj = classification_metrics(y, np.full(len(y), majority), g.classes)
            rows.append({"task": g.task, "classes": g.size, "n_train": r.n_train, "n_val": r.n_val, "n_test": r.n_holdout,
                         "best_epoch": r.best_epoch, "val": r.val, "test": r.holdout, "majority": maj, "seconds": r.seconds})

    print("| task | classes | train | val | test | val acc | val mA | test acc | test mA | majority test acc | majority test mA |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['task']} | {r['classes']} | {r['n_train']} | {r['n_val']} | {r['n_test']} | {r['val']['accuracy']:.3f} | "
              f"{r['val']['mA']:.3f} | {r['test']['accuracy']:.3f} | {r['test']['mA']:.3f} | "
              f"{r['majority']['accuracy']:.3f} | {r['majority']['mA']:.3f} |")
    print(f"\nDemo set (`SynthConfig()`, seed 0) generated in {gen_s:.0f} s; `attrret train --task all` defaults "
          f"({hw_label(args.img_size) if args.img_size else 'schema-default'} px, {args.epochs} epochs): {train_s:.0f} s for the 16 tasks, one shared trunk cache. "
          f"Test = test/test_label.txt (full labels); vehicle train labels are incomplete like Track-2's, hence "
          f"the smaller type/brand train counts.")
    out = {
        **json_header("classifiers_synth"),
        "config": TrainConfig(epochs=args.epochs, img_size=args.img_size).as_dict(),
        "generate_seconds": gen_s,
        "train_seconds": train_s,
        "tasks": rows,
    }
    atomic_write_text(args.out, json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
