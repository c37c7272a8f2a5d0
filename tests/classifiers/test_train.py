"""Training: files, self-describing checkpoints, determinism, resume, schema refusal, label handling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from attrret.classifiers import train as train_mod
from attrret.classifiers.checkpoint import list_model_dirs, load_checkpoint, save_checkpoint
from attrret.classifiers.data import fold_split, labels_for, load_task_data, stratified_split
from attrret.classifiers.train import TrainConfig, train_tasks
from attrret.errors import CheckpointError
from attrret.schema import load_schema

from tiny_classifier_data import interrupt_second_evaluation, make_folder

TINY = dict(backbone="timm:test_efficientnet", pretrained=False, img_size=32, epochs=2, batch_size=8, val_fraction=0.25)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data = make_folder(root / "data")
    cfg = TrainConfig(task="pedestrian.gender", data=str(data), workdir=str(root / "w"), holdout=8, **TINY)
    router = TrainConfig(**{**cfg.as_dict(), "task": "router"})
    return data, cfg, train_tasks(cfg, progress=False) + train_tasks(router, progress=False)


def test_outputs_and_self_describing_checkpoint(trained):
    data, cfg, (gender, router) = trained
    d = Path(cfg.workdir) / "models" / "pedestrian.gender"
    assert {p.name for p in d.iterdir()} == {"model.pt", "metrics.json", "config.json"}
    raw = torch.load(d / "model.pt", map_location="cpu", weights_only=True)
    assert set(raw) == {"format", "meta", "state_dict"}
    ck = load_checkpoint(d)
    meta = ck.meta
    assert ck.task == "pedestrian.gender" and ck.classes == ("female", "male")
    assert meta["backbone"]["arch"] == "timm:test_efficientnet" and ck.preprocess.hw == (32, 32)
    assert meta["trainable_blocks"] == 2 and meta["schema_fingerprint"] == load_schema().fingerprint
    assert meta["config"]["holdout"] == 8 and meta["metrics"]["best_epoch"] == gender.best_epoch
    metrics = json.loads((d / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and metrics["holdout"]["n"] == gender.n_holdout > 0
    assert {"accuracy", "mA"} <= set(metrics["history"][0]["val"])
    assert json.loads((d / "config.json").read_text())["task"] == "pedestrian.gender"
    assert gender.n_train + gender.n_val + gender.n_holdout == 24  # pedestrians only
    assert router.n_train + router.n_val + router.n_holdout == 32  # every image has a kind
    assert [p.name for p in list_model_dirs(cfg.workdir)] == ["pedestrian.gender", "router"]


def test_same_seed_same_weights(trained, tmp_path):
    data, cfg, (gender, _) = trained
    again = train_tasks(TrainConfig(**{**cfg.as_dict(), "workdir": str(tmp_path / "w")}), progress=False)[0]
    assert again.weights_sha256 == gender.weights_sha256
    other = train_tasks(TrainConfig(**{**cfg.as_dict(), "workdir": str(tmp_path / "w2"), "seed": 1}), progress=False)[0]
    assert other.weights_sha256 != gender.weights_sha256


def test_resume_continues_an_interrupted_run(trained, tmp_path, monkeypatch):
    data, cfg, (gender, _) = trained
    cfg2 = TrainConfig(**{**cfg.as_dict(), "workdir": str(tmp_path / "w"), "resume": True})
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        interrupt_second_evaluation(patch)
        train_tasks(cfg2, progress=False)
    last = tmp_path / "w" / "models" / "pedestrian.gender" / "last.pt"
    assert last.is_file() and torch.load(last, weights_only=True)["epoch"] == 0
    resumed = train_tasks(cfg2, progress=False)[0]
    assert resumed.weights_sha256 == gender.weights_sha256 and not last.exists()
    assert train_tasks(cfg2, progress=False)[0].skipped  # finished task: --resume skips it


def test_foreign_schema_and_non_checkpoints_are_refused(trained, tmp_path):
    data, cfg, _ = trained
    ck = load_checkpoint(Path(cfg.workdir) / "models" / "pedestrian.gender")
    foreign = tmp_path / "foreign.pt"
    save_checkpoint(foreign, {**ck.meta, "schema_fingerprint": "0123456789abcdef"}, ck.state_dict)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(foreign)
    assert "0123456789abcdef" in str(err.value) and load_schema().fingerprint in str(err.value)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a weights-only"):
        load_checkpoint(junk)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "attrret-classifier/1", "meta": {}, "state_dict": {}, "obj": Path("x")}, pickled)
    with pytest.raises(CheckpointError):
        load_checkpoint(pickled)
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(1)}, plain)
    with pytest.raises(CheckpointError, match="not an attrret classifier"):
        load_checkpoint(plain)


def test_unknown_labels_are_skipped_per_task(tmp_path):
    from attrret.data.records import load_records

    data = make_folder(tmp_path / "d")
    records = load_records(data)
    schema = load_schema()
    colour = labels_for(records, schema.task("vehicle.color"))
    vtype = labels_for(records, schema.task("vehicle.type"))
    assert len(colour) == 6 and len(vtype) == 2  # "SUV." / "Sedan." lines state no colour
    assert len(labels_for(records, schema.task("router"))) == 32


def test_splits_are_stratified_and_deterministic():
    items = [(f"{i}.jpg", 0 if i < 40 else 1) for i in range(50)]
    train, val = stratified_split(items, 0.2, seed=3)
    assert sorted(train + val) == sorted(items)
    assert sum(y for _, y in val) == 2 and len(val) == 10
    assert stratified_split(items, 0.2, seed=3) == (train, val)
    folds = [fold_split(items, k, 5, seed=0)[1] for k in range(5)]
    assert sorted(s for f in folds for s in f) == sorted(items)
    assert all(sum(y for _, y in f) == 2 for f in folds)


def test_track2_folder_uses_val_and_test_splits(tmp_path):
    root = tmp_path / "t2"
    for split in ("train", "val", "test"):
        folder = make_folder(tmp_path / f"src-{split}", seed=hash(split) % 100)
        (root / split).mkdir(parents=True)
        (folder / "images").rename(root / split / f"{split}_images")
        (folder / "labels.txt").rename(root / split / f"{split}_label.txt")
    td = load_task_data(root, [load_schema().task("pedestrian.gender")])["pedestrian.gender"]
    assert td.val_source == "val/val_label.txt" and td.holdout_source == "test/test_label.txt"
    assert len(td.train) == len(td.val) == len(td.holdout) == 24
    assert all("/val/" in p for p, _ in td.val) and all("/test/" in p for p, _ in td.holdout)


def test_no_colour_jitter_for_colour_task():
    from attrret.classifiers.recipes import load_recipes

    schema = load_schema()
    recipes = load_recipes(schema)
    assert not recipes.task("vehicle.color").photometric and recipes.task("pedestrian.hat").photometric
    colours = [g.task for g in schema.tasks if g.family in ("upper_color", "lower_color")]
    assert len(colours) == 22 and not any(recipes.task(t).photometric for t in colours)  # from their family's table


def test_tasks_trained_separately_share_one_cache(trained):
    data, cfg, _ = trained
    assert len(list((Path(cfg.workdir) / "cache").glob("*/*.npy"))) == 1  # gender then router: one cache


def test_ema_and_balance_options_change_the_result(trained, tmp_path):
    data, cfg, (gender, _) = trained
    ema = train_tasks(TrainConfig(**{**cfg.as_dict(), "workdir": str(tmp_path / "e"), "ema": 0.9}), progress=False)[0]
    plain = train_tasks(TrainConfig(**{**cfg.as_dict(), "workdir": str(tmp_path / "p"), "balance": "none"}), progress=False)[0]
    assert ema.weights_sha256 != gender.weights_sha256 and plain.weights_sha256 != gender.weights_sha256
    with pytest.raises(Exception, match="balance must be one of"):
        train_tasks(TrainConfig(**{**cfg.as_dict(), "balance": "oversample"}), progress=False)


def test_balanced_loss_keeps_majority_samples_on_their_own_class():
    """A majority-class sample must be pulled towards its own label, however rare the other class is.

    PyTorch's ``weight=`` also weights the label-smoothing terms, which at a 20x imbalance pulls a
    majority sample towards the rare class (the collapse seen on pa100k-mini's coat task).
    """
    weights = torch.tensor([0.098, 1.902])  # inverse frequency at 5% positives, normalised to mean 1
    logits = torch.zeros(1, 2, requires_grad=True)
    train_mod.balanced_cross_entropy(logits, torch.tensor([0]), weights, label_smoothing=0.1).backward()
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]  # gradient descent raises the own-class logit

    naive = torch.zeros(1, 2, requires_grad=True)
    torch.nn.functional.cross_entropy(naive, torch.tensor([0]), weight=weights, label_smoothing=0.1).backward()
    assert naive.grad[0, 0] > 0  # the behaviour the balanced loss exists to avoid


def test_balanced_loss_weights_samples_by_their_class():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    target = torch.tensor([0, 1, 1])
    per = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    w = torch.tensor([1.0, 3.0])
    expected = (per[0] * 1 + per[1] * 3 + per[2] * 3) / 7
    assert torch.allclose(train_mod.balanced_cross_entropy(logits, target, w), expected)
    assert torch.allclose(train_mod.balanced_cross_entropy(logits, target, None), per.mean())


def test_history_loss_is_the_epoch_mean_over_batches(trained, tmp_path, monkeypatch):
    data, cfg, (gender, _) = trained
    real, batches = train_mod.balanced_cross_entropy, []

    def recording(logits, target, *args, **kwargs):
        loss = real(logits, target, *args, **kwargs)
        batches.append((float(loss.detach()), len(target)))
        return loss

    monkeypatch.setattr(train_mod, "balanced_cross_entropy", recording)
    result = train_tasks(TrainConfig(**{**cfg.as_dict(), "workdir": str(tmp_path / "w"), "epochs": 1}), progress=False)[0]
    assert len(batches) > 1 and len({round(b[0], 6) for b in batches}) > 1  # several batches, different losses
    mean = sum(loss * n for loss, n in batches) / sum(n for _, n in batches)
    assert result.history[0]["loss"] == pytest.approx(mean, rel=1e-6)
    assert result.history[0]["loss"] != pytest.approx(batches[-1][0], rel=1e-6)  # not the last batch's


def test_best_epoch_is_a_typed_record():
    import dataclasses

    first = train_mod.BestEpoch()
    assert first.epoch == -1 and first.state is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.epoch = 3
    val = {"t": {"mA": 0.5, "accuracy": 0.6, "n": 4}}
    assert first.beaten_by(0.5, has_val=True)
    best = train_mod.BestEpoch(0, 0.5, val, {"head.bias": torch.zeros(2)})
    assert not best.beaten_by(0.5, has_val=True)  # a tie keeps the earlier epoch
    assert best.beaten_by(0.1, has_val=False)  # no selection split: the last epoch wins
    again = train_mod.BestEpoch.from_snapshot(best.snapshot())
    assert again.epoch == 0 and again.mA == 0.5 and again.val == val and torch.equal(again.state["head.bias"], torch.zeros(2))


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_is_the_mean_precision_at_each_relevant_rank(seed):
    """By its definition, against brute force over a ranked list: a perfect ranking scores 1,
    a reversed one the minimum, and only the order of the scores matters."""
    import numpy as np

    from attrret.classifiers.metrics import average_precision

    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    relevant = rng.random(n) < 0.3
    relevant[0] = True
    scores = rng.random(n)
    order = np.argsort(-scores, kind="stable")
    hits, precisions = 0, []
    for rank, i in enumerate(order, 1):
        if relevant[i]:
            hits += 1
            precisions.append(hits / rank)
    assert average_precision(relevant, scores) == pytest.approx(np.mean(precisions))
    assert average_precision(relevant, relevant.astype(float)) == 1.0
    assert average_precision(relevant, np.exp(3 * scores)) == pytest.approx(average_precision(relevant, scores))
    assert average_precision(np.zeros(n, bool), scores) is None


def test_a_colour_unit_is_selected_by_average_precision_and_every_other_by_ma():
    """unit_score: a multi-label group's yes/no tasks (only ever ranked) by their mean AP, tasks
    whose selection split has no "yes" left out; any other unit by its tasks' mean mA."""
    from attrret.classifiers.train import Unit, unit_score

    schema = load_schema()
    colours = Unit(tuple(g for g in schema.pedestrian.groups if g.family == "upper_color"))
    assert colours.ranked and len(colours.groups) > 2
    val = {t: {"mA": 0.5, "ap": ap} for t, ap in zip(colours.tasks, [0.9, 0.5, None, *[0.7] * (len(colours.tasks) - 3)])}
    aps = [0.9, 0.5, *[0.7] * (len(colours.tasks) - 3)]
    assert unit_score(colours, val) == pytest.approx(sum(aps) / len(aps))
    gender = Unit((schema.task("pedestrian.gender"),))
    assert not gender.ranked and unit_score(gender, {"pedestrian.gender": {"mA": 0.8}}) == 0.8
    both = Unit((schema.task("pedestrian.gender"), colours.groups[0]))
    assert not both.ranked  # a multitask unit holding a colour and another group: by mA
    assert unit_score(both, {"pedestrian.gender": {"mA": 0.8}, colours.tasks[0]: {"mA": 0.6, "ap": 0.1}}) == pytest.approx(0.7)


@pytest.mark.parametrize("change, says", [
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"device": "cuda:x"}, "unknown device"),
    ({"crop": "left"}, "crop must be one of full"),
    ({"tail_norm": "group"}, "tail_norm must be one of frozen, batch"),
    ({"balance": "oversample"}, "balance must be one of"),
    ({"fold": "1-5"}, "--fold must look like k/K"),
    ({"fold": "5/5"}, "need K >= 2 and 0 <= k < K"),
    ({"holdout": -1}, "holdout must be >= 0"),
])
def test_train_config_refuses_unknown_choices(change, says):
    from attrret.errors import OptionError

    with pytest.raises(OptionError, match=None) as err:
        TrainConfig(**change)
    assert says in str(err.value)
    for ok in ({"device": "cuda:1"}, {"device": "cpu"}, {"fold": "0/5"}, {"crop": "upper"}):
        TrainConfig(**ok)  # a device this machine lacks is refused when training starts, not here


def test_a_recipes_epochs_are_how_long_the_task_trains(tmp_path):
    """Without --epochs each task trains its recipe's epochs (here a schema directory's
    recipes.toml), and records that number."""
    from tiny_classifier_data import small_input_schema

    schema_dir = tmp_path / "schema"
    small_input_schema(schema_dir)
    recipes = schema_dir / "recipes.toml"
    recipes.write_text(recipes.read_text(encoding="utf-8").replace('input = "48x24"', 'input = "48x24"\nepochs = 2'), encoding="utf-8")
    schema = load_schema(schema_dir)
    data = make_folder(tmp_path / "data")
    result = train_tasks(TrainConfig(task="pedestrian.gender", data=str(data), workdir=str(tmp_path / "w"), backbone="timm:test_efficientnet",
                                     pretrained=False, batch_size=8, val_fraction=0.25), progress=False, schema=schema)[0]
    assert len(result.history) == 2
    assert json.loads((result.model_dir / "config.json").read_text())["epochs"] == 2


def test_resume_of_a_finished_run_builds_no_cache(trained, tmp_path):
    """--resume on tasks already trained with this config skips them without opening (or, after
    the images' timestamps changed, rebuilding) a trunk cache it would not read."""
    import shutil

    data, cfg, _ = trained
    w = tmp_path / "w"
    first = train_tasks(TrainConfig(**{**cfg.as_dict(), "workdir": str(w), "resume": True}), progress=False)
    shutil.rmtree(w / "cache")
    again = train_tasks(TrainConfig(**{**cfg.as_dict(), "workdir": str(w), "resume": True}), progress=False)
    assert not first[0].skipped and again[0].skipped and again[0].weights_sha256 == first[0].weights_sha256
    assert not (w / "cache").exists()
