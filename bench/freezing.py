"""How much of the trunk to train: retrieval quality vs training time on the synthetic demo set.

    .venv/bin/python bench/freezing.py [--data DIR] [--blocks 1,2] [--tail-norms frozen] [--epochs E]

For each ``--trainable-blocks`` x ``--tail-norm`` setting, trains the router and the 15
attribute tasks on the demo set (``SynthConfig()``, seed 0; generated into a temporary folder
unless ``--data`` names one) exactly as ``attrret demo`` does, predicts the test gallery, ranks
the test captions with the default ranker and scores them against test/test_label.txt. Every
setting gets a fresh workdir, so each pays for its own trunk cache. Times are ratios against
the first setting of the same run (the default: EfficientNet-Lite0's head conv alone, frozen
tail norms). This is the evidence behind the efficientnet default in recipes.toml ``[trainable_blocks]``:
the speed/quality trade-off a user makes with ``--trainable-blocks``. Prints a Markdown table;
writes ``bench/results/freezing.json``.
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
from attrret.data.track2 import write_submission  # noqa: E402
from attrret.io import atomic_write_text  # noqa: E402
from bench import json_header  # noqa: E402
from attrret.classifiers.engine import Ensemble  # noqa: E402
from attrret.retrieval.indexer import build_index, find_members  # noqa: E402
from attrret.retrieval.evaluate import evaluate_submission  # noqa: E402
from attrret.retrieval.index import open_index  # noqa: E402
from attrret.retrieval.submission import rank_captions, read_queries  # noqa: E402
from attrret.retrieval.ranker import RankOptions  # noqa: E402


def run_setting(data: Path, workdir: Path, blocks: int, tail_norm: str, epochs: int, img_size: tuple[int, int] | None) -> dict:
    """Train all 16 tasks with one freezing setting, then rank and score the test split."""
    cfg = TrainConfig(task="all", data=str(data), workdir=str(workdir), epochs=epochs, img_size=img_size,
                      trainable_blocks=blocks, tail_norm=tail_norm)
    t0 = time.perf_counter()
    results = train_tasks(cfg, progress=sys.stderr.isatty())
    train_s = time.perf_counter() - t0
    build_index(data, workdir / "index", Ensemble.open(find_members(workdir)), split="test", log=lambda s: None)
    run = rank_captions(open_index(workdir / "index"), read_queries(data / "test" / "test_text.txt"), RankOptions())
    write_submission(workdir / "submission.json", run.results)
    scores = evaluate_submission(workdir / "submission.json", labels=data / "test" / "test_label.txt")
    return {"trainable_blocks": blocks, "tail_norm": tail_norm, "train_s": train_s,
            "scores": {k: s.to_json() for k, s in scores.items()},
            "val_mA": {r.task: r.val["mA"] for r in results}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="An existing synthetic Track-2 folder (default: generate the demo set).")
    ap.add_argument("--blocks", default="1,2", help="Comma-separated --trainable-blocks values; the first is the reference.")
    ap.add_argument("--tail-norms", default="frozen", help="Comma-separated --tail-norm values (frozen, batch).")
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--img-size", type=parse_hw, default=TrainConfig.img_size,
                    help="HxW or N; default: each subject's schema input")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "freezing.json"))
    args = ap.parse_args(argv)
    settings = [(int(b), n) for b in args.blocks.split(",") for n in args.tail_norms.split(",")]

    with tempfile.TemporaryDirectory(prefix="attrret-bench-freezing-") as tmp:
        data = Path(args.data) if args.data else None
        if data is None:
            from attrret.data.synth import SynthConfig, generate

            data = Path(tmp) / "demo"
            generate(data, SynthConfig())
        rows = []
        for i, (blocks, norm) in enumerate(settings):
            rows.append(run_setting(data, Path(tmp) / f"w-{i}", blocks, norm, args.epochs, args.img_size))
            print(f"blocks {blocks}, {norm}: {rows[-1]['train_s']:.0f} s", file=sys.stderr, flush=True)

    ref = rows[0]["train_s"]
    print(f"Demo set (`SynthConfig()`, seed 0), router + 15 tasks, {hw_label(args.img_size) if args.img_size else 'schema-default'} px, {args.epochs} epochs, "
          "default ranker; EfficientNet-Lite0 has 8 blocks (7 MBConv stages + the 1x1 head conv)\n")
    print("| trainable blocks | tail norms | train s | x first row | official mAP@10 | sound mAP@10 | R@1 | "
          "pedestrian sound mAP@10 | vehicle sound mAP@10 |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        s = r["scores"]
        print(f"| {r['trainable_blocks']} | {r['tail_norm']} | {r['train_s']:.0f} | {r['train_s'] / ref:.2f} | "
              f"{s['all']['official_map@10']:.4f} | {s['all']['sound_map@10']:.4f} | {s['all']['R@1']:.3f} | "
              f"{s['pedestrian']['sound_map@10']:.4f} | {s['vehicle']['sound_map@10']:.4f} |")

    out = {
        **json_header("freezing"),
        "setup": {"data": args.data or "SynthConfig() demo set", "epochs": args.epochs, "img_size": args.img_size},
        "rows": rows,
    }
    atomic_write_text(args.out, json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
