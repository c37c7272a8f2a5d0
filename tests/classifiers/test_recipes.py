"""Training recipes: one train call trains every member; predict finds them without flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_classifier_data import make_folder, small_input_schema

from attrret.classifiers.checkpoint import load_checkpoint
from attrret.classifiers.recipes import RECIPES, recipe_configs
from attrret.classifiers.train import TrainConfig, train_tasks
from attrret.errors import OptionError
from attrret.geometry import scale_hw
from attrret.retrieval.index import open_index
from attrret.retrieval.indexer import build_index, find_members
from attrret.schema import load_schema


def test_scale_keeps_the_shape_and_multiples_of_8():
    assert scale_hw((256, 128), 1.25) == (320, 160)
    assert scale_hw((128, 192), 1.25) == (160, 240)
    assert scale_hw((256, 128), 0.75) == (192, 96)
    assert scale_hw((16, 8), 0.1) == (8, 8)  # never below one multiple


def test_recipe_configs_place_members_and_scale_inputs(tmp_path):
    cfg = TrainConfig(task="pedestrian", data="", workdir=str(tmp_path / "w"))
    default, bigger = recipe_configs(cfg, "accurate")
    assert (default.workdir, default.input_scale) == (str(tmp_path / "w"), 1.0)
    assert (bigger.workdir, bigger.input_scale) == (str(tmp_path / "w" / "members" / "x1.25"), 1.25)
    assert [c.input_scale for c in recipe_configs(cfg, "default")] == [1.0]
    ped = load_schema().pedestrian.groups[0]
    assert bigger.task_input(ped)[0] == (320, 160) and default.task_input(ped)[0] == (256, 128)
    assert TrainConfig(img_size=96, input_scale=1.25).task_input(ped)[0] == (96, 96)  # an explicit size wins
    with pytest.raises(ValueError, match="unknown recipe 'huge'; use one of fast, default, accurate"):
        recipe_configs(cfg, "huge")
    with pytest.raises(OptionError, match="input scale"):
        TrainConfig(input_scale=0.0)
    assert set(RECIPES) == {"fast", "default", "accurate"}


@pytest.fixture()
def small_schema(tmp_path) -> object:
    return small_input_schema(tmp_path / "schema")


def test_an_accurate_recipe_is_an_ensemble_predict_finds_without_flags(small_schema, tmp_path: Path):
    data = make_folder(tmp_path / "data")
    w = tmp_path / "w"
    base = TrainConfig(task="pedestrian.gender", data=str(data), workdir=str(w), backbone="timm:test_efficientnet",
                       pretrained=False, epochs=1, batch_size=8, val_fraction=0.25)
    for task in ("pedestrian.gender", "router"):
        for cfg in recipe_configs(TrainConfig(**{**base.as_dict(), "task": task}), "accurate"):
            train_tasks(cfg, progress=False, schema=small_schema)
    assert load_checkpoint(w / "members" / "x1.25" / "models" / "pedestrian.gender", schema=small_schema).preprocess.hw == (64, 32)
    members = find_members(w, schema=small_schema)  # no sizes, no --models: both members
    assert [m.label for m in members] == [str(w / "models"), str(w / "members" / "x1.25" / "models")]
    assert [m.img_sizes for m in members] == [((48, 24), (32, 32)), ((64, 32), (40, 40))]
    index = open_index(build_index(data / "images", tmp_path / "index", members, progress=False, schema=small_schema).path,
                       small_schema)
    assert index.header.weights == (1.0, 1.0) and len(index.header.models) == 4
