"""The CLIP-style dual encoder: attrret's image backbone split front/tail + an open_clip text tower.

``ClipModel`` has three parts:

- the image ``trunk`` (attrret's classifier backbone factory and block adapter): its stem and
  first blocks are the frozen *front*, whose output never changes during training, so it is
  computed once per (image, flip) and cached (see ``features.py``); the last
  ``trainable_stages`` blocks, the head (``post``) and ``image_proj`` train;
- ``text``: an open_clip ``TextTransformer`` trained from scratch (small, for a CPU), or a
  pretrained open_clip text tower (``open_clip:ARCH/TAG``) followed by a projection.

Both embeddings are L2-normalised; ``logit_scale`` is CLIP's learned temperature.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from attrret._torchvision import ensure_torchvision
from attrret.baseline.config import ClipConfig
from attrret.errors import AttrretError

__all__ = ["ClipModel", "build_model", "parse_text_spec"]


def _create_backbone(config: ClipConfig, pretrained: bool):
    """The image backbone from attrret's classifier factory (same architecture, same weights).

    Using the classifiers' factory, not a copy of it, is what makes the comparison fair: the
    default ``tf_efficientnet_lite0`` comes with the same offline ImageNet weights, split into
    the same blocks, and fed with the same preprocessing.
    """
    from attrret.classifiers.backbones import create_backbone

    bb = create_backbone(config.backbone, pretrained=pretrained, img_size=config.image_size)
    if not 0 <= config.trainable_stages <= bb.trunk.num_blocks:
        raise AttrretError(f"trainable_stages={config.trainable_stages}: {config.backbone} has {bb.trunk.num_blocks} blocks")
    return bb


class PretrainedText(nn.Module):
    """A pretrained open_clip model's text tower (``encode_text``), image tower dropped."""

    def __init__(self, spec: str, load_weights: bool = True) -> None:
        super().__init__()
        ensure_torchvision()
        import open_clip

        arch, tag = parse_text_spec(spec)
        if arch not in open_clip.list_models():
            raise AttrretError(f"open_clip has no model {arch!r} (see open_clip.list_models())")
        if load_weights and not Path(tag).is_file():
            _check_weights_reachable(open_clip, arch, tag)
        try:
            model = open_clip.create_model(arch, pretrained=tag if load_weights else None)
        except (RuntimeError, OSError, ValueError) as exc:
            raise AttrretError(f"cannot load pretrained text tower {spec!r}: {type(exc).__name__}: {exc}") from None
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


def _check_weights_reachable(open_clip, arch: str, tag: str) -> None:
    """Offline and not on disk: fail at once (the hub would retry for about 46 s, then fail).

    Same rule and cache probes as the classifiers' backbone factory.
    """
    from attrret.classifiers.backbones import hub_offline, open_clip_weights_on_disk

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        raise AttrretError(f"open_clip has no pretrained tag {tag!r} for {arch} (see open_clip.list_pretrained())")
    if not open_clip_weights_on_disk(cfg) and hub_offline():
        raise AttrretError(
            f"no weights for text tower open_clip:{arch}/{tag} on this machine and the model hub is offline "
            f"(HF_HUB_OFFLINE=1): download them once where the hub is reachable, or give a local file "
            f"(open_clip:{arch}/PATH), or leave --text-pretrained out to train a text tower from scratch"
        )


def parse_text_spec(spec: str) -> tuple[str, str]:
    """``open_clip:ARCH/TAG`` -> ``(ARCH, TAG)``; anything else is a clear error."""
    body = spec.removeprefix("open_clip:")
    arch, sep, tag = body.partition("/")
    if not spec.startswith("open_clip:") or not sep or not arch or not tag:
        raise AttrretError(f"text tower {spec!r}: expected open_clip:ARCH/PRETRAINED, e.g. open_clip:ViT-B-32/openai")
    return arch, tag


class ClipModel(nn.Module):
    """Frozen image front + trainable image tail/projection + text tower, CLIP-style.

    The image trunk is the classifiers' block adapter (``stem -> block 0..K-1 -> post``): the
    stem and the first ``K - trainable_stages`` blocks are the frozen, cacheable front.
    """

    def __init__(self, config: ClipConfig, vocab_size: int, *, load_weights: bool = True) -> None:
        super().__init__()
        bb = _create_backbone(config, pretrained=config.pretrained and load_weights)
        self.trunk = bb.trunk
        self.cut = self.trunk.num_blocks - config.trainable_stages
        self.preprocess = bb.preprocess  # the input its front takes (baseline/features.py)
        for p in self._front_parameters():
            p.requires_grad_(False)
        self.image_proj = nn.Linear(bb.feature_dim, config.embed_dim, bias=False)
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

    def _front_modules(self) -> list[nn.Module]:
        blocks = self.trunk.blocks()
        return self.trunk.stem_parameters_and_modules()[1] + blocks[: self.cut]

    def _front_parameters(self) -> list[nn.Parameter]:
        params = list(self.trunk.stem_parameters_and_modules()[0])
        for block in self.trunk.blocks()[: self.cut]:
            params.extend(block.parameters())
        return params

    def train(self, mode: bool = True) -> "ClipModel":
        super().train(mode)
        for m in self._front_modules():  # frozen: BatchNorm statistics must not move either
            m.eval()
        return self

    @torch.no_grad()
    def encode_front(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised pixel batch ``[B,3,H,W]`` -> frozen front features (cacheable)."""
        x = self.trunk.stem(images)
        for i in range(self.cut):
            x = self.trunk.block(i, x)
        return x

    def encode_image(self, front_features: torch.Tensor) -> torch.Tensor:
        x = front_features
        for i in range(self.cut, self.trunk.num_blocks):
            x = self.trunk.block(i, x)
        return F.normalize(self.image_proj(self.trunk.post(x)).float(), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(self.text(tokens)).float(), dim=-1)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(100.0)).exp()


def build_model(config: ClipConfig, vocab_size: int, *, load_weights: bool = True) -> ClipModel:
    """Build the model; ``load_weights=False`` builds the architecture only (to load a checkpoint into)."""
    torch.manual_seed(config.seed)
    return ClipModel(config, vocab_size, load_weights=load_weights)
