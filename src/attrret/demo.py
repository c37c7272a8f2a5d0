"""``attrret demo``: the whole pipeline on the embedded synthetic set (or a user's Track-2 folder).

synthesize -> train the router and every attribute task -> predict the test gallery -> parse and rank the test
captions -> evaluate -> HTML report. Every step is the same library call the individual
commands make, so the demo is also an end-to-end check of the public API. Re-running reuses
the generated data when it was made with the same settings; models and index are rebuilt
(the index only for changed images).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from attrret.errors import InputError
from attrret.io import atomic_write_text

__all__ = ["DemoConfig", "DemoResult", "run_demo", "FULL", "FAST"]


@dataclass(frozen=True)
class Sizes:
    """What the default and ``--fast`` demos cost: data size, resolution and epochs."""

    pedestrians: int
    vehicles: int
    img_size: int
    epochs: int


#: Default: the demo set of the synthetic generator; sized to finish in under 10 minutes on 2 cores.
FULL = Sizes(pedestrians=1200, vehicles=1200, img_size=160, epochs=8)
#: ``--fast``: a smoke run in under 2 minutes.
FAST = Sizes(pedestrians=240, vehicles=240, img_size=96, epochs=3)


@dataclass(frozen=True)
class DemoConfig:
    workdir: Path = Path("attrret-work")
    fast: bool = False
    data: Path | None = None  # a user's Track-2 folder instead of the synthetic set
    seed: int = 0
    device: str = "auto"
    precision: str | None = None  # auto | fp32 | bf16 | fp16; None: $ATTRRET_PRECISION, else auto

    @property
    def sizes(self) -> Sizes:
        return FAST if self.fast else FULL


@dataclass(frozen=True)
class DemoResult:
    data: Path
    submission: Path
    report: Path | None
    tasks: list[dict]
    retrieval: dict[str, dict] | None
    seconds: dict[str, float] = field(default_factory=dict)


def _synth(config: DemoConfig, log: Callable[[str], None]) -> Path:
    from attrret.data.synth import SynthConfig, generate, marker_config

    sizes = config.sizes
    out = config.workdir / ("data-fast" if config.fast else "data")
    synth = SynthConfig(pedestrians=sizes.pedestrians, vehicles=sizes.vehicles, seed=config.seed)
    if marker_config(out) == asdict(synth):
        log(f"data: reusing {out} (same settings)")
        return out
    summary = generate(out, synth, progress=True, force=True)
    log(f"data: {summary.total} images in {summary.seconds:.1f} s -> {out}")
    return out


def run_demo(config: DemoConfig, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> DemoResult:
    """Run every step; returns the per-task and retrieval metrics and writes ``W/demo.json``."""
    from attrret.classifiers.train import TrainConfig, train_tasks
    from attrret.data.track2 import write_submission
    from attrret.classifiers.engine import Ensemble
    from attrret.retrieval.indexer import build_index, find_members
    from attrret.retrieval.evaluate import evaluate_submission
    from attrret.retrieval.submission import rank_captions, read_queries
    from attrret.retrieval.ranker import RankOptions

    w = Path(config.workdir)
    seconds: dict[str, float] = {}
    t = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal t
        now = time.perf_counter()
        seconds[step] = round(now - t, 2)
        t = now

    if config.data is not None:
        data = Path(config.data)
        if not (data / "train" / "train_label.txt").is_file():
            raise InputError("--data must be a Track-2 folder with train/train_label.txt", data)
    else:
        data = _synth(config, log)
    lap("data")

    sizes = config.sizes
    train_cfg = TrainConfig(task="all", data=str(data), workdir=str(w), img_size=sizes.img_size, epochs=sizes.epochs,
                            seed=config.seed, device=config.device, precision=config.precision)
    results = train_tasks(train_cfg, progress=True)
    lap("train")

    test_dir = data / "test"
    queries = test_dir / "test_text.txt"
    if not queries.is_file():
        raise InputError("no test/test_text.txt to rank", data)
    index_dir = w / "index"
    build_index(data, index_dir, Ensemble.open(find_members(w), device=config.device, precision=config.precision), split="test", log=log)
    lap("predict")

    from attrret.retrieval.index import open_index

    index = open_index(index_dir)
    run = rank_captions(index, read_queries(queries), RankOptions())
    for warning in run.ranking.warnings:
        log(f"warning: {warning}")
    submission = w / "submission.json"
    write_submission(submission, run.results)
    lap("rank")

    labels, gt = test_dir / "test_label.txt", test_dir / "test_gt.txt"
    relevance = {"labels": labels} if labels.is_file() else {"gt": gt} if gt.is_file() else None
    retrieval = None
    if relevance:
        scores = evaluate_submission(submission, **relevance)
        retrieval = {name: s.to_json() for name, s in scores.items()}
    lap("evaluate")

    report = None
    if relevance:
        from attrret.report import build_report

        report = w / "report.html"
        build_report(submission, report, index=index_dir, images=test_dir / "test_images", **relevance)
    lap("report")

    tasks = [
        {"task": r.task, "n_train": r.n_train, "n_val": r.n_val, "val_accuracy": r.val["accuracy"], "val_mA": r.val["mA"],
         "seconds": round(r.seconds, 2)}
        for r in results
    ]
    result = DemoResult(data, submission, report, tasks, retrieval, seconds)
    doc = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
           "sizes": asdict(sizes), "tasks": tasks, "retrieval": retrieval, "seconds": seconds,
           "submission": str(submission), "report": str(report) if report else None}
    atomic_write_text(w / "demo.json", json.dumps(doc, indent=1) + "\n")
    return result


def format_tables(result: DemoResult) -> str:
    """Markdown tables: per-task validation metrics, then retrieval metrics per kind."""
    lines = ["| task | train | val | val acc | val mA |", "|---|---:|---:|---:|---:|"]
    for r in result.tasks:
        lines.append(f"| {r['task']} | {r['n_train']} | {r['n_val']} | {r['val_accuracy']:.3f} | {r['val_mA']:.3f} |")
    if result.retrieval:
        lines += ["", "| queries | n | official mAP@10 | sound mAP@10 | R@1 | R@5 | R@10 |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name, s in result.retrieval.items():
            lines.append(f"| {name} | {s['n']} | {s['official_map@10']:.4f} | {s['sound_map@10']:.4f} | "
                         f"{s['R@1']:.4f} | {s['R@5']:.4f} | {s['R@10']:.4f} |")
    total = sum(result.seconds.values())
    lines += ["", "time: " + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items()) + f" (total {total:.0f} s)"]
    return "\n".join(lines)
