"""Quality table: attrret (decoupled classifiers) vs the CLIP-style baseline, side by side.

    .venv/bin/python bench/quality.py [--datasets synth,pa100k] [--budget SECONDS] [--quick]

Two datasets:

- ``synth``: the embedded synthetic set generated with the demo defaults (``SynthConfig()``),
  trained on ``train``, evaluated on ``test`` (ground truth: ``test/test_gt.txt``);
- ``pa100k``: ``pa100k-mini`` (real PA-100K crops), the fixed 1,200 / 300 holdout split;
  queries are the held images' captions, the gallery the held images, relevance by the
  Track-2 rules from their labels.

Both methods see the same training images and captions. The baseline gets the same
wall-clock budget attrret's classifiers used IN THIS RUN (the sum of the per-task train
times), unless ``--budget`` fixes one. Scores: official mAP@10 (organisers' script), sound
mAP@10 and R@1, all from ``attrret.retrieval.metrics``. Prints one Markdown table, writes
``bench/results/quality.json`` (with the machine and the date).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "quality.json"
WORK = ROOT / "attrret-work" / "bench-quality"
PA100K = Path(os.environ.get("ATTRRET_PA100K", ROOT.parent / "shared" / "data" / "pa100k-mini"))


def log(msg: str) -> None:
    print(f"[quality] {msg}", file=sys.stderr, flush=True)


@dataclass
class MethodResult:
    """One method on one dataset: the ranked lists and what it cost."""

    method: str
    lists: list[list[str]]
    train_seconds: float
    rank_seconds: float
    notes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    """A dataset as both methods and the scorer see it."""

    key: str
    name: str
    root: Path
    gallery: tuple[Path, ...]
    queries: tuple[str, ...]
    gallery_names: tuple[str, ...]
    relevance: object  # attrret.retrieval.metrics.Relevance
    kinds: tuple[str | None, ...]


# ---------------------------------------------------------------------------------------------
# datasets


def synth_dataset(quick: bool) -> Dataset:
    from attrret.data.synth import SynthConfig, generate
    from attrret.data.track2 import read_gt
    from attrret.retrieval.metrics import SetRelevance

    config = SynthConfig(pedestrians=300, vehicles=300) if quick else SynthConfig()
    root = WORK / ("synth-quick" if quick else "synth")
    if not (root / "test" / "test_gt.txt").is_file():
        log(f"generating the synthetic set into {root} ({config.pedestrians} pedestrians, {config.vehicles} vehicles)")
        generate(root, config, force=True)
    from attrret.baseline.clip import resolve_eval_data

    _, evalset = resolve_eval_data(root)
    gt = read_gt(root / "test" / "test_gt.txt")
    if [t for t, _ in gt] != list(evalset.queries):
        raise SystemExit(f"{root}/test/test_gt.txt does not follow test_text.txt line by line")
    kinds = tuple(r.kind for r in evalset.records) if evalset.records else tuple(None for _ in gt)
    label = "synthetic (quick: 300+300)" if quick else "synthetic (demo defaults)"
    return Dataset("synth", label, root, evalset.gallery, evalset.queries, tuple(evalset.image_names), SetRelevance.from_rows(gt), kinds)


def pa100k_dataset() -> Dataset:
    from attrret.baseline.clip import resolve_eval_data
    from attrret.retrieval.metrics import LabelRelevance, label_keys
    from attrret.schema import load_schema

    if not (PA100K / "labels.txt").is_file():
        raise SystemExit(f"pa100k-mini not found at {PA100K} (set ATTRRET_PA100K)")
    _, evalset = resolve_eval_data(PA100K)
    held = evalset.records
    keys = label_keys([r.values for r in held], [r.kind for r in held], load_schema())
    rel = LabelRelevance([r.image for r in held], [r.kind for r in held], [r.caption for r in held], keys)
    return Dataset("pa100k", "pa100k-mini held 300", PA100K, evalset.gallery, evalset.queries, tuple(evalset.image_names), rel, tuple(r.kind for r in held))


# ---------------------------------------------------------------------------------------------
# methods


def run_attrret(ds: Dataset, work: Path, quick: bool, epochs: int | None = None) -> MethodResult:
    """attrret end to end: ``train_tasks``, then the index and the ranker with their defaults.

    The work folder is emptied first so the shared trunk cache is built inside the timed run:
    the baseline's budget is this whole ``train_tasks`` wall time, caching included, as the
    baseline's own budget includes its feature caching.
    """
    import shutil

    from attrret.classifiers.train import TrainConfig, train_tasks

    shutil.rmtree(work, ignore_errors=True)
    config = TrainConfig(
        task="pedestrian" if ds.key == "pa100k" else "all",
        data=str(ds.root),
        workdir=str(work),
        holdout=300 if ds.key == "pa100k" else 0,  # the same fixed split the baseline holds out
        epochs=epochs or (2 if quick else TrainConfig.epochs),
    )
    t0 = time.monotonic()
    results = train_tasks(config, progress=False)
    train_seconds = time.monotonic() - t0
    t0 = time.monotonic()
    lists = rank_with_attrret(ds, work, log)
    rank_seconds = time.monotonic() - t0
    notes = {"tasks": sum(not r.skipped for r in results), "task_seconds": round(sum(r.seconds for r in results), 1)}
    return MethodResult("attrret", lists, train_seconds, rank_seconds, notes)


def rank_with_attrret(ds: Dataset, work: Path, say: Callable[[str], None]) -> list[list[str]]:
    """``attrret predict`` + ``attrret rank`` with their defaults, as library calls, over ``ds.gallery``."""
    from attrret.io import atomic_write_text
    from attrret.classifiers.engine import Ensemble
    from attrret.retrieval.indexer import build_index, find_members
    from attrret.retrieval.index import open_index
    from attrret.retrieval.submission import rank_captions
    from attrret.retrieval.ranker import RankOptions

    listing = work / "gallery.txt"  # exactly the evaluation gallery (the held 300 for pa100k-mini)
    atomic_write_text(listing, "".join(f"{p.resolve()}\n" for p in ds.gallery))
    build_index(listing, work / "index", Ensemble.open(find_members(work), device="cpu"), progress=False, log=say)
    run = rank_captions(open_index(work / "index"), list(ds.queries), RankOptions())
    return [names for _, names in run.results]


def run_baseline(ds: Dataset, work: Path, budget: float | None, quick: bool, pretrained: bool = True, **options) -> MethodResult:
    from attrret.baseline.clip import run_clip_baseline
    from attrret.baseline.config import ClipConfig
    from attrret.data.track2 import read_submission

    config = ClipConfig(time_budget=budget, epochs=3 if quick and budget is None else 10_000 if budget else 40,
                        pretrained=pretrained, **options)
    run = run_clip_baseline(ds.root, work, config, log=lambda m: log(f"clip: {m}"))
    rows = read_submission(run.submission)
    h = run.metrics["history"]
    name = "CLIP baseline" + "".join(f" +{k.replace('_', '-')}" for k, v in sorted(options.items()) if v is True)
    return MethodResult(
        name,
        [names for _, names in rows],
        h["train_seconds"],
        run.metrics["rank_seconds"],
        {"steps": h["steps"], "epochs": round(h["epochs_done"], 2), "stopped_by": h["stopped_by"], "budget_s": budget},
    )


# ---------------------------------------------------------------------------------------------
# table


def score(ds: Dataset, result: MethodResult) -> dict:
    from attrret.retrieval.metrics import evaluate_lists

    scores = evaluate_lists(result.lists, ds.relevance, ds.kinds)
    return {kind: s.to_json() for kind, s in scores.items()}


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def markdown(rows: Sequence[dict]) -> str:
    head = "| dataset | method | official mAP@10 | sound mAP@10 | R@1 | sound mAP vs attrret | train s |\n|---|---|---:|---:|---:|---:|---:|\n"
    ref: dict[str, float] = {r["dataset"]: r["scores"]["all"]["sound_map@10"] for r in rows if r["method"] == "attrret" and r.get("scores")}
    lines = []
    for r in rows:
        if not r.get("scores"):
            lines.append(f"| {r['dataset']} | {r['method']} | – | – | – | – | {r.get('error', '')} |")
            continue
        s = r["scores"]["all"]
        base = ref.get(r["dataset"])
        ratio = "1.00x" if r["method"] == "attrret" else (f"{s['sound_map@10'] / base:.2f}x" if base else "–")
        lines.append(
            f"| {r['dataset']} | {r['method']} | {100 * s['official_map@10']:.1f} | {100 * s['sound_map@10']:.1f} "
            f"| {100 * s['R@1']:.1f} | {ratio} | {r['train_seconds']:.0f} |"
        )
    return head + "\n".join(lines) + "\n"


def run_dataset(ds: Dataset, key: str, args: argparse.Namespace) -> list[dict]:
    rows: list[dict] = []
    budget = args.budget
    work = WORK / key
    if not args.baseline_only:
        log(f"{ds.name}: attrret")
        try:
            res = run_attrret(ds, work / "attrret", args.quick, args.epochs)
        except ImportError as exc:
            log(f"attrret pipeline not available: {exc}")
            rows.append({"dataset": ds.name, "method": "attrret", "error": f"not available: {exc}"})
        else:
            rows.append(_row(ds, res))
            budget = budget or res.train_seconds
    log(f"{ds.name}: CLIP baseline (budget {budget and round(budget)} s)")
    for options in args.variants:
        res = run_baseline(ds, work / ("clip" + "".join(f"-{k}" for k in sorted(options))), budget, args.quick,
                           pretrained=not args.random_init, **options)
        rows.append(_row(ds, res))
    return rows


def _row(ds: Dataset, res: MethodResult) -> dict:
    return {
        "dataset": ds.name,
        "method": res.method,
        "scores": score(ds, res),
        "train_seconds": res.train_seconds,
        "rank_seconds": res.rank_seconds,
        "queries": len(ds.queries),
        "gallery": len(ds.gallery_names),
        **res.notes,
    }


VARIANTS = {
    "plain": {},
    "tricks": {"ema": True, "tta_flip": True, "kl_positives": True},
}


def _write(args: argparse.Namespace, argv: Sequence[str] | None, rows: list[dict], started: float) -> dict:
    from attrret.io import atomic_write_text

    doc = {
        "bench": "quality",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": " ".join(["bench/quality.py", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick,
        "attrret_epochs": args.epochs,
        "seconds": time.monotonic() - started,
        "rows": rows,
        "markdown": markdown(rows),
    }
    atomic_write_text(args.out, json.dumps(doc, indent=2) + "\n")
    return doc


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="synth,pa100k", help="comma list of synth, pa100k")
    p.add_argument("--budget", type=float, default=None, help="baseline training seconds (default: attrret's, this run)")
    p.add_argument("--variants", default="plain,tricks", help=f"baseline variants: {', '.join(VARIANTS)}")
    p.add_argument("--epochs", type=int, default=None, help="attrret training epochs (default: attrret train's default)")
    p.add_argument("--baseline-only", action="store_true", help="skip attrret (its budget then comes from --budget)")
    p.add_argument("--quick", action="store_true", help="small synthetic set and few epochs (a smoke run, not for the README)")
    p.add_argument("--random-init", action="store_true", help="random image-tower weights for the baseline (smoke runs only)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    args.variants = [VARIANTS[v] for v in args.variants.split(",")]
    started = time.monotonic()
    rows: list[dict] = []
    makers: dict[str, Callable[[], Dataset]] = {"synth": lambda: synth_dataset(args.quick), "pa100k": pa100k_dataset}
    for key in args.datasets.split(","):
        rows += run_dataset(makers[key](), key, args)
        doc = _write(args, argv, rows, started)  # after each dataset: a late failure keeps the rows so far
    table = doc["markdown"]
    print(table)
    log(f"wrote {args.out}")
    return doc


if __name__ == "__main__":
    main()
