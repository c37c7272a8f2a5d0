"""Training on several datasets at once: per-dataset splits, disjoint group coverage, balanced sampling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_classifier_data import make_folder

from attrret.classifiers.checkpoint import load_checkpoint
from attrret.classifiers.data import load_task_data
from attrret.classifiers.domain import DomainGate
from attrret.classifiers.engine import Engine
from attrret.classifiers.train import TrainConfig, epoch_order, train_tasks
from attrret.data.records import load_records
from attrret.ensemble import DOMAIN_GATE_FILE
from attrret.errors import OptionError
from attrret.schema import load_schema

TINY = dict(backbone="timm:test_efficientnet", pretrained=False, img_size=32, epochs=2, batch_size=8, val_fraction=0.25)


def _without(root: Path, group: str) -> Path:
    """Mark ``group`` unknown for every pedestrian of ``root`` (the side file the importers write)."""
    names = [line.split("$")[0] for line in (root / "labels.txt").read_text().splitlines() if "," in line.split("$")[1]]
    (root / "labels_unknown.jsonl").write_text("".join(json.dumps({"image": n, "unknown": [group]}) + "\n" for n in names))
    return root


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> tuple[Path, Path]:
    """Disjoint coverage: A labels gender but not hat, B labels hat but not gender."""
    root = tmp_path_factory.mktemp("two")
    return _without(make_folder(root / "a", seed=0), "hat"), _without(make_folder(root / "b", n_ped=32, seed=1), "gender")


def test_each_task_learns_from_every_dataset_that_labels_it(two):
    a, b = two
    schema = load_schema()
    gender, hat, sleeve = (schema.pedestrian.group(n) for n in ("gender", "hat", "sleeve"))
    data = load_task_data([a, b], (gender, hat, sleeve), schema=schema, val_fraction=0.25)
    ra, rb = str(a.resolve()), str(b.resolve())
    assert list(data["pedestrian.gender"].counts) == [ra] and list(data["pedestrian.hat"].counts) == [rb]
    assert list(data["pedestrian.sleeve"].counts) == [ra, rb]  # both label it
    both = data["pedestrian.sleeve"]
    # each dataset keeps its own selection split: the union of the two single-dataset ones
    alone = [load_task_data(r, (sleeve,), schema=schema, val_fraction=0.25)["pedestrian.sleeve"] for r in (a, b)]
    assert both.train == alone[0].train + alone[1].train and both.val == alone[0].val + alone[1].val
    assert both.counts[rb] == {"train": len(alone[1].train), "val": len(alone[1].val), "holdout": 0}
    assert {both.origin[p] for p, _ in alone[1].train} == {1} and {both.origin[p] for p, _ in alone[0].train} == {0}
    assert "a: stratified" in both.val_source and "b: stratified" in both.val_source


def test_two_datasets_with_disjoint_groups_train_one_network_and_record_their_counts(two, tmp_path):
    a, b = two
    cfg = TrainConfig(task="pedestrian", data=(str(a), str(b)), workdir=str(tmp_path / "w"), multitask=True, **TINY)
    results = {r.task: r for r in train_tasks(cfg, progress=False)}
    assert {"pedestrian.gender", "pedestrian.hat"} <= set(results)
    ck = load_checkpoint(tmp_path / "w" / "models" / "pedestrian.hat")
    assert list(ck.meta["datasets"]) == [str(b.resolve())] and ck.meta["config"]["data"] == [str(a.resolve()), str(b.resolve())]
    metrics = json.loads((tmp_path / "w" / "models" / "pedestrian.gender" / "metrics.json").read_text())
    assert list(metrics["datasets"]) == [str(a.resolve())] and metrics["n_train"] == metrics["datasets"][str(a.resolve())]["train"]
    # the single-task loop takes several datasets the same way
    single = train_tasks(TrainConfig(**{**cfg.as_dict(), "multitask": False, "task": "pedestrian.hat", "workdir": str(tmp_path / "s")}),
                         progress=False)[0]
    assert single.n_train == results["pedestrian.hat"].n_train


def test_the_anchor_member_retrains_what_the_first_dataset_shares_on_it_alone(two, tmp_path):
    """`attrret train` on several datasets (the anchor member is on by default): the groups the
    first dataset labels with another train again on it alone in W/members/anchor/, beside a
    domain gate fitted on both datasets' images; predict finds both members, the anchor gated,
    without flags. `--no-anchor-member` trains the union only; one dataset has no anchor."""
    from attrret.classifiers.train import anchor_member
    from attrret.cli import main
    from attrret.retrieval.indexer import find_members

    a, b = two
    w = tmp_path / "w"
    cfg = TrainConfig(task="pedestrian.gender", data=(str(a), str(b)), workdir=str(w), **{**TINY, "epochs": 1})
    results = [r for t in ("pedestrian.gender", "pedestrian.hat", "pedestrian.sleeve")
               for r in train_tasks(TrainConfig(**{**cfg.as_dict(), "task": t}), progress=False)]
    member, specs = anchor_member(cfg, results, load_schema())
    # gender: only A labels it; hat: only B; sleeve: both, so only sleeve has an anchor model
    assert specs == ("pedestrian.sleeve",)
    assert member.datasets == (str(a.resolve()),) and Path(member.workdir) == w / "members" / "anchor"

    with pytest.raises(SystemExit) as done:
        main(["train", "--task", "pedestrian.sleeve", "--data", str(a), "--data", str(b), "--workdir", str(w),
              "--backbone", "timm:test_efficientnet", "--random-init", "--img-size", "32", "--epochs", "1", "--batch-size", "8",
              "--quiet"])
    assert done.value.code == 0
    anchor = json.loads((w / "members" / "anchor" / "models" / "pedestrian.sleeve" / "metrics.json").read_text())
    assert list(anchor["datasets"]) == [str(a.resolve())]
    assert not (w / "members" / "anchor" / "cache").exists()  # it read the run's trunk cache
    found = find_members(w)
    assert len(found) == 2 and [d.name for d in found[1].task_dirs] == ["pedestrian.sleeve"]
    assert found[0].domain_gate is None and found[1].domain_gate == w / "members" / "anchor" / DOMAIN_GATE_FILE
    gate = DomainGate.load(found[1].domain_gate)
    assert gate.datasets == (str(a.resolve()), str(b.resolve()))
    n_images = sum(1 for d in (a, b) for r in load_records(d, "train") if r.kind == "pedestrian")
    assert gate.metrics["train_images"] + gate.metrics["val_images"] == n_images  # every pedestrian of both
    assert set(gate.metrics["val_accuracy"]) == set(gate.datasets)
    engine = Engine.build(found)
    assert len(engine.domains) == 1 and engine.combine["pedestrian.sleeve"][1][2] == 0  # the anchor's tail, gated
    with pytest.raises(SystemExit) as done:
        main(["train", "--task", "pedestrian.sleeve", "--data", str(a), "--data", str(b), "--workdir", str(tmp_path / "union"),
              "--no-anchor-member", "--backbone", "timm:test_efficientnet", "--random-init", "--img-size", "32", "--epochs", "1",
              "--batch-size", "8", "--quiet"])
    assert done.value.code == 0 and not (tmp_path / "union" / "members").exists()
    with pytest.raises(SystemExit) as done:  # one dataset has no anchor to add
        main(["train", "--task", "pedestrian.sleeve", "--data", str(a), "--workdir", str(tmp_path / "one"), "--anchor-member", "--quiet"])
    assert done.value.code == 2 and not (tmp_path / "one").exists()


def test_an_anchor_with_the_router_and_vehicles_gates_every_image(two, tmp_path):
    """`attrret train --task all` on two datasets: the anchor member holds the router and the
    vehicle groups too, so its gate learns from every image (not one subject's) and predict,
    router-gated, runs it on pedestrians and vehicles alike."""
    from attrret.cli import main
    from attrret.retrieval.indexer import find_members

    a, b = two
    w = tmp_path / "w"
    with pytest.raises(SystemExit) as done:
        main(["train", "--task", "router", "--data", str(a), "--data", str(b), "--workdir", str(w),
              "--backbone", "timm:test_efficientnet", "--random-init", "--img-size", "32", "--epochs", "1", "--batch-size", "8",
              "--quiet"])
    assert done.value.code == 0
    found = find_members(w)
    assert [d.name for d in found[1].task_dirs] == ["router"] and found[1].domain_gate is not None
    gate = DomainGate.load(found[1].domain_gate)
    n_images = sum(1 for d in (a, b) for _ in load_records(d, "train"))
    assert gate.metrics["train_images"] + gate.metrics["val_images"] == n_images  # pedestrians and vehicles
    images = sorted((a / "images").iterdir())
    probs = Engine.build(found).predict(images, gate=True, progress=False, precision="fp32")
    assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1.0, atol=1e-5)  # the router's columns only
    # without the trunk cache the gate computes the front itself, on the same images and front
    from attrret.classifiers.train import train_domain_gate

    cfg = TrainConfig(task="router", data=(str(a), str(b)), workdir=str(tmp_path / "nocache"), cache=False,
                      **{**TINY, "img_size": 32, "val_fraction": 0.15})
    again = DomainGate.load(train_domain_gate(cfg, ["router"], progress=False))
    assert not (tmp_path / "nocache" / "cache").exists()
    assert (again.front_hash, again.metrics["train_images"], again.metrics["val_images"]) == (
        gate.front_hash, gate.metrics["train_images"], gate.metrics["val_images"])


@pytest.mark.parametrize("sizes", [(10,), (40, 10), (100, 7, 3), (5, 5)])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_epoch_order_balances_datasets_by_size_to_the_alpha(sizes, alpha):
    origin = np.repeat(np.arange(len(sizes)), sizes)
    rng = np.random.default_rng(0)
    order = epoch_order(rng, origin, alpha)
    assert len(order) == len(origin)  # an epoch is as long as the data
    got = np.bincount(origin[order], minlength=len(sizes))
    want = np.array(sizes, float) ** alpha / (np.array(sizes, float) ** alpha).sum() * len(origin)
    assert np.all(np.abs(got - want) < 1.0)
    for d, n in enumerate(sizes):  # a dataset's draws cycle through all of its rows before repeating any
        drawn = order[origin[order] == d]
        assert len(set(drawn)) == min(n, len(drawn))
    if len(sizes) == 1:
        assert np.array_equal(order, np.random.default_rng(0).permutation(sizes[0]))  # one dataset: a plain permutation


def test_train_config_datasets():
    one = TrainConfig(data=("x",))
    assert one.data == str(Path("x").resolve()) and one.datasets == (one.data,)
    two = TrainConfig(data=["x", "y"])
    assert two.datasets == (str(Path("x").resolve()), str(Path("y").resolve()))
    assert TrainConfig(**two.as_dict()) == two and two.as_dict()["data"] == list(two.datasets)
    with pytest.raises(OptionError, match="twice"):
        TrainConfig(data=("x", "./x"))
    with pytest.raises(OptionError, match="data alpha"):
        TrainConfig(data_alpha=2.0)


def test_a_multi_label_group_trains_as_one_unit_from_the_dataset_that_labels_it(two, tmp_path):
    """B alone labels the top's colours (the importers' side-file values; A has none): the 11
    yes/no groups train as one network with a head each, from B only, beside the Track-2 groups
    of both; predict runs their one shared tail once."""
    from attrret.classifiers.engine import Engine, tail_digest
    from attrret.classifiers.train import units_of_groups
    from attrret.ensemble import Member

    schema = load_schema()
    family = schema.pedestrian.families["upper_color"]
    a, b = two
    rng = np.random.default_rng(0)
    side = b / "labels_unknown.jsonl"
    lines = [json.loads(x) for x in side.read_text().splitlines()]
    for doc in lines:  # each top has one or two colours
        yes = set(rng.choice([g.label for g in family], size=int(rng.integers(1, 3)), replace=False))
        doc["values"] = {g.name: "yes" if g.label in yes else "no" for g in family}
    coloured = tmp_path / "b"
    import shutil

    shutil.copytree(b, coloured)
    (coloured / "labels_unknown.jsonl").write_text("".join(json.dumps(d) + "\n" for d in lines))
    units = units_of_groups(schema.pedestrian.groups)
    assert [u.name for u in units if len(u.groups) > 1] == ["pedestrian.upper_color", "pedestrian.lower_color"]
    assert len(units) == len([g for g in schema.pedestrian.groups if not g.family]) + 2
    cfg = TrainConfig(task="pedestrian.upper_color", data=(str(a), str(coloured)), workdir=str(tmp_path / "w"), **TINY)
    results = train_tasks(cfg, progress=False)
    assert [r.task for r in results] == [g.task for g in family]
    dirs = [r.model_dir for r in results]
    cks = [load_checkpoint(d) for d in dirs]
    assert all(list(ck.meta["datasets"]) == [str(coloured.resolve())] for ck in cks)  # only B labels them
    history = json.loads((Path(dirs[0]) / "metrics.json").read_text())["history"]
    assert all("val_ap" in h for h in history)  # a colour is selected by the average precision of P(yes)
    assert all(r.val.get("ap") is None or 0 <= r.val["ap"] <= 1 for r in results) and any("ap" in r.val for r in results)
    engine = Engine.build([Member("m", tuple(dirs))], schema, flip=False)
    base = engine.fronts[0]
    assert len({tail_digest(ck, base) for ck in cks}) == 1  # one trained tail, eleven heads
    assert set(engine.tail_share) == {0}  # predict computes it once
    images = sorted((coloured / "images").iterdir())[:6]
    shared = engine.predict(images, gate=False, progress=False, precision="fp32")
    # the ONNX graph exported from the engine computes the same
    from attrret.export.onnx import export_onnx
    from attrret.export.onnx_runtime import graph_probs, open_graph

    export_onnx([Member("m", tuple(dirs))], tmp_path / "g.onnx", log=lambda s: None)
    assert np.abs(graph_probs(open_graph(tmp_path / "g.onnx"), images, progress=False) - shared).max() <= 1e-4
    engine.tail_share = list(range(len(engine.tails)))  # every tail run on its own: the same numbers
    np.testing.assert_allclose(engine.predict(images, gate=False, progress=False, precision="fp32"), shared, rtol=0, atol=1e-6)
