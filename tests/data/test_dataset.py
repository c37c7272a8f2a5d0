from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attrret.data.dataset import DEFAULT_CROPS, TaskDataset, crop_region
from attrret.data.records import load_records
from attrret.data.transforms import augment_for
from attrret.errors import InputError
from attrret.schema import load_schema

SCHEMA = load_schema()
MEAN = STD = (0.5, 0.5, 0.5)


@pytest.fixture()
def synth_copy(tiny_synth: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(tiny_synth, out)
    return out


def test_incomplete_vehicle_labels_are_skipped_per_task(tiny_synth: Path):
    records = load_records(tiny_synth, "train")
    for task in ("vehicle.type", "vehicle.color", "vehicle.brand"):
        group = SCHEMA.task(task)
        ds = TaskDataset(records, group, (32, 48), MEAN, STD)
        expected = [r for r in records if r.kind == "vehicle" and group.name in r.values]
        assert ds.records == expected and 0 < len(ds) < sum(r.kind == "vehicle" for r in records)
        assert ds.labels == [group.index(r.values[group.name]) for r in expected]
    router = TaskDataset(records, SCHEMA.router, 32, MEAN, STD)
    assert len(router) == len(records) and set(router.labels) == {0, 1}
    x, y = TaskDataset(records, SCHEMA.task("pedestrian.hat"), (64, 32), MEAN, STD)[0]
    assert x.shape == (3, 64, 32) and x.dtype == torch.float32 and isinstance(y, int)
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_corrupt_image_is_a_clear_error_or_skipped_and_counted(synth_copy: Path):
    records = load_records(synth_copy, "train")
    group = SCHEMA.task("pedestrian.gender")
    ds = TaskDataset(records, group, 32, MEAN, STD)
    victim = ds.records[2]
    victim.path.write_bytes(b"not a jpeg at all")
    with pytest.raises(InputError) as err:
        ds[2]
    assert str(victim.path) in str(err.value) and f"train_label.txt:{victim.line}" in str(err.value)
    ok = TaskDataset(records, group, 32, MEAN, STD, skip_bad=True)
    assert len(ok.skipped) == 1 and len(ok) == len(ds) - 1 and victim not in ok.records
    assert ok.labels == [group.index(r.values["gender"]) for r in ok.records]  # names and labels stay aligned
    for i in range(len(ok)):
        ok[i]


def test_missing_image_names_the_label_line(synth_copy: Path):
    records = load_records(synth_copy, "val")
    records[1].path.unlink()
    with pytest.raises(InputError, match=r"val_label\.txt:2: image .* not found"):
        load_records(synth_copy, "val")
    skipped: list[InputError] = []
    kept = load_records(synth_copy, "val", skip_bad=True, on_skip=skipped.append)
    assert len(kept) == len(records) - 1 and len(skipped) == 1 and records[1] not in kept


def test_pa100k_mini_layout(pa100k_mini: Path):
    records = load_records(pa100k_mini)
    assert len(records) == 1500 and {r.kind for r in records} == {"pedestrian"}
    assert records[0].image == "000001.jpg" and records[0].where.endswith("labels.txt:1")
    task = "pedestrian.hat"
    ds = TaskDataset(records[:20], SCHEMA.task(task), (64, 64), MEAN, STD, crop=DEFAULT_CROPS[task])
    assert len(ds) == 20
    x, _ = ds[0]
    assert x.shape == (3, 64, 64)


def test_crop_regions():
    im = Image.new("RGB", (50, 120))
    assert crop_region(im, "top_half").size == (50, 60)
    assert crop_region(im, None).size == (50, 120)
    assert crop_region(im, "bottom_half").size == (50, 60)
    with pytest.raises(ValueError, match="unknown crop region"):
        crop_region(im, "head")


def test_top_half_crop_keeps_the_head(tiny_synth: Path):
    records = [r for r in load_records(tiny_synth, "train") if r.kind == "pedestrian"]
    full = TaskDataset(records, SCHEMA.task("pedestrian.hat"), (64, 64), MEAN, STD)
    top = TaskDataset(records, SCHEMA.task("pedestrian.hat"), (64, 64), MEAN, STD, crop="top_half")
    assert not torch.equal(full[0][0], top[0][0])


def test_vehicle_color_augmentation_keeps_hue():
    red = Image.new("RGB", (40, 30), (200, 30, 30))

    def hue(im: Image.Image) -> float:
        return float(np.asarray(im.convert("HSV"))[..., 0].astype(float).mean())

    aug_color, aug_other = augment_for("vehicle.color"), augment_for("vehicle.type")
    hues_color = [hue(aug_color(red, np.random.default_rng(s))) for s in range(20)]
    hues_other = [hue(aug_other(red, np.random.default_rng(s))) for s in range(20)]
    assert max(abs(h - hue(red)) for h in hues_color) < 3
    assert max(abs(h - hue(red)) for h in hues_other) > 3


def test_augmentation_is_reproducible_with_torch_seed(tiny_synth: Path):
    records = load_records(tiny_synth, "train")
    ds = TaskDataset(records, SCHEMA.task("vehicle.type"), 48, MEAN, STD, augment=True, flip=True)
    torch.manual_seed(0)
    a = ds[0][0]
    torch.manual_seed(0)
    b = ds[0][0]
    c = ds[0][0]
    assert torch.equal(a, b) and not torch.equal(b, c)
