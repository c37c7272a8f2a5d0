"""Partial freezing: generic over backbone families, front frozen and in eval mode, tail trains."""

from __future__ import annotations

import copy

import pytest
import torch

from attrret.classifiers.backbones import create_backbone
from attrret.classifiers.model import Classifier, cut_for
from attrret.classifiers.recipes import default_trainable_blocks

FAMILIES = ["timm:test_efficientnet", "timm:test_vit", "timm:test_convnext", "timm:test_resnet", "timm:eva02_tiny_patch14_224"]


@pytest.mark.parametrize("spec", FAMILIES)
def test_last_block_trains_front_frozen_and_split_is_exact(spec):
    torch.manual_seed(0)
    size = 28 if "eva" in spec else 32  # EVA: 14 px patches, rotary embedding on a 2x2 grid
    bb = create_backbone(spec, pretrained=False, img_size=size)
    model = Classifier(bb.trunk, bb.feature_dim, 3, trainable_blocks=1)
    blocks = bb.trunk.blocks()
    assert all(p.requires_grad for p in blocks[-1].parameters())
    assert not any(p.requires_grad for b in blocks[:-1] for p in b.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model.train()
    assert all(not m.training for m in model.frozen_modules()) and blocks[-1].training
    model.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(model(x), model(model.front(x), from_front=True), atol=1e-5)


def test_a_training_step_leaves_the_front_untouched():
    torch.manual_seed(0)
    bb = create_backbone("timm:test_efficientnet", pretrained=False, img_size=32)
    model = Classifier(bb.trunk, bb.feature_dim, 2, trainable_blocks=2).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    front_hash = model.front_hash()
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    opt.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    stages = len(bb.trunk.model.blocks)  # the trunk's blocks: the MBConv stages, then the 1x1 head conv
    assert bb.trunk.num_blocks == stages + 1
    frozen_prefixes = ("trunk.model.conv_stem", "trunk.model.bn1") + tuple(f"trunk.model.blocks.{i}." for i in range(stages - 1))
    assert changed and not {k for k in changed if k.startswith(frozen_prefixes)}  # BN stats of the front too
    assert any(k.startswith(f"trunk.model.blocks.{stages - 1}.") for k in changed)
    assert any(k.startswith("trunk.model.conv_head.") for k in changed)
    assert model.front_hash() == front_hash
    with torch.no_grad():
        next(iter(model.frozen_modules()[0].parameters())).add_(1.0)
    assert model.front_hash() != front_hash


def test_cut_points_and_family_defaults():
    assert cut_for(7, 2) == 6 and cut_for(7, 7) == 0 and cut_for(7, 9) == 0 and cut_for(7, 0) == 9
    assert default_trainable_blocks("eva", 24) == 8  # the published EVA-L recipe
    assert default_trainable_blocks("efficientnet", 8) == 2
    bb = create_backbone("timm:test_vit", pretrained=False, img_size=32)
    everything = Classifier(bb.trunk, bb.feature_dim, 2, trainable_blocks=99)
    assert all(p.requires_grad for p in everything.parameters())
    head_only = Classifier(bb.trunk, bb.feature_dim, 2, trainable_blocks=0)
    assert {id(p) for p in head_only.trainable_parameters()} == {id(p) for p in head_only.head.parameters()}


def test_tail_state_holds_exactly_what_training_changes_and_round_trips():
    torch.manual_seed(0)
    bb = create_backbone("timm:test_efficientnet", pretrained=False, img_size=32)
    model = Classifier(bb.trunk, bb.feature_dim, 2, trainable_blocks=2).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 0, 1])).backward()
    opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    tail = model.tail_state_dict()
    assert changed <= set(tail) < set(model.state_dict())  # every changed entry, and no front entry
    assert {id(p) for p in model.trainable_parameters()} <= {id(v) for k, v in model.state_dict(keep_vars=True).items() if k in tail}

    fresh = Classifier(create_backbone("timm:test_efficientnet", pretrained=False, img_size=32).trunk, bb.feature_dim, 2, 2)
    fresh.load_state_dict(before)  # same front, untrained tail
    fresh.load_tail_state_dict(tail)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in fresh.state_dict().items())
    with pytest.raises(ValueError, match="not a tail state"):
        fresh.load_tail_state_dict({k: v for k, v in tail.items() if not k.startswith("head.")})


def test_frozen_tail_norms_replace_only_the_tails_batchnorms_and_keep_its_function():
    from timm.layers.norm_act import FrozenBatchNorm2d, FrozenBatchNormAct2d

    torch.manual_seed(0)
    bb = create_backbone("timm:test_efficientnet", pretrained=False, img_size=32)
    plain = Classifier(copy.deepcopy(bb.trunk), bb.feature_dim, 2, 2).train()
    with torch.no_grad():
        for _ in range(3):  # non-trivial running statistics for the frozen copy to take over
            plain(torch.randn(8, 3, 32, 32) * 2 + 1)
    frozen = Classifier(copy.deepcopy(plain.trunk), bb.feature_dim, 2, 2, frozen_tail_norms=True)
    frozen.head.load_state_dict(plain.head.state_dict())
    frozen_types = (FrozenBatchNorm2d, FrozenBatchNormAct2d)
    tail = [m for t in frozen.tail_modules() for m in t.modules()]
    front = [m for f in frozen.frozen_modules() for m in f.modules()]
    assert any(isinstance(m, frozen_types) for m in tail)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in tail)
    assert not any(isinstance(m, frozen_types) for m in front)
    assert frozen.trunk.blocks()[-1].norm is frozen.trunk.model.bn2  # the head-conv view follows the swap
    assert not any(p.requires_grad for m in tail if isinstance(m, frozen_types) for p in m.parameters())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # in eval mode a frozen norm is the same function as the batch norm it replaced
        assert torch.allclose(plain.eval()(x), frozen.eval()(x), atol=1e-5)
        assert torch.allclose(frozen(x), frozen(frozen.front(x), from_front=True), atol=1e-5)
    frozen.train()
    y1 = frozen(x)
    assert torch.allclose(y1, frozen(x)) and torch.allclose(y1, frozen.eval()(x), atol=1e-6)  # no batch statistics
