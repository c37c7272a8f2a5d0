"""A backbone seen as ``stem -> block 0 .. block K-1 -> post``, whatever its family.

Partial freezing and the shared frozen-trunk cache both need to cut a network at a block
boundary and run the two halves separately. timm's families expose their blocks differently
(``blocks`` of stages in EfficientNet, ``blocks`` of transformer layers in ViT/EVA, ``stages``
in ConvNeXt, ``layer1..4`` in ResNet), so one small adapter per family maps each onto the
same three calls. Everything that is neither stem nor a block (final norms, the CNN head
convolution, pooling, an open_clip projection) belongs to ``post`` and trains with the tail.

"A block" is a transformer layer for ViT/EVA and a stage for CNNs: the published method
trained the last 8 of EVA-L's 24 layers. EfficientNet's blocks are its 7 MBConv stages plus the
1x1 head convolution (the paper's "Conv1x1 & Pooling & FC" stage); the Lite0 default trains
that last block only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["Trunk", "make_trunk"]

class Trunk(nn.Module):
    """Adapter exposing ``stem``, ``block(i)`` and ``post`` of a wrapped model (``self.model``).

    ``proj`` is an extra module applied after pooling (open_clip's image projection).
    """

    family = "generic"
    stem_names: tuple[str, ...] = ()

    def __init__(self, model: nn.Module, proj: nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.proj = proj if proj is not None else nn.Identity()

    # -- the three calls -------------------------------------------------------------------
    def blocks(self) -> list[nn.Module]:
        raise NotImplementedError

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.blocks()[i](x)

    def post(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.model.forward_head(x, pre_logits=True))

    # -- derived -----------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return len(self.blocks())

    def default_trainable_blocks(self) -> int:
        """``--trainable-blocks`` when not given: its family's recipe (attrret.classifiers.recipes)."""
        from attrret.classifiers.recipes import default_trainable_blocks

        return default_trainable_blocks(self.family, self.num_blocks)

    def stem_parameters_and_modules(self) -> tuple[list[nn.Parameter], list[nn.Module]]:
        """Parameters and modules of the stem (frozen unless every block trains)."""
        params, mods = [], []
        for name in self.stem_names:
            obj = getattr(self.model, name, None)
            if isinstance(obj, nn.Parameter):
                params.append(obj)
            elif isinstance(obj, nn.Module):
                mods.append(obj)
                params.extend(obj.parameters())
        return params, mods

    def post_modules(self) -> list[nn.Module]:
        """Every module that is neither stem nor block: final norms, head conv, pooling, projection."""
        stem_ids = {id(m) for m in self.stem_parameters_and_modules()[1]}
        block_ids = {id(b) for b in self.blocks()}
        containers = {id(self._blocks_container())} if self._blocks_container() is not None else set()
        out = [m for m in self.model.children() if id(m) not in stem_ids | block_ids | containers]
        return out + [self.proj]

    def _blocks_container(self) -> nn.Module | None:
        return None

    def freeze_norms(self, roots: Sequence[nn.Module]) -> int:
        """Replace every BatchNorm inside ``roots`` by timm's frozen twin; returns how many.

        A frozen norm is a fixed per-channel affine map (the pretrained statistics and scale),
        so the layers around it still train but nothing is estimated from small, imbalanced
        batches, and its backward is an elementwise product instead of batch-norm's slow
        bfloat16 kernel. LayerNorm families (ViT, EVA, ConvNeXt) have nothing to replace.
        """
        from attrret._torchvision import ensure_torchvision

        ensure_torchvision()
        from timm.layers import freeze_batch_norm_2d

        targets = {id(m) for r in roots for m in r.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
        replaced = 0
        for parent in list(self.modules()):
            for name, child in list(parent.named_children()):
                if id(child) in targets:
                    setattr(parent, name, freeze_batch_norm_2d(child))
                    replaced += 1
        self._relink()
        return replaced

    def _relink(self) -> None:
        """Refresh views onto submodules after :meth:`freeze_norms` replaced some."""


class _HeadConv(nn.Module):
    """EfficientNet's 1x1 head convolution and its norm, seen as one more block."""

    def __init__(self, conv: nn.Module, norm: nn.Module) -> None:
        super().__init__()
        self.conv, self.norm = conv, norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class EfficientNetTrunk(Trunk):
    """EfficientNet/MobileNet: the MBConv stages, then the 1x1 head convolution as the last block.

    The paper's own stage table ends with "Conv1x1 & Pooling & FC" as a stage of its own; as a
    block it can train alone (``--trainable-blocks 1``), which costs 40% of training the last
    MBConv stage with it, the cost every extra task pays on top of the shared cache.
    """

    family = "efficientnet"
    stem_names = ("conv_stem", "bn1")
    # Of 8 blocks: the last MBConv stage and the 1x1 head conv. Chosen on the training data's own
    # selection split: on pa100k-mini at the 256x128 default (12 tasks, the 1,200 training crops)
    # mean selection mA 0.772 vs 0.759 and NLL 0.404 vs 0.438 for the head conv alone; the held
    # 300 agree (official / sound mAP@10 0.533 / 0.320 vs 0.434 / 0.228, bench/accuracy.py), as
    # does the synthetic demo set (sound 0.44 vs 0.33, bench/freezing.py). It costs about 1.65x
    # the training time of the head conv alone (--trainable-blocks 1, the lighter choice).

    def __init__(self, model: nn.Module, proj: nn.Module | None = None) -> None:
        super().__init__(model, proj)
        # Not registered as a submodule (the state dict keeps timm's names); deepcopy keeps the
        # sharing with model.conv_head / model.bn2 because both live in this module's __dict__.
        self._relink()

    def _relink(self) -> None:
        object.__setattr__(self, "_head_conv", _HeadConv(self.model.conv_head, self.model.bn2))

    def blocks(self) -> list[nn.Module]:
        return [*self.model.blocks, self._head_conv]

    def _blocks_container(self) -> nn.Module | None:
        return self.model.blocks

    def post_modules(self) -> list[nn.Module]:
        inside = {id(self.model.conv_head), id(self.model.bn2)}
        return [m for m in super().post_modules() if id(m) not in inside]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.bn1(self.model.conv_stem(x))

    def post(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.model.forward_head(x, pre_logits=True))


class ViTTrunk(Trunk):
    family = "vit"
    stem_names = ("patch_embed", "pos_embed", "cls_token", "reg_token", "pos_drop", "patch_drop", "norm_pre")

    def blocks(self) -> list[nn.Module]:
        return list(self.model.blocks)

    def _blocks_container(self) -> nn.Module | None:
        return self.model.blocks

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m._pos_embed(m.patch_embed(x))
        return m.norm_pre(m.patch_drop(x))

    def post(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.model.forward_head(self.model.norm(x), pre_logits=True))


class EvaTrunk(ViTTrunk):
    """timm's Eva (EVA02, also open_clip's EVA02 CLIP towers): blocks take a rotary embedding."""

    family = "eva"
    stem_names = ("patch_embed", "pos_embed", "cls_token", "reg_token", "pos_drop", "patch_drop", "norm_pre", "rope")

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x, _ = m._pos_embed(m.patch_embed(x))
        return m.norm_pre(x)

    def _rope(self, i: int) -> torch.Tensor | None:
        # The rotary embedding depends only on the (fixed) patch grid, so each block recomputes it
        # instead of carrying it through the cache.
        m = self.model
        if m.rope is None:
            return None
        if hasattr(m.rope, "feat_shape"):
            rope = m.rope.get_embed()
        else:
            rope = m.rope.get_embed(shape=m.patch_embed.grid_size)
        return rope[i] if getattr(m, "rope_mixed", False) else rope

    def block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.model.blocks[i](x, rope=self._rope(i))


class ConvNeXtTrunk(Trunk):
    """Models with ``stem`` + ``stages`` (ConvNeXt and relatives)."""

    family = "convnext"
    stem_names = ("stem",)

    def blocks(self) -> list[nn.Module]:
        return list(self.model.stages)

    def _blocks_container(self) -> nn.Module | None:
        return self.model.stages

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.stem(x)

    def post(self, x: torch.Tensor) -> torch.Tensor:
        norm_pre = getattr(self.model, "norm_pre", nn.Identity())
        return self.proj(self.model.forward_head(norm_pre(x), pre_logits=True))


class ResNetTrunk(Trunk):
    family = "resnet"
    stem_names = ("conv1", "bn1", "act1", "maxpool")

    def blocks(self) -> list[nn.Module]:
        return [self.model.layer1, self.model.layer2, self.model.layer3, self.model.layer4]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        return m.maxpool(m.act1(m.bn1(m.conv1(x))))


_FAMILIES: list[tuple[Callable[[nn.Module], bool], type[Trunk]]] = [
    (lambda m: type(m).__name__ == "Eva", EvaTrunk),
    (lambda m: hasattr(m, "patch_embed") and hasattr(m, "blocks") and hasattr(m, "_pos_embed"), ViTTrunk),
    (lambda m: hasattr(m, "conv_stem") and hasattr(m, "blocks") and hasattr(m, "conv_head"), EfficientNetTrunk),
    (lambda m: hasattr(m, "stem") and hasattr(m, "stages"), ConvNeXtTrunk),
    (lambda m: all(hasattr(m, f"layer{i}") for i in range(1, 5)) and hasattr(m, "conv1"), ResNetTrunk),
]


def make_trunk(model: nn.Module, proj: nn.Module | None = None) -> Trunk:
    """Wrap a timm model (or an open_clip timm tower's trunk) in the adapter of its family."""
    for test, cls in _FAMILIES:
        if test(model):
            return cls(model, proj)
    raise ValueError(
        f"cannot split a {type(model).__name__} into blocks: supported families are "
        "EfficientNet/MobileNet, ViT, EVA, ConvNeXt-like (stem+stages) and ResNet"
    )
