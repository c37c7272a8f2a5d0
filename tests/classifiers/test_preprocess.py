"""Model inputs: the per-task crop regions and the label-safe augmentation training uses."""

import numpy as np
import pytest
import torch
from PIL import Image

from attrret.geometry import Preprocess
from attrret.classifiers.preprocess import CROPS, augment_image, crop_image, front_views, load_batch, load_input, to_tensor


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
    pre = Preprocess(height=64, width=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
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


def test_a_tall_input_is_filled_by_a_tall_image_and_padded_around_a_wide_one(tmp_path):
    """H x W, not a square: a 1:2.4 figure fills most of a 64x32 input; a wide one is letterboxed."""
    Image.new("RGB", (50, 120), (0, 200, 0)).save(tmp_path / "tall.png")
    Image.new("RGB", (90, 30), (0, 0, 200)).save(tmp_path / "wide.png")
    pre = Preprocess(height=64, width=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    tall, wide = (np.asarray(load_input(tmp_path / name, pre)) for name in ("tall.png", "wide.png"))
    assert tall.shape == wide.shape == (64, 32, 3)
    grey = lambda a: (a == 128).all(-1).mean()  # noqa: E731 - the padding colour
    assert grey(tall) < 0.2 and 0.8 < grey(wide) < 0.9  # 32 x ~11 of blue in 64 x 32
    x = load_batch([tmp_path / "tall.png", tmp_path / "wide.png"], pre)
    assert x.dtype == torch.float32 and x.shape == (2, 3, 64, 32)
    assert torch.equal(x[0], to_tensor(load_input(tmp_path / "tall.png", pre), pre))


def test_load_batch_applies_the_transform_to_each_image_in_order(tmp_path):
    for i in range(3):
        Image.new("RGB", (20, 40), (40 * i, 0, 0)).save(tmp_path / f"{i}.png")
    pre = Preprocess(height=32, width=16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    seen: list[int] = []
    x = load_batch([tmp_path / f"{i}.png" for i in range(3)], pre, transform=lambda im: seen.append(im.getpixel((8, 16))[0]) or im)
    assert seen == [0, 40, 80] and x.shape == (3, 3, 32, 16)


def test_front_views_are_the_front_of_the_image_and_of_its_mirror():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 6)
    conv = torch.nn.Conv2d(3, 5, 3, padding=1)
    image, mirror = front_views(conv, x, torch.device("cpu"), precision="fp32")
    with torch.no_grad():
        assert torch.allclose(image, conv(x), atol=1e-5) and torch.allclose(mirror, conv(torch.flip(x, dims=[3])), atol=1e-5)
    assert image.dtype == torch.float32 and not image.requires_grad
    assert len(front_views(conv, x, torch.device("cpu"), precision="fp32", flips=False)) == 1
