"""H x W inputs end to end: train at 64x32, the trunk cache keyed by it, predict through the same
preprocessing as training's evaluation, the index recording it; defaults and crops from the schema."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_classifier_data import make_folder, small_input_schema

from attrret.classifiers import train as train_mod
from attrret.classifiers.cache import cache_key, front_shape
from attrret.classifiers.checkpoint import build_classifier, list_model_dirs, load_checkpoint
from attrret.classifiers.preprocess import load_batch
from attrret.classifiers.engine import predict_probs
from attrret.classifiers.runtime import cpu_bf16_is_fast
from attrret.classifiers.train import TrainConfig, train_tasks
from attrret.errors import CheckpointError, OptionError
from attrret.retrieval.index import open_index
from attrret.classifiers.engine import Ensemble
from attrret.retrieval.indexer import build_index, find_members
from attrret.schema import load_schema

TINY = dict(backbone="timm:test_efficientnet", pretrained=False, epochs=1, batch_size=8, val_fraction=0.25)
CPU = torch.device("cpu")


def tolerance() -> float:
    """Rounding between two runs of the same computation: fp32, or bf16 autocast where fast."""
    return 2e-3 if cpu_bf16_is_fast() else 1e-5


@pytest.fixture(scope="module")
def tall(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tall")
    data = make_folder(root / "data")
    cfg = TrainConfig(task="pedestrian.gender", data=str(data), workdir=str(root / "w"), img_size="64x32", **TINY)
    train_tasks(cfg, progress=False)
    train_tasks(TrainConfig(**{**cfg.as_dict(), "task": "router"}), progress=False)
    return data, root / "w"


def test_the_checkpoint_config_and_cache_record_the_input(tall):
    data, w = tall
    for task in ("pedestrian.gender", "router"):
        ck = load_checkpoint(w / "models" / task)
        assert ck.preprocess.hw == (64, 32) and ck.meta["preprocess"]["height"] == 64 and ck.meta["preprocess"]["width"] == 32
        assert json.loads((w / "models" / task / "config.json").read_text())["img_size"] == [64, 32]
    (manifest,) = (w / "cache").glob("*/*.json")  # both tasks: one input, one cache
    saved = json.loads(manifest.read_text())
    assert saved["preprocess"]["height"] == 64 and saved["preprocess"]["width"] == 32
    model, pre = build_classifier(ck), ck.preprocess
    assert saved["shape"] == list(front_shape(model, pre))
    square = dataclasses.replace(pre, width=64)
    assert front_shape(model, square) != front_shape(model, pre)  # 64x64 is another input...
    key = lambda p: cache_key(ck.meta["backbone"]["arch"], model.front_hash(), p, model.cut, "full", ck.meta["precision"])  # noqa: E731
    assert key(square) != key(pre) == saved["key"]  # ...with its own cache


def test_predict_gives_what_training_evaluated(tall):
    """predict_probs and the training loop's evaluation (:func:`train._predict`, images through
    the frozen front on the fly, or the trunk cache training used) agree on the same images."""
    data, w = tall
    images = sorted(str(p.resolve()) for p in (data / "images").glob("*.jpg"))  # the set training cached
    got = predict_probs(list_model_dirs(w), images, batch_size=4, progress=False)
    for task in ("pedestrian.gender", "router"):
        ck = load_checkpoint(w / "models" / task)
        model = build_classifier(ck).to(memory_format=torch.channels_last)
        items = [(p, 0) for p in images]
        on_the_fly = train_mod._Inputs(model, ck.preprocess, "full", None, CPU, None)
        t = ck.meta["temperature"]
        assert np.allclose(got[task], train_mod._predict(model, on_the_fly, items, 4, CPU, None, t), atol=tolerance())
        cache = train_mod.open_or_build(model, arch=ck.meta["backbone"]["arch"], pre=ck.preprocess, crop="full", images=images,
                                        workdir=w, device=CPU, budget_bytes=2**30)
        assert cache.reused  # the cache training built
        cached = train_mod._Inputs(model, ck.preprocess, "full", cache, CPU, None)
        assert np.allclose(got[task], train_mod._predict(model, cached, items, 4, CPU, None, t), atol=1e-2)  # float16 features
    assert load_batch(images[:2], ck.preprocess).shape == (2, 3, 64, 32)


def test_the_index_records_each_models_input(tall, tmp_path):
    data, w = tall
    (member,) = find_members(w)
    assert member.img_sizes == ((64, 32),)
    assert find_members(w, img_sizes=[(64, 32)]) == [member]
    with pytest.raises(CheckpointError, match=r"no model set trained at 64x64 under .* \(found .*models: 64x32\)"):
        find_members(w, img_sizes=[64])  # a plain number is a square
    index = open_index(build_index(data / "images", tmp_path / "index", Ensemble.open([member]), progress=False).path)
    assert index.header.img_sizes == ((64, 32),)
    assert {tuple(m["img_size"]) for m in index.header.models} == {(64, 32)}
    assert json.loads((tmp_path / "index" / "header.json").read_text())["img_sizes"] == [[64, 32]]


@pytest.fixture()
def small_recipes_schema(tmp_path):
    """The packaged schema with small inputs (pedestrian 48x24, router 32x32) and a top crop for
    gender, as the one training reads."""
    schema = small_input_schema(tmp_path / "schema", gender_crop="top")
    assert schema.fingerprint == load_schema().fingerprint  # recipes are not the vocabulary
    return schema


def test_without_img_size_each_task_trains_at_its_recipes_input_and_crop(small_recipes_schema, tmp_path):
    data = make_folder(tmp_path / "data")
    cfg = TrainConfig(task="pedestrian.gender", data=str(data), workdir=str(tmp_path / "w"), **TINY)
    assert cfg.img_size is None and cfg.crop is None
    train_tasks(cfg, progress=False, schema=small_recipes_schema)
    train_tasks(TrainConfig(**{**cfg.as_dict(), "task": "router"}), progress=False, schema=small_recipes_schema)
    gender, router = (load_checkpoint(tmp_path / "w" / "models" / t) for t in ("pedestrian.gender", "router"))
    assert gender.preprocess.hw == (48, 24) and gender.meta["crop"] == "top"
    assert router.preprocess.hw == (32, 32) and router.meta["crop"] == "full"
    assert gender.meta["config"]["img_size"] == [48, 24] and gender.meta["config"]["crop"] == "top"
    assert len(list((tmp_path / "w" / "cache").glob("*/*.npy"))) == 2  # two inputs, two caches
    (member,) = find_members(tmp_path / "w")
    assert member.img_sizes == ((48, 24), (32, 32))
    # predict feeds gender the top half, as it trained
    images = sorted((data / "images").glob("*.jpg"))[:4]
    probs = predict_probs([gender.path.parent], images, progress=False)["pedestrian.gender"]
    model = build_classifier(gender).to(memory_format=torch.channels_last)
    top, full = (train_mod._predict(model, train_mod._Inputs(model, gender.preprocess, crop, None, CPU, None),
                                    [(str(p), 0) for p in images], 4, CPU, None, gender.meta["temperature"])
                 for crop in ("top", "full"))
    assert np.allclose(probs, top, atol=tolerance()) and not np.allclose(probs, full, atol=1e-4)


def test_an_explicit_img_size_and_crop_apply_to_every_task(small_recipes_schema, tmp_path):
    data = make_folder(tmp_path / "data")
    cfg = TrainConfig(task="pedestrian.gender", data=str(data), workdir=str(tmp_path / "w"), img_size=40, crop="full", **TINY)
    train_tasks(cfg, progress=False, schema=small_recipes_schema)
    gender = load_checkpoint(tmp_path / "w" / "models" / "pedestrian.gender")
    assert gender.preprocess.hw == (40, 40) and gender.meta["crop"] == "full"


@pytest.mark.parametrize("size", ["64x", "0x32", "64*32", "-4", "1x2x3", [64, 32, 3], True])
def test_a_bad_img_size_is_one_option_error(size):
    with pytest.raises(OptionError, match=r"image size: (expected HxW|an input size must be positive)"):
        TrainConfig(img_size=size)


@pytest.mark.parametrize("size, hw", [("224x112", (224, 112)), ("96", (96, 96)), (160, (160, 160)), ([64, 32], (64, 32))])
def test_img_size_forms(size, hw):
    assert TrainConfig(img_size=size).img_size == hw
    assert TrainConfig(**TrainConfig(img_size=size).as_dict()).img_size == hw  # as config.json stores it
