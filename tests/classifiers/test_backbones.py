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


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"])
def test_builtin_weights_are_imagenet(name):
    """lite0 is the default; lite1 and lite2 are pinned built-ins too (pyproject), loaded the same way."""
    skdata = pytest.importorskip("skimage.data")
    model = efficientnet_lite_imagenet(name)
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
    assert lite.preprocess.mean == (0.5, 0.5, 0.5) and lite.native_size == 224 and lite.preprocess.hw == (64, 64)
    other = create_backbone("timm:test_efficientnet", pretrained=False, img_size=48)
    assert other.preprocess.mean == pytest.approx((0.485, 0.456, 0.406))
    assert other.arch == "timm:test_efficientnet" and other.family == "efficientnet"


def test_inputs_are_rectangles_for_cnns_and_transformers():
    """A CNN takes any H x W as it is; a ViT is built for the H x W patch grid; a size a model
    cannot take is one BackboneError naming --img-size, not a traceback from inside timm."""
    cnn = create_backbone("timm:test_efficientnet", pretrained=False, img_size=(64, 32))
    assert cnn.preprocess.hw == (64, 32) and cnn.feature_dim == create_backbone("timm:test_efficientnet", pretrained=False, img_size=32).feature_dim
    tall = create_backbone("timm:test_vit", pretrained=False, img_size=(64, 32))
    square = create_backbone("timm:test_vit", pretrained=False, img_size=(32, 32))
    assert tall.preprocess.hw == (64, 32)
    with torch.no_grad():  # 16 px patches: 4 x 2 of them against 2 x 2
        assert tall.trunk.stem(torch.zeros(1, 3, 64, 32)).shape[1] - square.trunk.stem(torch.zeros(1, 3, 32, 32)).shape[1] == 4
    with pytest.raises(BackboneError, match=r"'timm:test_vit' cannot take a 48x20 input \(--img-size 48x20\): .*divisible"):
        create_backbone("timm:test_vit", pretrained=False, img_size=(48, 20))
    with pytest.raises(BackboneError, match=r"'timm:test_maxvit' cannot take a 20x20 input \(--img-size 20x20\)"):
        create_backbone("timm:test_maxvit", pretrained=False, img_size=20)


def offline_error(spec: str, monkeypatch, tmp_path) -> str:
    """The message of building ``spec`` offline with empty hub and torch caches."""
    import huggingface_hub.constants as c

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch"))
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(BackboneError) as err:
        create_backbone(spec)
    return str(err.value)


@pytest.mark.parametrize(
    "spec",
    ["timm:eva02_tiny_patch14_224.mim_in22k", "open_clip:EVA02-B-16/merged2b_s8b_b131k"],
)
def test_offline_missing_weights_fail_at_once_with_instructions(spec, monkeypatch, tmp_path):
    msg = offline_error(spec, monkeypatch, tmp_path)
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


def test_sources_table_covers_every_spec_form(tmp_path):
    from attrret.classifiers.backbones import SOURCES, parse_spec

    assert list(SOURCES) == ["builtin:", "timm:", "open_clip:", "checkpoint:"]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.pt").write_bytes(b"")
    assert parse_spec("tf_efficientnet_lite0") == ("builtin", "tf_efficientnet_lite0", None)
    assert parse_spec("builtin:tf_efficientnet_lite0") == ("builtin", "tf_efficientnet_lite0", None)
    assert parse_spec("timm:test_vit") == ("timm", "test_vit", None)
    assert parse_spec("open_clip:EVA02-B-16/merged2b") == ("open_clip", "EVA02-B-16", "merged2b")
    assert parse_spec(str(tmp_path / "run")) == ("checkpoint", str(tmp_path / "run" / "model.pt"), None)
    assert parse_spec(f"checkpoint:{tmp_path / 'run' / 'model.pt'}")[0] == "checkpoint"
    with pytest.raises(BackboneError, match=r"unknown backbone 'nope': use tf_efficientnet_lite0, .*timm:<name>, "
                                            r"open_clip:<arch>/<pretrained>, the path of an attrret model.pt"):
        parse_spec("nope")
    with pytest.raises(BackboneError, match="no built-in backbone"):
        parse_spec("builtin:resnet50")


def test_a_new_source_is_one_row(monkeypatch):
    from attrret.classifiers import backbones

    calls = []

    def build(spec, name, tag, **kwargs):
        calls.append((spec, name, tag, kwargs))
        return "a backbone"

    monkeypatch.setitem(backbones.SOURCES, "mine:", backbones.BackboneSource("mine:<name>", build))
    assert create_backbone("mine:thing", pretrained=False, img_size=32) == "a backbone"
    assert calls == [("mine:thing", "thing", None, {"weights": None, "pretrained": False, "img_size": (32, 32)})]


def test_weights_file_only_for_timm(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    for spec in ("tf_efficientnet_lite0", "open_clip:RN50/openai"):
        with pytest.raises(BackboneError, match="--weights is for timm:<name> backbones"):
            create_backbone(spec, weights=weights)


@pytest.mark.parametrize(
    ("spec", "runnable"),
    [
        # the advice downloads the weights; without a hub the test builds the same model without them
        ("timm:eva02_tiny_patch14_224.mim_in22k", ("pretrained=True", "pretrained=False")),
        ("open_clip:RN50/openai", ("pretrained='openai'", "pretrained=None")),
    ],
)
def test_advised_download_command_runs(spec, runnable, monkeypatch, tmp_path):
    """The offline error's ``python -c`` advice names flags that exist and imports timm / open_clip
    the way attrret must (with its torchvision shim), so it runs as written."""
    import re
    import subprocess
    import sys

    msg = offline_error(spec, monkeypatch, tmp_path)
    assert "--random-init" in msg and "--no-pretrained" not in msg
    code = re.search(r'python -c "([^"]+)"', msg).group(1)
    assert "ensure_torchvision()" in code and runnable[0] in code
    proc = subprocess.run([sys.executable, "-c", code.replace(*runnable)], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_flags_named_by_backbone_errors_exist():
    import inspect
    import re

    import typer

    from attrret.classifiers import backbones
    from attrret.cli import app

    named = set(re.findall(r"--[a-z][\w-]+", inspect.getsource(backbones)))
    train = typer.main.get_command(app).commands["train"]
    flags = {o for p in train.params for o in (*p.opts, *p.secondary_opts)}
    assert {"--weights", "--random-init"} <= named <= flags, named - flags


def test_default_trainable_depth_is_a_recipe_per_trunk_family():
    from attrret.classifiers import trunks
    from attrret.classifiers.recipes import default_trainable_blocks, family_trainable

    assert {cls.family for _, cls in trunks._FAMILIES} == set(family_trainable())  # every family has one
    assert family_trainable() == {"eva": None, "vit": None, "efficientnet": 2, "convnext": 1, "resnet": 1}
    vit = create_backbone("timm:test_vit", pretrained=False, img_size=32).trunk
    assert vit.default_trainable_blocks() == max(1, round(vit.num_blocks / 3))
    assert vit.default_trainable_blocks() == default_trainable_blocks("vit", vit.num_blocks)
    assert default_trainable_blocks("eva", 24) == 8 and default_trainable_blocks("efficientnet", 8) == 2
