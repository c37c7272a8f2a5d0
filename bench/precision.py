"""Speed and accuracy per precision: train and predict on pa100k-mini in fp32 and bf16, one run, one host.

    .venv/bin/python -m bench precision
    .venv/bin/python bench/precision.py --epochs 4             # a quicker look (about 4 minutes here)
    .venv/bin/python bench/precision.py --precisions fp32,bf16,fp16

For each precision, in a fresh workdir of its own (so its trunk cache is built inside the timed
run, in that precision): ``train --task pedestrian --holdout 300 --precision P`` through the
library, then ``predict`` of the 300 held images into an index (flip TTA) and ``rank`` of their
captions, exactly as bench/accuracy.py's default row (same split, same relevance rule). Reports
per precision: train wall time and its ratio to fp32, predict images/s and its ratio, mean held
mA over the 12 tasks, official and sound mAP@10, and the largest probability difference from
the fp32 index of the same images (different models, so this is not the rounding tolerance);
then the fp32 models predicting the same images in each other precision: the largest, 99th
percentile and mean probability difference and the top-10 overlap, the tolerance docs/precision.md states.
Names the host's CPU and the flags that decide ``auto`` (avx2, avx512f, avx512_bf16, amx_bf16,
avx512_fp16). Each task trains the default recipe's epochs (the schema's hint) unless
``--epochs`` says otherwise. Prints a Markdown table; writes ``bench/results/precision.json``.
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

from bench import json_header  # noqa: E402
from bench.accuracy import SUBJECTS, _held  # noqa: E402
from attrret.io import atomic_write_text  # noqa: E402

import numpy as np  # noqa: E402

FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")


def cpu() -> dict:
    """The CPU's name and which of :data:`FLAGS` it has, from /proc/cpuinfo."""
    name, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name == "unknown":
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    import torch

    from attrret.classifiers.runtime import cpu_bf16_is_fast

    return {"model": name, "flags": [f for f in FLAGS if f in flags], "torch_capability": torch.backends.cpu.get_cpu_capability(),
            "onednn_bf16": cpu_bf16_is_fast(), "threads": torch.get_num_threads()}


def run(precision: str, work: Path, epochs: int | None) -> dict:
    """Train the pedestrian tasks in ``precision``, predict and rank the held split; timings and scores."""
    from attrret.classifiers.train import TrainConfig, train_tasks
    from attrret.retrieval.index import open_index
    from attrret.retrieval.metrics import evaluate_lists as score_lists
    from attrret.classifiers.engine import Ensemble
    from attrret.retrieval.indexer import Member, build_index
    from attrret.retrieval.submission import rank_captions
    from attrret.retrieval.ranker import RankOptions

    spec = SUBJECTS["pedestrian"]
    held = _held("pedestrian", work)
    cfg = TrainConfig(task="pedestrian", data=str(spec["data"]), workdir=str(work / "w"), holdout=spec["holdout"], epochs=epochs,
                      precision=precision, device="cpu")
    print(f"{precision}: training 12 pedestrian tasks, {epochs or 'default'} epochs ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    results = train_tasks(cfg, progress=False)
    train_s = time.perf_counter() - t0
    dirs = tuple(r.model_dir for r in results)
    index = work / "index"
    t0 = time.perf_counter()
    build_index(held.listing, index, Ensemble.open([Member("models", dirs)], precision=precision, device="cpu"), progress=False, log=lambda s: None)
    predict_s = time.perf_counter() - t0
    ix = open_index(index)
    run_ = rank_captions(ix, held.captions, RankOptions())
    scores = score_lists([names for _, names in run_.results], held.relevance, held.kinds)["all"].to_json()
    held_ma = [json.loads((d / "metrics.json").read_text())["holdout"]["mA"] for d in dirs]
    return {"precision": precision, "train_s": train_s, "predict_s": predict_s, "predict_images": len(held.records),
            "predict_images_per_s": len(held.records) / predict_s, "mean_held_mA": sum(held_ma) / len(held_ma),
            "retrieval": scores, "header_precision": ix.header.precision, "names": list(ix.names),
            "probs": np.array(ix.probs), "lists": [names for _, names in run_.results], "dirs": [str(d) for d in dirs]}


def same_models(ref: dict, precision: str, work: Path) -> dict:
    """``ref``'s models (trained in ``ref['precision']``) predicting the held images in
    ``precision``: how far the index is from ``ref``'s, the tolerance docs/precision.md states."""
    from attrret.retrieval.index import open_index
    from attrret.classifiers.engine import Ensemble
    from attrret.retrieval.indexer import Member, build_index
    from attrret.retrieval.submission import rank_captions
    from attrret.retrieval.ranker import RankOptions

    held = _held("pedestrian", work)
    index = work / f"index-{precision}"
    build_index(held.listing, index, Ensemble.open([Member("models", tuple(map(Path, ref["dirs"])))], precision=precision, device="cpu"),
                progress=False, log=lambda s: None)
    ix = open_index(index)
    dp = np.abs(np.array(ix.probs) - ref["probs"])
    lists = [names for _, names in rank_captions(ix, held.captions, RankOptions()).results]
    overlap = [len(set(a) & set(b)) / max(len(a), len(b)) if (a or b) else 1.0 for a, b in zip(lists, ref["lists"])]
    return {"models": ref["precision"], "predict": precision, "max_abs_dp": float(dp.max()), "mean_abs_dp": float(dp.mean()),
            "p99_abs_dp": float(np.quantile(dp, 0.99)), "top10_overlap": float(np.mean(overlap)),
            "identical_top10": float(np.mean([a == b for a, b in zip(lists, ref["lists"])]))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--precisions", default="fp32,bf16", help="Comma-separated; the first is the reference of the ratios.")
    ap.add_argument("--epochs", type=int, default=None, help="Epochs per task (default: the schema's hint, 16 for pedestrians).")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "precision.json"))
    args = ap.parse_args(argv)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    host = cpu()
    runs = []
    with tempfile.TemporaryDirectory(prefix="attrret-bench-precision-") as tmp:
        for p in precisions:
            runs.append(run(p, Path(tmp) / p, args.epochs))
        cross = [same_models(runs[0], p, Path(tmp) / runs[0]["precision"]) for p in precisions[1:]]
    ref = runs[0]

    print(f"Host: {host['model']}; flags: {', '.join(host['flags']) or 'none of ' + ', '.join(FLAGS)}; torch CPU capability "
          f"{host['torch_capability']}; oneDNN bf16 kernels: {'yes' if host['onednn_bf16'] else 'no'}; {host['threads']} threads. "
          f"pa100k-mini, 12 pedestrian tasks, {args.epochs or 'the default'} epochs, 1,200 training / 300 held images.\n")
    print(f"| precision | train s | train speed vs {ref['precision']} | predict img/s | predict speed vs {ref['precision']} | "
          "mean held mA | official mAP@10 | sound mAP@10 | max abs dp vs first |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        same = r["names"] == ref["names"]
        r["max_abs_dp_vs_first"] = float(np.abs(np.asarray(r["probs"]) - np.asarray(ref["probs"])).max()) if same else None
        r["train_speedup"] = ref["train_s"] / r["train_s"]
        r["predict_speedup"] = r["predict_images_per_s"] / ref["predict_images_per_s"]
        m = r["retrieval"]
        print(f"| {r['precision']} | {r['train_s']:.0f} | {r['train_speedup']:.2f}x | {r['predict_images_per_s']:.1f} | "
              f"{r['predict_speedup']:.2f}x | {r['mean_held_mA']:.3f} | {m['official_map@10']:.3f} | {m['sound_map@10']:.3f} | "
              f"{r['max_abs_dp_vs_first']:.3f} |")
    print(f"\nThe same models ({ref['precision']}-trained) predicting the 300 held images in each precision: the rounding "
          "tolerance (docs/precision.md: at most 0.1 per entry).\n")
    print("| models | predict | max abs dp | 99th pct abs dp | mean abs dp | top-10 overlap | identical top-10 lists |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for c in cross:
        print(f"| {c['models']} | {c['predict']} | {c['max_abs_dp']:.3f} | {c['p99_abs_dp']:.4f} | {c['mean_abs_dp']:.4f} | "
              f"{c['top10_overlap']:.3f} | {c['identical_top10']:.3f} |")
    for r in runs:
        del r["probs"], r["names"], r["lists"], r["dirs"]
    doc = {**json_header("precision"), "cpu": host, "epochs": args.epochs, "runs": runs, "same_models": cross}
    atomic_write_text(Path(args.out), json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
