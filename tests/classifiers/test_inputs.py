"""Model inputs: the per-task crop regions and the label-safe augmentation training uses."""

import numpy as np
import pytest
from PIL import Image

from attrret.classifiers.backbones import Preprocess
from attrret.classifiers.inputs import CROPS, augment_image, crop_image, load_input, to_tensor


def _figure() -> Image.Image:
    """50 x 120: a red 'head' band in the top fifth, grey below."""
    arr = np.full((120, 50, 3), 128, np.uint8)
    arr[:24] = (220, 30, 30)
    return Image.fromarray(arr)


@pytest.mark.parametrize("crop, height", [("full", 120), ("top", 60), ("upper", 72), ("bottom", 72)])
def test_crop_regions_cut_the_named_vertical_band(crop, height):
    assert crop_image(_figure(), crop).size == (50, height)


def test_top_crop_keeps_the_head_at_a_larger_scale(tmp_path):
    path = tmp_path / "p.png"
    _figure().save(path)
    pre = Preprocess(size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    full, top = (np.asarray(load_input(path, pre, crop)) for crop in ("full", "top"))
    red = lambda a: int(((a[..., 0] > 180) & (a[..., 1] < 80)).sum())  # noqa: E731
    assert red(top) > 2 * red(full)  # the head fills more of the input
    t = to_tensor(load_input(path, pre, "top"), pre)
    assert t.shape == (3, 64, 64) and float(t.abs().max()) <= 1.0


def test_unknown_crop_is_refused():
    assert set(CROPS) == {"full", "top", "upper", "bottom"}
    with pytest.raises(ValueError, match="unknown crop 'head'; use one of full, top, upper, bottom"):
        crop_image(_figure(), "head")


def test_augmentation_never_changes_hue_and_is_reproducible():
    red = Image.new("RGB", (40, 30), (200, 30, 30))

    def hue(im: Image.Image) -> float:
        return float(np.asarray(im.convert("HSV"))[..., 0].astype(float).mean())

    for photometric in (False, True):
        hues = [hue(augment_image(red, np.random.default_rng(s), photometric)) for s in range(20)]
        assert max(abs(h - hue(red)) for h in hues) < 3
    a, b = (np.asarray(augment_image(_figure(), np.random.default_rng(7), True)) for _ in range(2))
    assert np.array_equal(a, b)
