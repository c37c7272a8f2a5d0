"""Training cost: one task vs all 12 pedestrian tasks, with and without the shared trunk cache.

    .venv/bin/python bench/train.py [--n-images N] [--epochs E] [--img-size HxW] [--data DIR]

Real pa100k-mini images (the first ``--n-images`` label lines, referenced in place through a
temporary labels.txt + a symlink to the image folder; nothing is copied). Four runs in the
same process and the same run of the machine, each in a fresh workdir so every cache is built
and paid for inside the run it serves:

- ``1 task, cache`` / ``12 tasks, cache``: front computed once per (image, flip) into the
  memory-mapped cache, then only the trainable tail + head per task and epoch;
- ``1 task, no cache`` / ``12 tasks, no cache``: the frozen front recomputed on the fly for
  every sample, task and epoch (with random crops and jitter: the fallback path).

Wall time includes everything ``train_tasks`` does (records, backbone, cache, training,
evaluation, checkpoints). "train img/s" = training samples processed / wall seconds. Ratios
are against ``1 task, cache`` and ``1 task`` of the same mode. Target: 12 tasks with the
cache at most 3x one task. Prints a Markdown table; writes ``bench/results/train.json``.
Defaults: 600 images and the training defaults (resolution, epochs, backbone, freezing, tail
norms), so the whole bench runs in about five minutes on 2 CPU cores. The ratio grows with the
epochs (the cache is paid once, the tail every epoch), which is why it is measured at the
default epochs and not fewer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # the bench package, when run as a script
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from attrret.classifiers.train import TrainConfig, train_tasks  # noqa: E402
from attrret.geometry import hw_label, parse_hw  # noqa: E402
from attrret.io import atomic_write_text  # noqa: E402
from bench import json_header  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "pa100k-mini"


def subset(data: Path, n: int, where: Path) -> Path:
    lines = (data / "labels.txt").read_text(encoding="utf-8").splitlines()[:n]
    where.mkdir(parents=True, exist_ok=True)
    (where / "labels.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (where / "images").symlink_to((data / "images").resolve(), target_is_directory=True)
    return where


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--n-images", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--img-size", type=parse_hw, default=TrainConfig.img_size,
                    help="HxW or N; default: each subject's schema input")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "train.json"))
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="attrret-bench-train-") as tmp:
        data = subset(Path(args.data), args.n_images, Path(tmp) / "data")
        base = TrainConfig(data=str(data), epochs=args.epochs, img_size=args.img_size)
        runs = []
        for cache in (True, False):
            for task in ("pedestrian.gender", "pedestrian"):
                name = f"{'1 task' if task != 'pedestrian' else '12 tasks'}, {'cache' if cache else 'no cache'}"
                cfg = TrainConfig(**{**base.as_dict(), "task": task, "cache": cache, "workdir": f"{tmp}/w-{len(runs)}"})
                t0 = time.perf_counter()
                results = train_tasks(cfg, progress=sys.stderr.isatty())
                wall = time.perf_counter() - t0
                samples = sum(r.n_train for r in results) * args.epochs
                runs.append({"run": name, "tasks": len(results), "cache": cache, "wall_s": wall,
                             "train_samples": samples, "train_img_per_s": samples / wall,
                             "tail_img_per_s": [r.train_images_per_s for r in results]})
                print(f"{name}: {wall:.1f} s", file=sys.stderr, flush=True)

    one = {r["cache"]: r["wall_s"] for r in runs if r["tasks"] == 1}
    for r in runs:
        r["vs_one_task_same_mode"] = r["wall_s"] / one[r["cache"]]
        r["vs_one_task_cache"] = r["wall_s"] / one[True]
    by = {r["run"]: r for r in runs}
    ratio_cache = by["12 tasks, cache"]["wall_s"] / by["1 task, cache"]["wall_s"]
    speedup = by["12 tasks, no cache"]["wall_s"] / by["12 tasks, cache"]["wall_s"]

    print(f"pa100k-mini, first {args.n_images} images, {hw_label(args.img_size) if args.img_size else 'schema-default'} px, {args.epochs} epochs, default backbone and freezing\n")
    print("| run | tasks | wall s | train img/s | x one task (same mode) | x one task with cache |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in runs:
        print(f"| {r['run']} | {r['tasks']} | {r['wall_s']:.1f} | {r['train_img_per_s']:.0f} | "
              f"{r['vs_one_task_same_mode']:.2f} | {r['vs_one_task_cache']:.2f} |")
    print(f"\n12 tasks / 1 task with the cache: {ratio_cache:.2f}x (target <= 3x: {'met' if ratio_cache <= 3 else 'NOT met'}); "
          f"the cache makes 12 tasks {speedup:.1f}x faster than without it.")

    out = {
        **json_header("train"),
        "setup": {"data": args.data, "n_images": args.n_images, "epochs": args.epochs, "img_size": args.img_size,
                  "config": base.as_dict()},
        "runs": runs,
        "ratio_12_vs_1_with_cache": ratio_cache,
        "cache_speedup_12_tasks": speedup,
        "target_met": ratio_cache <= 3,
    }
    atomic_write_text(args.out, json.dumps(out, indent=2))
    return 0 if ratio_cache <= 3 else 1


if __name__ == "__main__":
    sys.exit(main())
