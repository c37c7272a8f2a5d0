"""Accuracy on real images: the published ablation (the structure of the paper's Table 1), extended.

    .venv/bin/python -m bench accuracy                        # both subjects, every row
    .venv/bin/python bench/accuracy.py --subjects vehicle     # one subject
    .venv/bin/python bench/accuracy.py --quick                # the default rows only
    .venv/bin/python bench/accuracy.py --subjects clothing    # the clothing rows (bench/clothing.py)

Every row trains through the library exactly as ``attrret train`` does (the defaults unless the
row says otherwise), predicts the held images into an index (``build_index``, its defaults) and
ranks the held captions (``rank_captions``). Trained models are kept under ``--workdir`` and
reused when their resolved configuration is unchanged (``train --resume``; ``--retrain`` to train
again); each row's train time is the wall time of the training that produced it, stored beside
its models.

Splits, fixed and documented:

- **pedestrians**, ``../shared/data/pa100k-mini``: ``holdout_split(1,500, n=300, seed 0)`` (names
  sorted, numpy seed-0 permutation, the last 300 held); training selects epochs and fits
  temperatures on a stratified 15% of the other 1,200. Queries: the 300 held captions over
  the 300 held images, relevance by the Track-2 rule from full labels.
- **vehicles**, ``../shared/data/vehicles-mini``: ``holdout_split(6,151, n=1,230, seed 0)`` (20%),
  the same rule. Labels are incomplete (brand and sometimes type, or colour only), so each task
  trains on the images that label it. Queries: the distinct held captions; an image whose
  labels leave a stated group unknown is unjudged and dropped from the list before it is cut
  at 10 (``PartialRelevance``; the bench ranks the whole held gallery so that the drop comes
  first); relevant = every stated group equal.

Rows (each: official and sound mAP@10, R@1, train time):

- ``default``: ``attrret train --task SUBJECT`` (decoupled single-task models, partial
  freezing, the schema's input size, full crops, calibrated), ``rank`` (euclidean, keywords only);
- ``--tta flip``: the default models, each image averaged with its mirror at predict: what flip
  TTA, which doubles predict's cost, buys (the default is without since it was measured here);
- scoring: ``--scoring linear`` / ``loglik``; calibration: the same models at ``T = 1``;
- parsing (pedestrians): all groups (``--use-implied``, ``--hidden-priors``, both);
- geometry: the old square default (160 x 160);
- crops (pedestrians): hat and glasses trained on the top of the crop, the rest unchanged;
- ensemble: the default plus a 320 x 160 (pedestrian) / 160 x 240 (vehicle) member, equal weights;
- backbone (pedestrians): ``tf_efficientnet_lite1`` and ``lite2``;
- freezing (pedestrians): ``--trainable-blocks 1`` (the 1x1 head conv alone, the old default; the
  default trains the last MBConv stage too);
- decoupled vs multi-task: one shared tail with every group's head
  (``attrret train --multitask``: the same loop, splits, cache and checkpoints), with partial
  freezing and with full fine-tuning of every block. Full fine-tuning is measured on the
  multi-task model only: one shared network passes every image once per epoch, where twelve
  decoupled ones would take twelve times as long (hours on this 2-core machine);
- two datasets (pedestrians): pa100k-mini plus peta-train (imported once: ``attrret data import
  peta``), ``attrret train --data A --data B``; the held pa100k-mini images are the same, so the
  row says what PETA's labels do to the Track-2 groups (``holdout`` also keeps 300 peta-train
  images out of training). These are the two-dataset models alone: the gated anchor member
  ``attrret train`` adds beside them by default is measured by ``--subjects clothing``.

- clothing (``--subjects clothing``, issue 32): pa100k-mini + peta-train against pa100k-mini
  alone, per-group mA and colour / clothing / existing-group retrieval on the held-out peta-mini
  crops, and the pa100k-mini held split; run by :mod:`bench.clothing` (its own JSON,
  ``bench/results/clothing.json``), whose module doc has the splits and query sets.

Prints Markdown tables; writes ``bench/results/accuracy.json``.
"""

from __future__ import annotations

import argparse
import subprocess
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # the bench package, when run as a script
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench import json_header  # noqa: E402
from attrret.data.records import Record, load_records  # noqa: E402
from attrret.data.splits import holdout_split  # noqa: E402
from attrret.io import atomic_write_text  # noqa: E402
from attrret.retrieval.index import open_index  # noqa: E402
from attrret.retrieval.metrics import LabelRelevance, PartialRelevance, evaluate_lists, label_keys  # noqa: E402
from attrret.classifiers.engine import Ensemble  # noqa: E402
from attrret.retrieval.indexer import Member, build_index  # noqa: E402
from attrret.retrieval.submission import priors_from_data, rank_captions  # noqa: E402
from attrret.retrieval.ranker import RankOptions  # noqa: E402
from attrret.schema import load_schema  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
# peta-train imported for the "+ peta-train" row (attrret data import peta; made on first use)
PETA_TRAIN = ROOT / "attrret-work" / "data-peta-train"
FULL_BLOCKS = 8  # every block of tf_efficientnet_lite0: the stem and the whole trunk train
FULL_LR = 1e-3  # full fine-tuning: one stated learning rate for both subjects (not tuned)
SUBJECTS = {
    # full_epochs: full fine-tuning passes every image through the whole trunk (about 10x the cost
    # of an epoch over cached fronts), so it runs fewer epochs to fit the session
    "pedestrian": {"data": DATA / "pa100k-mini", "holdout": 300, "bigger": (320, 160), "crop_tasks": ("hat", "glasses"),
                   "full_epochs": 4},
    "vehicle": {"data": DATA / "vehicles-mini", "holdout": 1230, "bigger": (160, 240), "crop_tasks": (), "full_epochs": 3},
}


@dataclass(frozen=True)
class Setup:
    """One trained configuration: TrainConfig overrides for some of a subject's tasks."""

    name: str
    overrides: dict = field(default_factory=dict)
    groups: tuple[str, ...] = ()  # () = every group of the subject


def _setups(subject: str, quick: bool, only: Sequence[str] = ()) -> list[Setup]:
    out = _all_setups(subject, quick)
    return [s for s in out if s.name == "default" or s.name in only] if only else out


def _all_setups(subject: str, quick: bool) -> list[Setup]:
    spec = SUBJECTS[subject]
    out = [Setup("default")]
    if quick:
        return out
    out += [Setup("square 160", {"img_size": 160}), Setup("bigger", {"img_size": spec["bigger"]})]
    if subject == "pedestrian":  # extensions: each vehicle setup rebuilds a 6,151-image trunk cache
        out += [Setup("lite1", {"backbone": "tf_efficientnet_lite1"}), Setup("lite2", {"backbone": "tf_efficientnet_lite2"}),
                Setup("1 block", {"trainable_blocks": 1})]
    if spec["crop_tasks"]:
        out.append(Setup("top crop", {"crop": "top"}, spec["crop_tasks"]))
    if subject == "pedestrian":  # two datasets at once: does PETA's data help the Track-2 groups?
        out.append(Setup("+ peta-train", {"data": (str(spec["data"]), str(PETA_TRAIN))}))
    out += [Setup("multi-task", {"multitask": True}),
            Setup("multi-task full", {"multitask": True, "trainable_blocks": FULL_BLOCKS, "epochs": spec["full_epochs"], "lr": FULL_LR})]
    return out


def _import_peta_train() -> None:
    """``attrret data import peta`` of shared/data/peta-train into :data:`PETA_TRAIN` (all of it
    trains or selects: its own val split by identity, no test split)."""
    if (PETA_TRAIN / "import.json").is_file():
        return
    subprocess.run([sys.executable, "-m", "attrret", "data", "import", "peta", str(DATA / "peta-train" / "raw"), "--out", str(PETA_TRAIN),
                    "--test-fraction", "0", "--force"], check=True, stdout=subprocess.DEVNULL)


def _train(subject: str, setup: Setup, work: Path, retrain: bool) -> tuple[dict[str, Path], float]:
    """Task dirs of ``setup`` (trained now, or reused) and the wall time of the training that made them."""
    from attrret.classifiers.train import TrainConfig, train_tasks

    spec = SUBJECTS[subject]
    w = work / subject / setup.name.replace(" ", "-")
    # one trunk cache directory per subject: caches are keyed by front, input and crop, so setups
    # that keep the default front (multi-task, the default itself) share theirs instead of rebuilding
    shared = work / subject / "default" / "cache"
    shared.mkdir(parents=True, exist_ok=True)
    w.mkdir(parents=True, exist_ok=True)
    if not (w / "cache").exists():
        (w / "cache").symlink_to(shared.resolve(), target_is_directory=True)
    stamp = w / "bench_train.json"
    schema = load_schema()
    groups = setup.groups or tuple(g.name for g in schema.subject(subject).groups)
    dirs = {g: w / "models" / f"{subject}.{g}" for g in groups}
    cfg = {"data": str(spec["data"]), "workdir": str(w), "holdout": spec["holdout"], **setup.overrides}
    if str(PETA_TRAIN) in cfg["data"]:
        _import_peta_train()
    print(f"{subject} / {setup.name}: {len(groups)} task(s) ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    results = []
    for task in [subject] if not setup.groups else [f"{subject}.{g}" for g in groups]:
        # --resume: train_tasks itself skips a task trained with this same resolved config
        # (library defaults included), so a changed default retrains and an unchanged one is reused
        results += train_tasks(TrainConfig(task=task, resume=not retrain, **cfg), progress=False)
    seconds = time.perf_counter() - t0
    if all(r.skipped for r in results) and stamp.exists():
        return dirs, json.loads(stamp.read_text())["seconds"]  # the time of the training that made them
    atomic_write_text(stamp, json.dumps({"config": _jsonable(cfg), "seconds": seconds}))
    return dirs, seconds


def _jsonable(cfg: dict) -> dict:
    return json.loads(json.dumps(cfg, default=list))


def _untempered(dirs: dict[str, Path], out: Path) -> dict[str, Path]:
    """Copies of the checkpoints with their fitted temperature replaced by 1 (no calibration)."""
    from attrret.classifiers.checkpoint import load_checkpoint, save_checkpoint

    copies = {}
    for g, d in dirs.items():
        ck = load_checkpoint(d)
        copies[g] = out / d.name
        copies[g].mkdir(parents=True, exist_ok=True)
        save_checkpoint(copies[g] / "model.pt", {**ck.meta, "temperature": 1.0}, ck.stored)
    return copies


@dataclass(frozen=True)
class Held:
    """The held images and the queries over them, with their relevance."""

    records: list[Record]
    captions: list[str]
    kinds: list[str]
    relevance: object
    listing: Path


def _held(subject: str, work: Path) -> Held:
    spec, schema = SUBJECTS[subject], load_schema()
    recs = [r for r in load_records(spec["data"], schema=schema) if r.kind == subject]
    _, held = holdout_split(recs, spec["holdout"])
    listing = work / subject / "held.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(listing, "".join(f"{r.path}\n" for r in held))
    if subject == "pedestrian":
        rel = LabelRelevance([r.image for r in held], [r.kind for r in held], [r.caption for r in held],
                             label_keys([r.values for r in held], [r.kind for r in held], schema))
        captions = [r.caption for r in held]
    else:
        from attrret.parser import CaptionParser

        captions = sorted({r.caption for r in held})
        stated = [q.stated for q in CaptionParser().parse_many(captions)]
        rel = PartialRelevance(captions, stated, [r.image for r in held], [r.values for r in held])
    return Held(held, captions, [subject] * len(captions), rel, listing)


def _classification(dirs: dict[str, Path]) -> dict[str, dict]:
    """Per task: held accuracy and mA, as training measured them (metrics.json ``holdout``)."""
    out = {}
    for g, d in dirs.items():
        h = json.loads((d / "metrics.json").read_text())["holdout"]
        out[g] = {"accuracy": h["accuracy"], "mA": h["mA"], "n": h["n"]}
    return out


def _score(held: Held, members: Sequence[Member], path: Path, options: RankOptions, priors=None, tta_flip: bool = False) -> dict:
    build_index(held.listing, path, Ensemble.open(members, tta="flip" if tta_flip else "none"), progress=False, log=lambda s: None)
    if isinstance(held.relevance, PartialRelevance):
        # unjudged images are dropped before the cut at 10, so the lists must cover the gallery
        options = replace(options, k=len(held.records))
    run = rank_captions(open_index(path), held.captions, options, priors)
    return evaluate_lists([names for _, names in run.results], held.relevance, held.kinds)["all"].to_json()


def run_subject(subject: str, work: Path, quick: bool, retrain: bool, log: Callable[[str], None],
                only: Sequence[str] = ()) -> dict:
    held = _held(subject, work)
    trained = {s.name: (s, *_train(subject, s, work, retrain)) for s in _setups(subject, quick, only)}
    _, base, t_base = trained["default"]
    rows: list[dict] = []

    def row(name: str, dirs: dict[str, Path], seconds: float, options: RankOptions = RankOptions(), priors=None,
            extra: Sequence[dict[str, Path]] = (), tta_flip: bool = False) -> None:
        members = [Member(name, tuple(d.values())) for d in (dirs, *extra)]
        slug = name.replace(" ", "_").replace("/", "_").replace("+", "_").replace("=", "").replace("(", "").replace(")", "")
        scores = _score(held, members, work / subject / "index" / slug, options, priors, tta_flip)
        rows.append({"row": name, "train_s": round(seconds, 1), **scores})
        log(f"{subject} | {name} | {scores['official_map@10']:.4f} | {scores['sound_map@10']:.4f} | {scores['R@1']:.3f}")

    row("default", base, t_base)
    row("--tta flip (twice the predict cost)", base, t_base, tta_flip=True)
    for scoring in ("linear", "loglik"):
        row(f"--scoring {scoring}", base, t_base, RankOptions(scoring=scoring))
    plain = _untempered(base, work / subject / "T1")
    row("no calibration (T = 1)", plain, t_base)
    row("no calibration, --scoring loglik", plain, t_base, RankOptions(scoring="loglik"))
    if subject == "pedestrian" and not quick:
        priors = priors_from_data(SUBJECTS[subject]["data"], holdout=SUBJECTS[subject]["holdout"])
        row("all groups: --use-implied", base, t_base, RankOptions(use_implied=True))
        row("all groups: --hidden-priors", base, t_base, priors=priors)
        row("all groups: both", base, t_base, RankOptions(use_implied=True), priors)
    names = {"multi-task": "multi-task: one shared tail, every head (partial freezing)",
             "multi-task full": f"multi-task, full fine-tuning ({SUBJECTS[subject]['full_epochs']} epochs, lr {FULL_LR:g})",
             "square 160": "geometry: 160 x 160 (the old default)", "lite1": "backbone: tf_efficientnet_lite1",
             "lite2": "backbone: tf_efficientnet_lite2",
             "1 block": "--trainable-blocks 1 (the head conv alone)",
             "+ peta-train": "two datasets: + peta-train (--data pa100k-mini --data peta-train)"}
    for key, label in names.items():
        if key in trained:
            row(label, trained[key][1], trained[key][2])
    if "top crop" in trained:
        _, crop_dirs, t_crop = trained["top crop"]
        row(f"top crop for {', '.join(crop_dirs)}", {**base, **crop_dirs}, t_base + t_crop)
    if "bigger" in trained:
        _, big, t_big = trained["bigger"]
        hw = SUBJECTS[subject]["bigger"]
        row(f"{hw[0]} x {hw[1]} alone", big, t_big)
        row(f"ensemble: default + {hw[0]} x {hw[1]}", base, t_base + t_big, extra=[big])
    return {"subject": subject, "data": str(SUBJECTS[subject]["data"]), "holdout": SUBJECTS[subject]["holdout"],
            "queries": len(held.captions), "gallery": len(held.records), "rows": rows,
            "classification": {name: _classification(t[1]) for name, t in trained.items()}}


def _print(res: dict) -> None:
    print(f"\n**{res['subject']}s** ({Path(res['data']).name}: {res['queries']} queries over {res['gallery']} held images)\n")
    print("| row | official mAP@10 | sound mAP@10 | R@1 | train (s) |")
    print("|---|---:|---:|---:|---:|")
    for r in res["rows"]:
        print(f"| {r['row']} | {r['official_map@10']:.4f} | {r['sound_map@10']:.4f} | {r['R@1']:.3f} | {r['train_s']:.0f} |")
    cls = res["classification"]
    setups = list(cls)
    tasks = list(cls["default"])
    print(f"\nheld accuracy / mA per task ({res['subject']}s)\n")
    print("| task | " + " | ".join(setups) + " |")
    print("|---|" + "---:|" * len(setups))
    for t in tasks:
        cells = [f"{cls[s][t]['accuracy']:.3f} / {cls[s][t]['mA']:.3f}" if t in cls[s] else "-" for s in setups]
        print(f"| {t} (n={cls['default'][t]['n']}) | " + " | ".join(cells) + " |")
    means = [f"{sum(v['mA'] for v in cls[s].values()) / len(cls[s]):.3f}" if len(cls[s]) == len(tasks) else "-" for s in setups]
    print("| **mean mA** | " + " | ".join(means) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subjects", default="pedestrian,vehicle")
    ap.add_argument("--workdir", default=str(ROOT / "attrret-work" / "bench-accuracy"))
    ap.add_argument("--quick", action="store_true", help="the default rows only (one training per subject)")
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--setups", default="", help="comma-separated setup names to train besides the default "
                    "(square 160, bigger, lite1, lite2, 1 block, top crop, multi-task, multi-task full); default: all")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "accuracy.json"))
    args = ap.parse_args(argv)
    work = Path(args.workdir)
    t0 = time.perf_counter()
    results = []
    subjects = args.subjects.split(",")
    if "clothing" in subjects:  # its own setups, splits and JSON (bench/clothing.py)
        from bench import clothing

        clothing.main(["--retrain"] if args.retrain else [])
        subjects.remove("clothing")
        if not subjects:
            return 0
    for subject in subjects:
        if not SUBJECTS[subject]["data"].is_dir():
            print(f"{SUBJECTS[subject]['data']}: not here, {subject}s skipped", file=sys.stderr)
            continue
        results.append(run_subject(subject, work, args.quick, args.retrain, lambda s: print(s, file=sys.stderr, flush=True),
                                   [n for n in args.setups.split(",") if n]))
        _print(results[-1])
    doc = {**json_header("accuracy"), "quick": args.quick, "total_s": round(time.perf_counter() - t0, 1), "subjects": results,
           "not_run": {"decoupled full fine-tuning": "one full fine-tuning per task: hours on a 2-core CPU; measured on the multi-task model"}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
