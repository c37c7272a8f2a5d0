"""The CLIP-style dual encoder: attrret's image backbone split front/tail + an open_clip text tower.

``ClipModel`` has three parts:

- ``front``: the frozen first stages of the image backbone. Its output does not change during
  training, so it is computed once per (image, flip) and cached (see ``features.py``);
- ``image_tail`` + ``image_proj``: the last ``trainable_stages`` stages, the head conv and a
  linear projection into the joint space;
- ``text``: an open_clip ``TextTransformer`` trained from scratch (small, for a CPU), or a
  pretrained open_clip text tower (``open_clip:ARCH/TAG``) followed by a projection.

Both embeddings are L2-normalised; ``logit_scale`` is CLIP's learned temperature.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from attrret._torchvision import ensure_torchvision
from attrret.baseline.config import ClipConfig
from attrret.errors import AttrretError

__all__ = ["ClipModel", "build_model", "image_norm"]

_STAGED = ("conv_stem", "bn1", "blocks", "conv_head", "bn2")


def _create_trunk(config: ClipConfig, pretrained: bool) -> nn.Module:
    """The image backbone, from attrret's classifier backbone factory when weights are wanted.

    Using the classifiers' factory (not a copy of it) is what makes the comparison fair: the
    same architecture with the same ImageNet weights on both sides.
    """
    ensure_torchvision()
    if pretrained:
        try:
            from attrret.classifiers.backbones import create_backbone
        except ImportError as exc:
            raise AttrretError(
                f"pretrained image weights come from attrret.classifiers.backbones, which is not available ({exc}); "
                "train with pretrained=False (--no-pretrained) to use random weights"
            ) from None
        trunk = create_backbone(config.backbone, pretrained=True)
    else:
        import timm

        trunk = timm.create_model(config.backbone, pretrained=False, num_classes=0)
    missing = [name for name in _STAGED if not hasattr(trunk, name)]
    if missing:
        raise AttrretError(
            f"backbone {config.backbone!r} is not an EfficientNet-style timm model (no {', '.join(missing)}); "
            "the CLIP baseline splits conv_stem/blocks/conv_head into a cached front and a trained tail"
        )
    return trunk


def image_norm(trunk: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std read back from the model's pretrained config (timm), not duplicated here."""
    cfg = getattr(trunk, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", (0.5, 0.5, 0.5))), tuple(cfg.get("std", (0.5, 0.5, 0.5)))


def _split_trunk(trunk: nn.Module, trainable_stages: int) -> tuple[nn.Module, nn.Module, int]:
    """``(front, tail, tail_features)``: front = stem + all but the last stages; tail = the rest + pool."""
    blocks = list(trunk.blocks)
    cut = len(blocks) - trainable_stages
    front = nn.Sequential(trunk.conv_stem, trunk.bn1, *blocks[:cut])
    tail = nn.Sequential(*blocks[cut:], trunk.conv_head, trunk.bn2, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    return front, tail, trunk.conv_head.out_channels


@contextmanager
def _hub_offline_unless_allowed():
    """Fail fast instead of waiting through hub retries (about 46 s offline) unless the user opted in."""
    old = os.environ.get("HF_HUB_OFFLINE")
    if old is None:
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)


class PretrainedText(nn.Module):
    """A pretrained open_clip model's text tower (``encode_text``), image tower dropped."""

    def __init__(self, spec: str, load_weights: bool = True) -> None:
        super().__init__()
        ensure_torchvision()
        import open_clip

        arch, tag = parse_text_spec(spec)
        try:
            with _hub_offline_unless_allowed():
                model = open_clip.create_model(arch, pretrained=tag if load_weights else None)
        except Exception as exc:  # open_clip raises RuntimeError/OSError/HF errors for missing weights
            raise AttrretError(
                f"cannot load pretrained text tower {spec!r}: {type(exc).__name__}: {exc}. "
                "The weights need a model hub (HF_HUB_OFFLINE is set unless you set it to 0) or a local file; "
                "leave --text-pretrained out to train a text tower from scratch"
            ) from None
        for name in ("visual", "trunk"):
            if hasattr(model, name):
                setattr(model, name, nn.Identity())
        self.model = model
        self.context_length = int(getattr(model, "context_length", 77))
        with torch.no_grad():
            probe = model.encode_text(torch.zeros(1, self.context_length, dtype=torch.long))
        self.output_dim = int(probe.shape[-1])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)


def parse_text_spec(spec: str) -> tuple[str, str]:
    """``open_clip:ARCH/TAG`` -> ``(ARCH, TAG)``; anything else is a clear error."""
    body = spec.removeprefix("open_clip:")
    arch, sep, tag = body.partition("/")
    if not spec.startswith("open_clip:") or not sep or not arch or not tag:
        raise AttrretError(f"text tower {spec!r}: expected open_clip:ARCH/PRETRAINED, e.g. open_clip:ViT-B-32/openai")
    return arch, tag


class ClipModel(nn.Module):
    """Frozen image front + trainable image tail/projection + text tower, CLIP-style."""

    def __init__(self, config: ClipConfig, vocab_size: int, *, load_weights: bool = True) -> None:
        super().__init__()
        trunk = _create_trunk(config, pretrained=config.pretrained and load_weights)
        self.mean, self.std = image_norm(trunk)
        self.front, self.image_tail, feat_dim = _split_trunk(trunk, config.trainable_stages)
        self.front.requires_grad_(False)
        self.image_proj = nn.Linear(feat_dim, config.embed_dim, bias=False)
        if config.text_pretrained:
            self.text = PretrainedText(config.text_pretrained, load_weights=load_weights)
            self.text_proj: nn.Module = nn.Linear(self.text.output_dim, config.embed_dim, bias=False)
        else:
            ensure_torchvision()
            from open_clip.transformer import TextTransformer

            self.text = TextTransformer(
                context_length=config.context_length,
                vocab_size=vocab_size,
                width=config.text_width,
                heads=config.text_heads,
                layers=config.text_layers,
                output_dim=config.embed_dim,
            )
            self.text_proj = nn.Identity()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def train(self, mode: bool = True) -> "ClipModel":
        super().train(mode)
        self.front.eval()  # frozen: its BatchNorm statistics must not move
        return self

    @torch.no_grad()
    def encode_front(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised pixel batch ``[B,3,H,W]`` -> frozen front features (cacheable)."""
        return self.front(images)

    def encode_image(self, front_features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_proj(self.image_tail(front_features)), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(self.text(tokens)), dim=-1)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(100.0)).exp()


def build_model(config: ClipConfig, vocab_size: int, *, load_weights: bool = True) -> ClipModel:
    """Build the model; ``load_weights=False`` builds the architecture only (to load a checkpoint into)."""
    torch.manual_seed(config.seed)
    return ClipModel(config, vocab_size, load_weights=load_weights)
