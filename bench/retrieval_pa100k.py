"""Real pedestrian retrieval on pa100k-mini: the published ablation, on real images.

    .venv/bin/python bench/retrieval_pa100k.py [--data DIR] [--sizes 160,224] [--epochs E] [--workdir W] [--retrain]

Split: ``holdout_split`` (1,500 images sorted by name, numpy seed 0 permutation, last 300
held). The 12 pedestrian tasks are trained on the 1,200 (``attrret train --task pedestrian
--holdout 300`` defaults, once per resolution; existing models under W are reused unless
``--retrain``). The 300 held images are the gallery, their 300 captions the queries, and
relevance follows the Track-2 rule from their full labels (same gender, superset of the
query image's positive bits). Rows:

- parsing: keywords only (stated values, the published baseline) / ``--use-implied`` /
  ``--hidden-priors`` (priors learned from the 1,200 training labels) / both;
- flip TTA on / off (first resolution);
- one resolution vs the two-resolution ensemble (equal weights), flip TTA on.

Prints a Markdown table; writes ``bench/results/retrieval_pa100k.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # the bench package, when run as a script
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench import json_header  # noqa: E402
from attrret.data.records import load_records  # noqa: E402
from attrret.data.splits import holdout_split  # noqa: E402
from attrret.io import atomic_write_text  # noqa: E402
from attrret.classifiers.engine import Ensemble  # noqa: E402
from attrret.retrieval.indexer import Member, build_index, find_members  # noqa: E402
from attrret.retrieval.index import open_index  # noqa: E402
from attrret.retrieval.metrics import LabelRelevance, evaluate_lists, label_keys  # noqa: E402
from attrret.retrieval.submission import priors_from_data, rank_captions  # noqa: E402
from attrret.retrieval.ranker import RankOptions  # noqa: E402
from attrret.schema import load_schema  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "pa100k-mini"
PARSING = {
    "keywords only": dict(use_implied=False, priors=False),
    "--use-implied": dict(use_implied=True, priors=False),
    "--hidden-priors": dict(use_implied=False, priors=True),
    "--use-implied --hidden-priors": dict(use_implied=True, priors=True),
}


def _train(data: str, workdir: Path, size: int, epochs: int, retrain: bool) -> Member:
    """Train (or, with the same config already complete under ``workdir``, reuse) the 12 tasks at ``size``."""
    from attrret.classifiers.train import TrainConfig, train_tasks

    print(f"12 pedestrian tasks at {size}px in {workdir} ...", file=sys.stderr, flush=True)
    train_tasks(TrainConfig(task="pedestrian", data=data, workdir=str(workdir), holdout=300, img_size=size, epochs=epochs,
                            resume=not retrain), progress=False)
    return find_members(workdir)[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--workdir", default=str(ROOT / "attrret-work" / "bench-retrieval-pa100k"))
    ap.add_argument("--sizes", default="160,224", help="two input sizes: the first is the single-resolution model")
    ap.add_argument("--epochs", type=int, default=8, help="attrret train's default")
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--reuse", action="append", default=[], metavar="SIZE=DIR",
                    help="use DIR (a workdir with models/ trained on the same fixed 1,200) as the SIZE member instead of training")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "retrieval_pa100k.json"))
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(args.workdir)
    t0 = time.perf_counter()

    schema = load_schema()
    records = load_records(args.data, schema=schema)
    _, held = holdout_split(records, 300)
    held_list = work / "held.txt"
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_text(held_list, "".join(f"{r.path}\n" for r in held))
    rel = LabelRelevance([r.image for r in held], [r.kind for r in held], [r.caption for r in held],
                         label_keys([r.values for r in held], [r.kind for r in held], schema))
    kinds = [r.kind for r in held]
    captions = [r.caption for r in held]

    reuse = {int(k): Path(v) for k, v in (r.split("=", 1) for r in args.reuse)}
    members = [find_members(reuse[s])[0] if s in reuse else _train(args.data, work / f"r{s}", s, args.epochs, args.retrain)
               for s in sizes]
    for s, m in zip(sizes, members):
        if m.img_sizes != ((s, s),):
            raise SystemExit(f"member for {s}px was trained at {m.img_sizes}: {m.label}")
    t_train = time.perf_counter() - t0
    indexes = {
        f"{sizes[0]}px, flip TTA": ([members[0]], True),
        f"{sizes[0]}px, no TTA": ([members[0]], False),
        f"{sizes[1]}px, flip TTA": ([members[1]], True),
        f"{sizes[0]}+{sizes[1]}px ensemble, flip TTA": (members, True),
    }
    priors = priors_from_data(args.data, holdout=300, schema=schema)
    rows = []
    for iname, (mem, flip) in indexes.items():
        path = work / "index" / iname.replace(" ", "_").replace(",", "").replace("+", "_")
        build_index(held_list, path, Ensemble.open(mem, tta="flip" if flip else "none"), progress=False, log=lambda s: None)
        index = open_index(path)
        for pname, p in PARSING.items():
            if iname != f"{sizes[0]}px, flip TTA" and pname not in ("keywords only", "--hidden-priors"):
                continue  # the parsing ablation runs on the base index; the others with the two main parsings
            run = rank_captions(index, captions, RankOptions(use_implied=p["use_implied"]), priors if p["priors"] else None)
            s = evaluate_lists([names for _, names in run.results], rel, kinds)["all"]
            rows.append({"models": iname, "parsing": pname, **s.to_json()})

    print(f"pa100k-mini held 300 captions x 300 images (trained on the fixed 1,200; {args.epochs} epochs; "
          f"relevance by Track-2 rules)\n")
    print("| models | parsing | official mAP@10 | sound mAP@10 | R@1 | R@5 | R@10 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['models']} | {r['parsing']} | {r['official_map@10']:.4f} | {r['sound_map@10']:.4f} | "
              f"{r['R@1']:.3f} | {r['R@5']:.3f} | {r['R@10']:.3f} |")
    doc = {
        **json_header("retrieval_pa100k"),
        "members": [m.label for m in members], "data": str(args.data), "split": "holdout_split(300, seed 0)", "sizes": sizes, "epochs": args.epochs,
        "train_or_reuse_s": round(t_train, 1), "total_s": round(time.perf_counter() - t0, 1), "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
