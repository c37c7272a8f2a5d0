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
from attrret.classifiers.engine import Ensemble
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
    from attrret.classifiers.recipes import load_recipes

    ped = load_recipes(load_schema()).task("pedestrian.gender")
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
    index = open_index(build_index(data / "images", tmp_path / "index", Ensemble.open(members), progress=False, schema=small_schema).path,
                       small_schema)
    assert index.header.weights == (1.0, 1.0) and len(index.header.models) == 4


# --------------------------------------------------------------------------- task settings
def test_packaged_task_recipes_are_data():
    """recipes.toml holds how each task trains: tall pedestrian, wide vehicle and square router
    inputs, the colour group without photometric jitter, the epochs bench/recipe.py chose; its
    ``[defaults]`` are the constants the help quotes."""
    import tomllib
    from importlib import resources

    from attrret.classifiers.recipes import DEFAULT_EPOCHS, DEFAULT_LR, RECIPES_FILE, load_recipes

    r = load_recipes(load_schema())
    assert {r.task(g.task).input for g in load_schema().pedestrian.groups} == {(256, 128)}
    assert {r.task(g.task).input for g in load_schema().vehicle.groups} == {(128, 192)}
    assert r.task("router").input == (160, 160) and {t.crop for t in r.tasks.values()} == {"full"}
    assert not r.task("vehicle.color").photometric and r.task("vehicle.brand").photometric and r.task("pedestrian.hat").photometric
    assert (r.task("pedestrian.hat").epochs, r.task("vehicle.brand").epochs, r.task("vehicle.brand").lr) == (16, 30, 2e-3)
    packaged = tomllib.loads(resources.files("attrret.classifiers").joinpath(RECIPES_FILE).read_text(encoding="utf-8"))
    assert packaged["defaults"] == {"epochs": DEFAULT_EPOCHS, "lr": DEFAULT_LR} == {"epochs": r.task("router").epochs, "lr": r.task("router").lr}


def test_a_schema_directorys_recipes_override_the_packaged_ones(tmp_path):
    """A custom schema's recipes.toml states only what differs (most specific table wins); the
    vocabulary and its fingerprint do not change; --epochs / --lr / --img-size / --crop win over all."""
    from attrret.classifiers.recipes import load_recipes

    schema = small_input_schema(tmp_path / "schema")
    (tmp_path / "schema" / "recipes.toml").write_text(
        '[defaults]\nepochs = 5\n[subject.pedestrian]\ninput = "40x20"\n[task."pedestrian.hat"]\ncrop = "top"\ninput = 32\nphotometric = false\n',
        encoding="utf-8")
    r = load_recipes(load_schema(tmp_path / "schema"))
    hat, gender, brand = r.task("pedestrian.hat"), r.task("pedestrian.gender"), r.task("vehicle.brand")
    assert (hat.crop, hat.input, hat.photometric, hat.epochs) == ("top", (32, 32), False, 16)  # the packaged subject's 16 is more specific
    assert (gender.crop, gender.input) == ("full", (40, 20)) and brand.epochs == 30
    assert r.task("router").epochs == 5
    assert schema.fingerprint == load_schema().fingerprint
    assert TrainConfig().task_input(hat) == ((32, 32), "top") and TrainConfig(img_size=(64, 32), crop="full").task_input(hat) == ((64, 32), "full")
    assert TrainConfig().task_epochs(hat) == 16 and TrainConfig(epochs=3).task_epochs(hat) == 3
    assert TrainConfig().for_task(brand).lr == 2e-3 and TrainConfig(lr=5e-4).for_task(brand).lr == 5e-4


def test_a_multi_label_groups_table_is_read_by_each_of_its_yes_no_groups(tmp_path):
    """[task."pedestrian.upper_color"] sets every upper-body colour; a colour's own table is read
    after it; other groups are untouched."""
    from attrret.classifiers.recipes import load_recipes

    small_input_schema(tmp_path / "schema")
    (tmp_path / "schema" / "recipes.toml").write_text(
        '[task."pedestrian.upper_color"]\nepochs = 3\ncrop = "upper"\n[task."pedestrian.upper_color_red"]\nepochs = 5\n', encoding="utf-8")
    schema = load_schema(tmp_path / "schema")
    r = load_recipes(schema)
    family = schema.pedestrian.families["upper_color"]
    assert {(r.task(g.task).epochs, r.task(g.task).crop) for g in family if g.name != "upper_color_red"} == {(3, "upper")}
    assert (r.task("pedestrian.upper_color_red").epochs, r.task("pedestrian.upper_color_red").crop) == (5, "upper")
    assert (r.task("pedestrian.lower_color_red").epochs, r.task("pedestrian.lower_color_red").crop) == (16, "full")


@pytest.mark.parametrize(("text", "message"), [
    ('[task."pedestrian.hat"]\ncrop = "left"', r'\[task."pedestrian.hat"\]: crop must be one of full, top, upper, bottom'),
    ('[subject.pedestrian]\ninput = "256by128"', r"\[subject.pedestrian\]: input: expected HxW"),
    ('[defaults]\ninput = "0x128"', r"\[defaults\]: input: an input size must be positive"),
    ('[defaults]\nphotometric = 1', "photometric must be true or false"),
    ('[defaults]\nepochs = 0', "epochs must be a whole number >= 1"),
    ('[defaults]\nepochs = "30"', "epochs must be a whole number >= 1"),
    ('[defaults]\nlr = 0', "lr must be a finite number > 0"),
    ('[defaults]\nsparkle = true', r"unknown settings \['sparkle'\]"),
    ('[subject.bicycle]\nepochs = 3', r"\[subject.bicycle\]: no such subject in the schema"),
    ('[task."pedestrian.tattoo"]\nepochs = 3', r'\[task."pedestrian.tattoo"\]: no such task in the schema'),
    ('[hints]\nepochs = 3', r"unknown tables \['hints'\]"),
])
def test_bad_recipes_are_refused_naming_the_file_and_table(tmp_path, text, message):
    from attrret.classifiers.recipes import load_recipes

    small_input_schema(tmp_path / "schema")
    (tmp_path / "schema" / "recipes.toml").write_text(text + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"recipes.toml: .*{message}"):
        load_recipes(load_schema(tmp_path / "schema"))
