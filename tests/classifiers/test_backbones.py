"""Backbone factory: the default weights are really ImageNet's; offline failures are immediate and helpful."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from attrret.classifiers.backbones import BackboneError, create_backbone, efficientnet_lite_imagenet


def _imagenet_input(arr: np.ndarray) -> torch.Tensor:
    im = Image.fromarray(arr).resize((224, 224), Image.Resampling.BICUBIC)
    t = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return ((t - 0.5) / 0.5)[None]  # mean = std = 0.5 for these weights


def test_default_weights_are_imagenet():
    skdata = pytest.importorskip("skimage.data")
    model = efficientnet_lite_imagenet()
    with torch.no_grad():
        cat = model(_imagenet_input(skdata.chelsea())).softmax(-1)[0]
        coffee = model(_imagenet_input(skdata.coffee())).softmax(-1)[0]
    assert {281, 282, 285} & set(cat.topk(5).indices.tolist())  # tabby / tiger cat / Egyptian cat
    assert coffee.argmax().item() == 967  # espresso


def test_random_init_is_not_imagenet():
    skdata = pytest.importorskip("skimage.data")
    torch.manual_seed(0)
    model = efficientnet_lite_imagenet(pretrained=False)
    with torch.no_grad():
        coffee = model(_imagenet_input(skdata.coffee())).softmax(-1)[0]
    assert coffee.max().item() < 0.5


def test_preprocessing_is_read_from_the_model():
    lite = create_backbone(img_size=64)
    assert lite.preprocess.mean == (0.5, 0.5, 0.5) and lite.native_size == 224 and lite.preprocess.size == 64
    other = create_backbone("timm:test_efficientnet", pretrained=False, img_size=48)
    assert other.preprocess.mean == pytest.approx((0.485, 0.456, 0.406))
    assert other.arch == "timm:test_efficientnet" and other.family == "efficientnet"


@pytest.mark.parametrize(
    "spec",
    ["timm:eva02_tiny_patch14_224.mim_in22k", "open_clip:EVA02-B-16/merged2b_s8b_b131k"],
)
def test_offline_missing_weights_fail_at_once_with_instructions(spec, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(BackboneError) as err:
        create_backbone(spec)
    msg = str(err.value)
    assert "HF_HUB_OFFLINE" in msg and "download once" in msg and "tf_efficientnet_lite0" in msg


def test_timm_weights_file_is_loaded(tmp_path):
    import timm

    torch.manual_seed(1)
    src = timm.create_model("test_vit", img_size=32, num_classes=0)
    path = tmp_path / "vit.pth"
    torch.save(src.state_dict(), path)
    bb = create_backbone("timm:test_vit", weights=path, img_size=32)
    got = bb.trunk.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in src.state_dict().items())
    assert bb.weights == f"file:{path}" and bb.family == "vit"


def test_bad_specs_are_clear_errors(tmp_path):
    with pytest.raises(BackboneError, match="unknown backbone"):
        create_backbone("resnet_does_not_exist")
    with pytest.raises(BackboneError, match="timm has no model"):
        create_backbone("timm:no_such_model_xyz", pretrained=False)
    with pytest.raises(BackboneError, match="weights file not found"):
        create_backbone("timm:test_vit", weights=tmp_path / "missing.pth")
