"""Choosing the training recipe on the selection split: epochs, EMA, label smoothing, class balance.

    .venv/bin/python -m bench recipe                          # both subjects
    .venv/bin/python bench/recipe.py --subjects vehicle       # one subject

Why a separate bench. The issue's rule is that defaults are chosen on the training data's own
validation split, never on the held images that bench/accuracy.py reports. So this bench trains
each variant on the same training images as bench/accuracy.py (the held images kept out by the
same ``holdout_split``) and prints only selection-split figures: the mean over tasks of the kept
epoch's mA, and of the calibrated negative log-likelihood (a smoother score than mA on a split
of about 180 images). The held figures exist in each task's metrics.json but are not read here.

Every variant reuses one trunk cache per subject (they all keep the default front), so a
variant costs only its training epochs.

Caveat, stated in the table: the kept epoch is the best of the variant's epochs on this same
split, so variants with more epochs get a slightly optimistic mA; the NLL column is at the kept
epoch too, but a temperature fitted on 180 images is hard to overfit.

Prints Markdown tables; writes ``bench/results/recipe.json``.
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
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench import json_header  # noqa: E402
from bench.accuracy import SUBJECTS  # noqa: E402
from attrret.io import atomic_write_text  # noqa: E402

#: Variants as TrainConfig overrides of the library defaults ("default": none).
VARIANTS: dict[str, dict] = {
    "default": {},
    "epochs 16": {"epochs": 16},
    "epochs 30": {"epochs": 30},
    "epochs 30 + EMA 0.998": {"epochs": 30, "ema": 0.998},
    "epochs 30 + lr 2e-3": {"epochs": 30, "lr": 2e-3},
    "epochs 30 + no label smoothing": {"epochs": 30, "label_smoothing": 0.0},
    "epochs 30 + sqrt balance": {"epochs": 30, "balance": "sqrt"},
    # the accurate recipe (classifiers/recipes.py): the default plus a 1.25x member, probabilities averaged
    "--recipe accurate": {"recipe": "accurate"},
}


def run_variant(subject: str, name: str, overrides: dict, work: Path) -> dict:
    from attrret.classifiers.recipes import recipe_configs
    from attrret.classifiers.train import TrainConfig, train_tasks

    spec = SUBJECTS[subject]
    overrides = dict(overrides)
    recipe = overrides.pop("recipe", "default")
    w = work / subject / name.replace(" + ", "+").replace(" ", "-").lstrip("-")
    w.mkdir(parents=True, exist_ok=True)
    shared = work / subject / "cache"
    shared.mkdir(parents=True, exist_ok=True)
    if not (w / "cache").exists():
        (w / "cache").symlink_to(shared.resolve(), target_is_directory=True)
    print(f"{subject} / {name} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    base = TrainConfig(task=subject, data=str(spec["data"]), workdir=str(w), holdout=spec["holdout"], resume=True, **overrides)
    members = [train_tasks(cfg, progress=False) for cfg in recipe_configs(base, recipe)]
    seconds = time.perf_counter() - t0
    tasks = {}
    for r in members[0]:
        m = json.loads((r.model_dir / "metrics.json").read_text())
        cal = m.get("calibration") or {}
        tasks[r.task] = {"val_mA": m["val"]["mA"], "val_accuracy": m["val"]["accuracy"], "best_epoch": m["best_epoch"],
                         "val_nll": cal.get("val_nll_calibrated"), "train_s": m["train_seconds"]}
    if len(members) > 1:  # an ensemble: its selection-split figures from the members' averaged probabilities
        tasks = _ensemble_selection(base, [{r.task: r.model_dir for r in rs} for rs in members], tasks)
    n = len(tasks)
    return {"variant": name, "overrides": overrides, "seconds": round(seconds, 1),
            "mean_val_mA": sum(t["val_mA"] for t in tasks.values()) / n,
            "mean_val_nll": sum(t["val_nll"] for t in tasks.values()) / n,
            "train_s": round(sum(t["train_s"] for t in tasks.values()), 1), "tasks": tasks}


def _ensemble_selection(config, members: list[dict[str, Path]], single: dict[str, dict]) -> dict[str, dict]:
    """Per task, the selection-split mA and NLL of the members' averaged probabilities (each
    member's own temperature applied, as predict does). The split is the one every member
    trained with (same data, holdout, fraction and seed)."""
    import numpy as np

    from attrret.classifiers.data import load_task_data
    from attrret.classifiers.metrics import classification_metrics
    from attrret.classifiers.engine import predict_probs
    from attrret.schema import load_schema

    schema = load_schema()
    groups = [schema.task(t) for t in members[0]]
    data = load_task_data(config.data, groups, holdout=config.holdout, holdout_seed=config.holdout_seed,
                          val_fraction=config.val_fraction, seed=config.seed)
    paths = sorted({p for td in data.values() for p, _ in td.val})
    at = {p: i for i, p in enumerate(paths)}
    probs = [predict_probs(list(m.values()), [Path(p) for p in paths], progress=False) for m in members]
    out = {}
    for g in groups:
        val = data[g.task].val
        rows = [at[p] for p, _ in val]
        y = np.array([c for _, c in val])
        p = np.mean([pr[g.task][rows] for pr in probs], axis=0)
        m = classification_metrics(y, p.argmax(1), g.classes)
        nll = float(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)).mean())
        out[g.task] = {**single[g.task], "val_mA": m["mA"], "val_accuracy": m["accuracy"], "val_nll": nll,
                       "train_s": sum(json.loads((mem[g.task] / "metrics.json").read_text())["train_seconds"] for mem in members)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subjects", default="pedestrian,vehicle")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names from VARIANTS (names hold no comma)")
    ap.add_argument("--workdir", default=str(ROOT / "attrret-work" / "bench-recipe"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "recipe.json"))
    args = ap.parse_args(argv)
    work = Path(args.workdir)
    out = []
    for subject in args.subjects.split(","):
        rows = [run_variant(subject, v, VARIANTS[v], work) for v in args.variants.split(",")]
        out.append({"subject": subject, "data": str(SUBJECTS[subject]["data"]), "rows": rows})
        print(f"\n**{subject}s**: selection split only (mean over {len(rows[0]['tasks'])} tasks)\n")
        print("| variant | mean val mA | mean val NLL (calibrated) | train (s, epochs only) |")
        print("|---|---:|---:|---:|")
        for r in rows:
            print(f"| {r['variant']} | {r['mean_val_mA']:.4f} | {r['mean_val_nll']:.4f} | {r['train_s']:.0f} |")
        tasks = list(rows[0]["tasks"])
        print("\n| task | " + " | ".join(r["variant"] for r in rows) + " |")
        print("|---|" + "---:|" * len(rows))
        for t in tasks:
            print(f"| {t} | " + " | ".join(f"{r['tasks'][t]['val_mA']:.3f}" for r in rows) + " |")
    doc = {**json_header("recipe"), "subjects": out}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
