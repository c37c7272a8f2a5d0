"""Clothing colours, lower body, hair and boots on real images: pa100k-mini + peta-train vs pa100k-mini alone.

    .venv/bin/python -m bench clothing
    .venv/bin/python bench/clothing.py --retrain      # train again even when the models are there
    .venv/bin/python bench/clothing.py --seeds 0,1,2  # also the pa100k-mini held split over seeds

Data (imported once with ``attrret data import`` into ``attrret-work/bench/clothing/``, images
hard-linked): ``pa100k-mini`` from its ``annotation.mat`` (the 26 PA-100K attributes: the Track-2
groups plus lower type and boots), ``peta-train`` (5,299 PETA crops, every clothing group) and
``peta-mini`` (2,500 PETA crops of other identities: the held-out PETA set, never trained on).

Setups, each ``attrret train --task pedestrian`` with the defaults and ``--holdout 300`` (the
fixed ``holdout_split`` of each dataset, as bench/accuracy.py):

- ``pa100k-mini``: one dataset, as before this work (no colour and no hair labels: those groups
  have no model, so queries on them are unscored: the "today" figures);
- ``pa100k-mini + peta-train``: both, ``--data A --data B`` (balanced sampling, ``--data-alpha 0.5``);
- ``pa100k-mini + peta-train, with a pa100k-mini member``: not trained, the two above as one
  ensemble: the two-dataset models, plus the pa100k-mini models of every group peta-train also
  labels as a second member (predict averages the members that have a task);
- ``..., gated``: the same, the pa100k-mini member weighed per image by a domain gate fitted on
  the two-dataset setup's trunk cache (``attrret.classifiers.train.train_domain_gate``): what
  ``attrret train --data A --data B`` builds by default (its anchor member is the first
  dataset's own models of the shared groups, as here).

Measured:

- per group, the held PETA mA (peta-mini, every image whose label settles the group): the mean of
  the per-class recalls of the argmax;
- retrieval on peta-mini, three query sets -- colour, clothing (lower type, hair, boots) and the
  existing groups (gender, age, hat, sunglasses, bags, sleeves) -- each a development half
  (written with the code) and a held-out half (written before the first measurement, scored
  at the end). Relevance from the raw labels, never from the parser: each query lists the
  values an image must have (``any``: one of these yes/no groups yes). An image whose labels
  leave a constrained group unknown is unjudged and dropped before the cut at 10 (the whole
  gallery is ranked). Official and sound mAP@10 (``attrret.retrieval.metrics``);
- the pa100k-mini held split (300 images, their Track-2 captions, the Track-2 rule): what the
  PETA data does to the Track-2 groups.
- the gate of the default setup on those held-out images: its mean probability and the share
  of images it gives the pa100k-mini member more than half, peta-mini also by PETA sub-dataset
  (peta-train holds five of the ten: CUHK, GRID, MIT, PRID, VIPeR);
- ``--seeds``: the same held split with the classifiers trained at each of these seeds (the seed
  also draws each dataset's selection split), both setups, so the difference the PETA data makes
  is seen beside the run-to-run spread of one setup. Only the Track-2 groups peta-train labels
  are trained per seed; every other task is the default pa100k-mini setup's seed-0 model in
  both setups (the other Track-2 groups learn from pa100k-mini alone either way):
  ``<setup>-seed<s>/`` work directories. Three more rows per seed, each two members of equal
  cost: the two setups' models as one ensemble, the same with the pa100k-mini member gated
  (the gate fitted on that seed's two-dataset trunk cache and splits), and the control,
  pa100k-mini's models of this seed and the next (what a second member adds without the PETA data).

Prints Markdown tables; writes ``bench/results/clothing.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench import json_header  # noqa: E402
from attrret.classifiers.engine import Ensemble  # noqa: E402
from attrret.classifiers.train import anchor_member  # noqa: E402
from attrret.data.records import load_records  # noqa: E402
from attrret.data.splits import holdout_split  # noqa: E402
from attrret.io import atomic_write_text  # noqa: E402
from attrret.parser import CaptionParser  # noqa: E402
from attrret.retrieval.index import open_index  # noqa: E402
from attrret.retrieval.indexer import Member, build_index  # noqa: E402
from attrret.retrieval.metrics import LabelRelevance, PartialRelevance, evaluate_lists, label_keys  # noqa: E402
from attrret.retrieval.ranker import RankOptions, rank  # noqa: E402
from attrret.retrieval.submission import rank_captions  # noqa: E402
from attrret.schema import load_schema  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
WORK = ROOT / "attrret-work" / "bench" / "clothing"
HOLDOUT = 300

#: query text -> what a relevant image's labels hold: {group: class or [classes]}, and "any": [[groups]]
#: (at least one of those yes/no groups is yes). Development halves: written with the code.
DEV = {
    "colour": {
        "a person in a black top": {"upper_color_black": "yes"},
        "someone wearing a white shirt": {"upper_color_white": "yes"},
        "man in blue jeans": {"gender": "male", "lower_color_blue": "yes", "lower_type": "trousers"},
        "woman in a red top": {"gender": "female", "upper_color_red": "yes"},
        "grey trousers": {"lower_color_grey": "yes", "lower_type": "trousers"},
        "a person in a black jacket and black trousers": {"upper_color_black": "yes", "lower_color_black": "yes",
                                                           "lower_type": "trousers"},
        "woman in black or grey trousers": {"gender": "female", "lower_type": "trousers",
                                            "any": [["lower_color_black", "lower_color_grey"]]},
        "a man dressed in red": {"gender": "male", "any": [["upper_color_red", "lower_color_red"]]},
    },
    "clothing": {
        "woman in a skirt": {"gender": "female", "lower_type": "skirt"},
        "man in shorts": {"gender": "male", "lower_type": "shorts"},
        "a person with long hair": {"hair": "long"},
        "a bald man": {"gender": "male", "hair": "bald"},
        "woman wearing boots": {"gender": "female", "boots": "yes"},
    },
    "existing": {
        "man with a backpack": {"gender": "male", "bag": "backpack"},
        "woman with a shoulder bag": {"gender": "female", "bag": "shoulder"},
        "a person wearing a hat": {"hat": "yes"},
        "man with sunglasses": {"gender": "male", "glasses": "yes"},
        "an elderly person": {"age": "over60"},
        "woman in short sleeves": {"gender": "female", "sleeve": "short"},
    },
}
#: Held-out halves: other words, colours and combinations, written before the first measurement.
HELD = {
    "colour": {
        "pedestrian with a green top": {"upper_color_green": "yes"},
        "lady in a pink blouse": {"gender": "female", "upper_color_pink": "yes"},
        "guy wearing a navy jacket": {"gender": "male", "upper_color_blue": "yes"},
        "person in brown trousers": {"lower_color_brown": "yes", "lower_type": "trousers"},
        "woman in a white top and blue jeans": {"gender": "female", "upper_color_white": "yes",
                                                "lower_color_blue": "yes", "lower_type": "trousers"},
        "someone in a yellow shirt": {"upper_color_yellow": "yes"},
        "man wearing a black and white top": {"gender": "male", "upper_color_black": "yes", "upper_color_white": "yes"},
        "a person all in black": {"any": [["upper_color_black", "lower_color_black"]]},
        "somebody in grey shorts": {"lower_color_grey": "yes", "lower_type": "shorts"},
        "a man in a red or purple top": {"gender": "male", "any": [["upper_color_red", "upper_color_purple"]]},
    },
    "clothing": {
        "someone wearing shorts": {"lower_type": "shorts"},
        "a girl with long hair": {"gender": "female", "hair": "long"},
        "man with short hair": {"gender": "male", "hair": "short"},
        "a person in jeans": {"lower_type": "trousers"},
        "lady in boots": {"gender": "female", "boots": "yes"},
        "a woman not in trousers": {"gender": "female", "lower_type": ["shorts", "skirt"]},
    },
    "existing": {
        "a lady carrying a backpack": {"gender": "female", "bag": "backpack"},
        "guy with a messenger bag": {"gender": "male", "bag": "shoulder"},
        "someone in a cap": {"hat": "yes"},
        "a young child": {"age": "under18"},
        "man in long sleeves": {"gender": "male", "sleeve": "long"},
        "a woman without sunglasses": {"gender": "female", "glasses": "no"},
    },
}


class ConstraintRelevance(PartialRelevance):
    """Relevance of a query from its constraints over raw labels (module doc): a
    :class:`PartialRelevance` whose stated values may be class lists and ``any`` alternatives."""

    @staticmethod
    def _groups(want: Mapping) -> list[str]:
        return [g for g in want if g != "any"] + [g for alt in want.get("any", ()) for g in alt]

    @staticmethod
    def _judges(want: Mapping, v: Mapping[str, str]) -> bool:
        return all(g in v for g in ConstraintRelevance._groups(want))

    @staticmethod
    def _relevant(want: Mapping, v: Mapping[str, str]) -> bool:
        if not ConstraintRelevance._judges(want, v):
            return False
        for g, c in want.items():
            if g == "any":
                if not all(any(v[x] == "yes" for x in alt) for alt in c):
                    return False
            elif v[g] not in ([c] if isinstance(c, str) else c):
                return False
        return True


def _slug(setup: str) -> str:
    """A setup's name as a directory name: ``pa100k-mini + peta-train`` -> ``pa100k-mini_peta-train``."""
    return setup.replace(" ", "").replace("+", "_").replace(",", "_")


def _import(fmt: str, src: Path, out: Path, *extra: str) -> Path:
    if not (out / "import.json").is_file():
        subprocess.run([sys.executable, "-m", "attrret", "data", "import", fmt, str(src), "--out", str(out), "--link",
                        "--force", *extra], check=True, stdout=subprocess.DEVNULL)
    return out


def _config(name: str, data: tuple[Path, ...], alpha: float = 0.5, **more):
    from attrret.classifiers.train import TrainConfig

    return TrainConfig(task="pedestrian", data=tuple(str(d) for d in data), workdir=str(WORK / _slug(name)), holdout=HOLDOUT,
                       data_alpha=alpha, **more)


def _train(name: str, data: tuple[Path, ...], retrain: bool, alpha: float = 0.5) -> tuple[dict[str, Path], float | None, list]:
    """Train (or, when trained, reuse) a setup's models: their dirs, the seconds of its last run
    that trained every task (None when there was none: a partly resumed run times only a part),
    and the results."""
    from attrret.classifiers.train import train_tasks

    stamp = WORK / _slug(name) / "bench_train.json"
    print(f"train {name} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    results = train_tasks(_config(name, data, alpha, resume=not retrain), progress=True)
    seconds: float | None = time.perf_counter() - t0
    if not any(r.skipped for r in results):
        atomic_write_text(stamp, json.dumps({"seconds": seconds}))
    else:
        seconds = json.loads(stamp.read_text())["seconds"] if stamp.exists() else None
    return {r.task: Path(r.model_dir) for r in results}, seconds, results


def _gate(data: tuple[Path, ...], work: Path, tasks: Sequence[str], seed: int = 0) -> Path:
    """The domain gate of the two-dataset setup trained in ``work`` (its trunk cache, its splits)."""
    from attrret.classifiers.train import TrainConfig, train_domain_gate

    return train_domain_gate(TrainConfig(task="pedestrian", data=tuple(str(d) for d in data), workdir=str(work), holdout=HOLDOUT,
                                         seed=seed), tasks, progress=False)


def _gate_probabilities(gate_file: Path, checkpoint: Path, images: Sequence[Path]) -> np.ndarray:
    """The gate's P(pa100k-mini) of each image (the image alone, as predict without TTA), from
    the front of ``checkpoint`` (one the gate reads)."""
    import torch

    from attrret.classifiers.checkpoint import build_classifier, load_checkpoint
    from attrret.classifiers.domain import DomainGate, pooled
    from attrret.classifiers.preprocess import load_batch

    gate, ck = DomainGate.load(gate_file), load_checkpoint(checkpoint)
    model = build_classifier(ck).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), 128):
            out.append(pooled(model.front(load_batch(images[i:i + 128], ck.preprocess, ck.info.crop))).numpy())
    return gate.probability(np.concatenate(out))


def _seed_rows(pa: Path, peta_train: Path, shared: Sequence[str], seeds: Sequence[int], base: Mapping[str, Path],
               pa_held: Sequence) -> dict:
    """Per setup and seed, the pa100k-mini held split scored with the ``shared`` Track-2 groups
    (those both datasets label) trained at that seed, the other tasks from ``base``; and two
    members of one seed as one ensemble (module doc)."""
    from attrret.classifiers.train import TrainConfig, train_tasks

    shared = list(shared)
    out: dict = {"tasks": shared, "setups": {}}
    members: dict[str, list[Member]] = {str(seed): [] for seed in seeds}
    gated: dict[str, list[Member]] = {}
    for name, data in (("pa100k-mini", (pa,)), ("pa100k-mini + peta-train", (pa, peta_train))):
        runs = {}
        for seed in seeds:
            work = WORK / f"{_slug(name)}-seed{seed}"
            print(f"train {name}, seed {seed} ({len(shared)} tasks) ...", file=sys.stderr, flush=True)
            dirs = dict(base)
            for task in shared:
                r = train_tasks(TrainConfig(task=task, data=tuple(str(d) for d in data), workdir=str(work), holdout=HOLDOUT,
                                            seed=seed, resume=True), progress=False)[0]
                dirs[task] = Path(r.model_dir)
            index = _index([Member("m", tuple(dirs.values()))], [r.path for r in pa_held], WORK / "index" / f"{_slug(name)}-seed{seed}-pa100k-held")
            runs[str(seed)] = _pa100k_held(index, pa_held)
            members[str(seed)].append(Member(name, tuple(dirs[t] for t in shared)))
            if len(data) > 1:  # the pa100k-mini member weighed by this setup's gate
                alone, union = members[str(seed)]
                gated[str(seed)] = [union, dataclasses.replace(alone, domain_gate=_gate(data, work, shared, seed))]
        out["setups"][name] = runs
    # Two members of equal cost: the setups' models of one seed, and (the control: what a
    # second member adds without the PETA data) pa100k-mini's models of this seed and the next.
    keys = list(members)
    pairs = {("ensemble", "ensemble of both (shared groups)"): members,
             ("gated", "ensemble of both, the pa100k-mini member gated (the default)"): gated}
    if len(keys) > 1:
        pairs[("control", "pa100k-mini, this seed and the next as one ensemble")] = {
            k: [members[k][0], members[keys[(i + 1) % len(keys)]][0]] for i, k in enumerate(keys)}
    rest = Member("rest", tuple(d for t, d in base.items() if t not in shared))  # every other task: base's, once
    for (slug, name), by_seed in pairs.items():
        out["setups"][name] = {
            seed: _pa100k_held(_index([*pair, rest], [r.path for r in pa_held], WORK / "index" / f"{slug}-seed{seed}-pa100k-held"), pa_held)
            for seed, pair in by_seed.items()}
    return out


def _index(members: Sequence[Member], images: Sequence[Path], out: Path):
    """Predict ``images`` into the index ``out`` with the ensemble ``members``."""
    listing = out.with_suffix(".txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(listing, "".join(f"{p}\n" for p in images))
    build_index(listing, out, Ensemble.open(list(members)), progress=False, log=lambda s: None)
    return open_index(out)


def _group_mA(index, records, schema) -> dict[str, dict]:
    """Per group the held mA of the argmax: the mean recall over the classes present."""
    row_of = {n: i for i, n in enumerate(index.names)}
    out = {}
    for g in schema.pedestrian.groups:
        if not index.has(g.task):
            continue
        rows = [(row_of[r.image], g.index(r.values[g.name])) for r in records if g.name in r.values and r.image in row_of]
        if not rows:
            continue
        idx, truth = np.array([a for a, _ in rows]), np.array([b for _, b in rows])
        pred = np.asarray(index.probs[idx])[:, index.cols(g.task)].argmax(1)
        recalls = [float((pred[truth == c] == c).mean()) for c in range(g.size) if (truth == c).any()]
        out[g.name] = {"mA": float(np.mean(recalls)), "accuracy": float((pred == truth).mean()), "n": len(rows)}
    return out


def _retrieval(index, records, queries: Mapping[str, Mapping], parser: CaptionParser) -> dict:
    texts = list(queries)
    rel = ConstraintRelevance(texts, [queries[t] for t in texts], [r.image for r in records], [r.values for r in records])
    parsed = parser.parse_many(texts)
    ranking = rank(index, parsed, RankOptions(k=len(index)))
    lists = [[index.names[i] for i in rows] for rows in ranking.rows]
    scores = evaluate_lists(lists, rel, [q.kind for q in parsed])["all"].to_json()
    return {**scores, "queries": len(texts), "relevant": [rel.n_relevant(j) for j in range(len(texts))]}


def _pa100k_held(index, held) -> dict:
    schema = load_schema()
    rel = LabelRelevance([r.image for r in held], [r.kind for r in held], [r.caption for r in held],
                         label_keys([r.values for r in held], [r.kind for r in held], schema))
    run = rank_captions(index, [r.caption for r in held], RankOptions())
    return evaluate_lists([names for _, names in run.results], rel, [r.kind for r in held])["all"].to_json()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--retrain", action="store_true", help="train again even when the models are there")
    ap.add_argument("--alpha", type=float, action="append", default=[],
                    help="also train pa100k-mini + peta-train at this --data-alpha (repeatable; the default setups use 0.5)")
    ap.add_argument("--seeds", default="", help="comma-separated seeds: also score the pa100k-mini held split with the "
                    "shared Track-2 groups trained at each (e.g. 0,1,2)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "clothing.json"))
    args = ap.parse_args(argv)
    if not (SHARED / "pa100k-mini" / "annotation.mat").is_file() or not (SHARED / "peta-train" / "raw").is_dir():
        print("shared pa100k-mini annotation.mat or peta-train missing; nothing measured", file=sys.stderr)
        return 0
    schema = load_schema()
    pa = _import("pa100k", SHARED / "pa100k-mini", WORK / "data-pa100k")
    peta_train = _import("peta", SHARED / "peta-train" / "raw", WORK / "data-peta-train", "--test-fraction", "0")
    peta_mini = _import("peta", SHARED / "peta-mini" / "raw", WORK / "data-peta-mini", "--val-fraction", "0", "--test-fraction", "0")
    setups = {"pa100k-mini": ((pa,), 0.5), "pa100k-mini + peta-train": ((pa, peta_train), 0.5)}
    setups |= {f"pa100k-mini + peta-train, alpha {a:g}": ((pa, peta_train), a) for a in args.alpha}
    trained = {name: _train(name, data, args.retrain, alpha) for name, (data, alpha) in setups.items()}

    peta_records = load_records(peta_mini, "train", schema=schema)
    _, pa_held = holdout_split(load_records(pa, "train", schema=schema), HOLDOUT)
    parser = CaptionParser()
    res: dict = {"setups": {}}
    # The two-dataset models with a pa100k-mini member for every group both datasets label (the
    # groups attrret train's anchor member retrains: train.anchor_member), the alone setup's models.
    union, alone = trained["pa100k-mini + peta-train"], trained["pa100k-mini"]
    _, specs = anchor_member(_config("pa100k-mini + peta-train", (pa, peta_train)), union[2], schema)
    anchor = {g.task: alone[0][g.task] for spec in specs for g in schema.select_tasks(spec)}
    both = [Member("union", tuple(union[0].values())), Member("pa100k-mini", tuple(anchor.values()))]
    gate = _gate((pa, peta_train), WORK / _slug("pa100k-mini + peta-train"), list(anchor))
    both_s = union[1] + alone[1] if union[1] is not None and alone[1] is not None else None
    ensembles = {"pa100k-mini + peta-train, with a pa100k-mini member": (both, both_s),
                 "pa100k-mini + peta-train, with a gated pa100k-mini member (the default)": (
                     [both[0], dataclasses.replace(both[1], domain_gate=gate)], both_s)}
    runs = {name: ([Member("m", tuple(dirs.values()))], seconds) for name, (dirs, seconds, _) in trained.items()} | ensembles
    for name, (members, seconds) in runs.items():
        slug = _slug(name)
        peta_index = _index(members, [r.path for r in peta_records], WORK / "index" / f"{slug}-peta-mini")
        pa_index = _index(members, [r.path for r in pa_held], WORK / "index" / f"{slug}-pa100k-held")
        res["setups"][name] = {
            "train_s": round(seconds, 1) if seconds is not None else None,
            "peta_mini_mA": _group_mA(peta_index, peta_records, schema),
            "retrieval": {f"{kind} ({half})": _retrieval(peta_index, peta_records, qs[kind], parser)
                          for half, qs in (("dev", DEV), ("held-out", HELD)) for kind in qs},
            "pa100k_held": _pa100k_held(pa_index, pa_held),
        }
    probs = {"peta-mini": _gate_probabilities(gate, next(iter(anchor.values())), [r.path for r in peta_records]),
             "pa100k-mini held": _gate_probabilities(gate, next(iter(anchor.values())), [r.path for r in pa_held])}
    # peta-mini by PETA sub-dataset (the importer's name prefix): peta-train holds five of its ten
    source = np.array([Path(r.image).name.split("_")[0] for r in peta_records])
    probs |= {f"peta-mini {name}": probs["peta-mini"][source == name] for name in sorted(set(source))}
    res["gate"] = {name: {"images": len(p), "mean": round(float(p.mean()), 4), "share_over_half": round(float((p > 0.5).mean()), 4)}
                   for name, p in probs.items()}
    if args.seeds:
        seeds = [int(x) for x in args.seeds.split(",")]
        res["seeds"] = _seed_rows(pa, peta_train, [t for t in anchor if schema.task(t).bits], seeds, trained["pa100k-mini"][0], pa_held)
    _print(res)
    doc = {**json_header("clothing"), "holdout": HOLDOUT, "peta_mini_images": len(peta_records),
           "pa100k_held_images": len(pa_held), "queries": {"dev": DEV, "held-out": HELD}, **res}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
    return 0


def _print(res: dict) -> None:
    names = list(res["setups"])
    print("\nRetrieval on peta-mini (2,500 held PETA crops), sound / official mAP@10\n")
    print("| query set | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for key in res["setups"][names[0]]["retrieval"]:
        cells = [f"{res['setups'][n]['retrieval'][key]['sound_map@10']:.3f} / {res['setups'][n]['retrieval'][key]['official_map@10']:.3f}"
                 for n in names]
        print(f"| {key} | " + " | ".join(cells) + " |")
    print("\npa100k-mini held split (300 images, Track-2 captions), official / sound mAP@10; train time of the "
          "last run that trained every task (-: none; bench/budget.py times the command)\n")
    print("| setup | official | sound | train (s) |")
    print("|---|---:|---:|---:|")
    for n in names:
        s = res["setups"][n]
        train = f"{s['train_s']:.0f}" if s["train_s"] is not None else "-"
        print(f"| {n} | {s['pa100k_held']['official_map@10']:.4f} | {s['pa100k_held']['sound_map@10']:.4f} | {train} |")
    print("\nThe domain gate on held-out images: its mean P(pa100k-mini), and the share it gives more than 0.5\n")
    print("| images | n | mean | share > 0.5 |")
    print("|---|---:|---:|---:|")
    for name, g in res["gate"].items():
        print(f"| {name} | {g['images']} | {g['mean']:.3f} | {g['share_over_half']:.3f} |")
    if "seeds" in res:
        sd = res["seeds"]["setups"]
        seeds = list(next(iter(sd.values())))
        print("\npa100k-mini held split by training seed (shared Track-2 groups retrained), official / sound mAP@10\n")
        print("| setup | " + " | ".join(f"seed {x}" for x in seeds) + " | mean |")
        print("|---|" + "---:|" * (len(seeds) + 1))
        for n, runs in sd.items():
            off, snd = ([runs[x][k] for x in seeds] for k in ("official_map@10", "sound_map@10"))
            print(f"| {n} | " + " | ".join(f"{a:.4f} / {b:.4f}" for a, b in zip(off, snd))
                  + f" | {np.mean(off):.4f} / {np.mean(snd):.4f} |")
    print("\nPer-group mA on peta-mini (argmax; groups a setup has a model for)\n")
    groups = list(dict.fromkeys(g for n in names for g in res["setups"][n]["peta_mini_mA"]))
    print("| group | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for g in groups:
        cells = [f"{res['setups'][n]['peta_mini_mA'][g]['mA']:.3f}" if g in res["setups"][n]["peta_mini_mA"] else "-" for n in names]
        print(f"| {g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
