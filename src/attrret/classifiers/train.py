"""Train attribute classifiers: one flat loop over a shared, cached frozen front.

What one loop trains is a :class:`Unit`: one task by default (the decoupled method, a
single-task classifier per attribute), or with ``multitask`` every task of one model input as
one shared tail with a head slice each (the method's ablation arm). The loss is the mean over
the unit's tasks of each task's cross-entropy on the images in its training split (one task:
its loss), so incomplete labels need nothing special. Trained on several datasets (``data`` a
tuple), each epoch draws its images balanced across them (:func:`epoch_order`, ``data_alpha``),
and each task's checkpoint records how many labels each dataset gave it.

Per unit: label smoothing, AdamW (weight decay 1e-5), linear warm-up then cosine, bf16
autocast on AVX-512 CPUs / fp16 AMP on GPU, optional inverse-frequency class weights and EMA,
per-epoch accuracy and mA on each task's selection split, best epoch (by mean mA; a colour's
yes/no groups by mean average precision, :func:`unit_score`) kept, then
each task's softmax temperature fitted on its selection split (calibration.py) and stored with
it. Everything random derives from ``(seed, unit, epoch)``, so a run is reproducible and
``--resume`` after an interruption continues exactly where the last finished epoch left off.
The loop reads top to bottom in :func:`_train_unit`: :func:`resume`, then per epoch
:func:`run_epoch` and :func:`save_last`, then :func:`save_best`, over one small state object
(``_UnitRun``).

Multi-process: launched under ``torchrun`` (``WORLD_SIZE`` > 1), every rank trains the same
model on its shard of each batch through DistributedDataParallel (gloo on CPU, nccl on GPU);
rank 0 builds the trunk cache and writes files, every rank evaluates the full selection split,
so all ranks pick the same best epoch.

Outputs per task (a multi-task unit writes each of its tasks the same way, the shared tail
with that task's head slice): ``W/models/<task>/model.pt`` (self-describing, see
checkpoint.py; lean, the tail and head only, when the front is the default backbone's pinned
pretrained weights), ``metrics.json`` (history, best epoch, val and holdout metrics),
``config.json`` (the config).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from attrret.classifiers.backbones import DEFAULT_BACKBONE, Backbone, create_backbone
from attrret.classifiers.cache import FrontCache, open_or_build
from attrret.classifiers.calibration import fit_temperature, view_nll, view_probs
from attrret.classifiers.checkpoint import FRONT_PRETRAINED, front_record, save_checkpoint
from attrret.classifiers.data import Sample, TaskData, load_origin_data, load_task_data
from attrret.classifiers.domain import DomainGate, accuracy_by_dataset, fit_logistic, pooled
from attrret.classifiers.preprocess import CROPS, augment_image, channels_last, front_views, load_batch
from attrret.classifiers.metrics import average_precision, classification_metrics
from attrret.classifiers.model import Classifier
from attrret.classifiers.recipes import MEMBERS_DIR, TaskRecipe, TaskRecipes, default_trainable_blocks, load_recipes
from attrret.classifiers.runtime import (PRECISIONS, Dist, autocast, barrier, grad_scaler, init_dist, resolve_device, resolve_precision,
                                         seed_everything, tune_malloc)
from attrret.ensemble import DOMAIN_GATE_FILE
from attrret.errors import AttrretError, OptionError
from attrret.faults import fault_point
from attrret.geometry import HW, Preprocess, hw_label, parse_hw, scale_hw
from attrret.io import atomic_path, atomic_write_text
from attrret.locks import LOCK_PREFIX, file_lock
from attrret.schema import Group, Schema, load_schema

__all__ = ["TrainConfig", "TaskResult", "BestEpoch", "Unit", "anchor_member", "train_domain_gate", "train_tasks", "balanced_cross_entropy", "unit_loss"]


TASK_LOCK_PREFIX = LOCK_PREFIX + "train-"  # W/models/.attrret-train-<task>.lock
_BALANCES = ("none", "weighted", "sqrt")
_TAIL_NORMS = ("frozen", "batch")
_DEVICE_TYPES = ("cpu", "cuda", "mps")  # and "auto"; whether this machine has one is checked when training starts


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; stored in every ``config.json`` and checkpoint."""

    task: str = "all"
    # The labelled dataset, or several (a tuple: ``--data A --data B``, data.py: each split on its
    # own, every task learning from each one that labels it, sampled by ``data_alpha``).
    data: str | tuple[str, ...] = ""
    workdir: str = "attrret-work"
    backbone: str = DEFAULT_BACKBONE
    weights: str | None = None  # timm:<name> weights file
    pretrained: bool = True  # False: random init (the baseline the README compares against)
    # The model input H x W for every task (an int or "HxW" is read by geometry.parse_hw); None:
    # each task's recipe (recipes.toml ``input``: tall for pedestrians, wide for vehicles).
    img_size: HW | None = None
    input_scale: float = 1.0  # without img_size: each recipe's input size times this (geometry.scale_hw); recipes.py
    epochs: int | None = None  # None: each task's recipe (recipes.toml); task_epochs()
    batch_size: int = 64
    lr: float | None = None  # None: each task's recipe (recipes.toml); task_lr()
    weight_decay: float = 1e-5
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    balance: str = "weighted"  # none | weighted (inverse class frequency) | sqrt
    ema: float = 0.0  # EMA decay per step (e.g. 0.999); 0 = off
    calibrate: bool = True  # fit a softmax temperature on the selection split (calibration.py); False: T = 1
    trainable_blocks: int | None = None  # None = the family default (recipes.toml [trainable_blocks])
    tail_norm: str = "frozen"  # frozen: the tail's BatchNorms keep the pretrained statistics and affine | batch
    crop: str | None = None  # full | top | upper | bottom (geometry.CROPS) for every task; None: each task's recipe
    seed: int = 0
    device: str = "auto"
    # auto | fp32 | bf16 | fp16 (runtime.resolve_precision); None: $ATTRRET_PRECISION, else auto.
    # train_tasks records the precision that ran (fp32, bf16 or fp16) in its place.
    precision: str | None = None
    resume: bool = False
    holdout: int = 0  # labels.txt folders: keep holdout_split(n, holdout_seed) out of training
    holdout_seed: int = 0
    fold: str | None = None  # "k/K": select on stratified fold k of K
    val_fraction: float = 0.15
    cache: bool = True
    cache_budget_gb: float = 4.0
    num_threads: int | None = None
    skip_bad: bool = False
    # One network per input (size and crop) for all its tasks, one head slice each: the published
    # method's multi-task ablation arm (bench/accuracy.py). False: one classifier per task.
    multitask: bool = False
    # Several datasets: each epoch draws a dataset's images in proportion to its size to the power
    # data_alpha (0.5: 16x the images, 4x the draws; 0: every dataset as often; 1: no balancing).
    data_alpha: float = 0.5

    def __post_init__(self) -> None:
        """Refuse settings that would train garbage or fail late (``--lr inf`` trained NaN weights).

        The data path is recorded resolved: what the checkpoint says it was trained on must
        not depend on the directory a later command runs from (``rank --hidden-priors``).
        """
        if isinstance(self.data, (list, tuple)):
            roots = tuple(str(Path(d).resolve()) for d in self.data)
            if len(set(roots)) != len(roots):
                raise OptionError(f"--data names a dataset twice: {', '.join(sorted({r for r in roots if roots.count(r) > 1}))}")
            object.__setattr__(self, "data", roots[0] if len(roots) == 1 else roots)
        elif self.data:
            object.__setattr__(self, "data", str(Path(self.data).resolve()))
        def finite(name: str, value: float, low: float, *, strict: bool = False) -> None:
            if not (math.isfinite(value) and (value > low if strict else value >= low)):
                raise OptionError(f"{name} must be a finite number {'>' if strict else '>='} {low:g}, got {value}")

        if self.lr is not None:
            finite("learning rate", self.lr, 0.0, strict=True)
        finite("weight decay", self.weight_decay, 0.0)
        finite("warmup epochs", self.warmup_epochs, 0.0)
        finite("label smoothing", self.label_smoothing, 0.0)
        finite("cache budget", self.cache_budget_gb, 0.0)
        finite("input scale", self.input_scale, 0.0, strict=True)
        if not (math.isfinite(self.data_alpha) and 0.0 <= self.data_alpha <= 1.0):
            raise OptionError(f"data alpha must be in [0, 1], got {self.data_alpha}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise OptionError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not 0.0 <= self.ema < 1.0:
            raise OptionError(f"EMA decay must be in [0, 1), got {self.ema}")
        if not 0.0 < self.val_fraction < 1.0:
            raise OptionError(f"validation fraction must be in (0, 1), got {self.val_fraction}")
        if self.img_size is not None:
            try:
                object.__setattr__(self, "img_size", parse_hw(self.img_size))
            except ValueError as exc:
                raise OptionError(f"image size: {exc}") from None
        if (self.epochs is not None and self.epochs < 1) or self.batch_size < 1:
            raise OptionError("epochs and batch size must be at least 1")
        if self.trainable_blocks is not None and self.trainable_blocks < 0:
            raise OptionError(f"trainable blocks must be >= 0, got {self.trainable_blocks}")
        for name, value, choices in (("balance", self.balance, _BALANCES), ("tail_norm", self.tail_norm, _TAIL_NORMS),
                                     ("crop", "full" if self.crop is None else self.crop, tuple(CROPS))):
            if value not in choices:
                raise OptionError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        kind, _, index = self.device.partition(":")
        if self.device != "auto" and not (kind in _DEVICE_TYPES and (not index or index.isdigit())):
            raise OptionError(f"unknown device {self.device!r}; use auto, cpu, cuda or cuda:N")
        if self.holdout < 0:
            raise OptionError(f"holdout must be >= 0 images, got {self.holdout}")
        if self.fold:
            k, _, n = self.fold.partition("/")
            if not (k.isdigit() and n.isdigit()):
                raise OptionError(f"--fold must look like k/K (e.g. 0/5), got {self.fold!r}")
            if not (int(n) >= 2 and int(k) < int(n)):
                raise OptionError(f"--fold {self.fold}: need K >= 2 and 0 <= k < K")

    @property
    def datasets(self) -> tuple[str, ...]:
        """The labelled datasets, resolved, in the order given."""
        return (self.data,) if isinstance(self.data, str) and self.data else tuple(self.data)

    def as_dict(self) -> dict:
        """Plain JSON types (``img_size`` as ``[H, W]``, several datasets as a list), as
        ``config.json`` and ``last.pt`` store it, so a saved config compares equal to the one it
        was made from (``--resume``)."""
        d = dataclasses.asdict(self)
        d["img_size"] = list(self.img_size) if self.img_size else None
        d["data"] = self.data if isinstance(self.data, str) else list(self.data)
        return d

    def task_epochs(self, recipe: TaskRecipe) -> int:
        """How many epochs a task trains: ``epochs`` when given, else its recipe's
        (:mod:`attrret.classifiers.recipes`: chosen per subject on the selection split by bench/recipe.py)."""
        return self.epochs or recipe.epochs

    def task_lr(self, recipe: TaskRecipe) -> float:
        """A task's peak learning rate: ``lr`` when given, else its recipe's."""
        return self.lr or recipe.lr

    def for_task(self, recipe: TaskRecipe) -> TrainConfig:
        """This config with a task's epochs and learning rate resolved (what the task runs and records)."""
        return dataclasses.replace(self, epochs=self.task_epochs(recipe), lr=self.task_lr(recipe))

    def for_tasks(self, recipes: TaskRecipes, tasks: Sequence[str]) -> TrainConfig:
        """This config resolved for tasks trained as one network (:class:`Unit`): the longest of
        their epochs and the largest of their learning rates (one task: :meth:`for_task`)."""
        own = [self.for_task(recipes.task(t)) for t in tasks]
        return dataclasses.replace(self, epochs=max(c.epochs for c in own), lr=max(c.lr for c in own))

    def task_input(self, recipe: TaskRecipe) -> tuple[HW | None, str]:
        """The input size (None: the backbone's native one) and crop a task trains on:
        ``img_size`` / ``crop`` when given, else its recipe's (scaled by ``input_scale``)."""
        hw = self.img_size or (scale_hw(recipe.input, self.input_scale) if recipe.input and self.input_scale != 1.0 else recipe.input)
        return hw, self.crop or recipe.crop


@dataclass(frozen=True)
class TaskResult:
    task: str
    model_dir: Path
    classes: tuple[str, ...]
    n_train: int
    n_val: int
    n_holdout: int
    best_epoch: int
    val: dict
    holdout: dict | None
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    train_images_per_s: float = 0.0
    weights_sha256: str = ""
    skipped: bool = False
    # Per dataset it learned from (resolved root): its labels per split, as metrics.json records them.
    datasets: dict[str, dict[str, int]] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers
def _task_seed(seed: int, task: str, epoch: int = 0) -> int:
    return (seed * 1_000_003 + zlib.crc32(task.encode()) + epoch * 7919) % 2**31


def _lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    return f


def balanced_cross_entropy(logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None,
                           label_smoothing: float = 0.0) -> torch.Tensor:
    """Label-smoothed cross-entropy with each SAMPLE weighted by its true class's weight.

    Not ``F.cross_entropy(weight=..., label_smoothing=...)``: PyTorch also weights the smoothing
    terms by the class weights, so with a rare class weighted 20x every majority sample is pulled
    towards the rare class about as hard as towards its own label, and a 5%-positive task such as
    pedestrian.coat collapses to predicting the rare class everywhere (measured on pa100k-mini).
    """
    per_sample = F.cross_entropy(logits, target, reduction="none", label_smoothing=label_smoothing)
    if class_weights is None:
        return per_sample.mean()
    w = class_weights[target]
    return (per_sample * w).sum() / w.sum().clamp_min(1e-12)


def _class_weights(train: Sequence[Sample], n_classes: int, mode: str) -> torch.Tensor | None:
    if mode == "none":
        return None
    counts = np.bincount([y for _, y in train], minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    if mode == "sqrt":
        w = np.sqrt(w)
    w = np.clip(w, 0.0, 20.0)
    w = w / (w[counts > 0].mean() if (counts > 0).any() else 1.0)
    return torch.tensor(w, dtype=torch.float32)


def _state_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class _Inputs:
    """Model inputs for a batch: cached front output, or images through the frozen front
    (:func:`inputs.load_batch` and :func:`inputs.front_views`, the path predict takes)."""

    def __init__(self, model: Classifier, pre: Preprocess, crop: str, cache: FrontCache | None, device: torch.device, precision: str) -> None:
        self.model, self.pre, self.crop, self.cache, self.device, self.precision = model, pre, crop, cache, device, precision

    def train_batch(self, paths: Sequence[str], rng: np.random.Generator, photometric: bool) -> torch.Tensor:
        if self.cache is not None:
            return self.cache.batch(paths, rng.integers(0, 2, len(paths))).to(self.device)
        x = load_batch(paths, self.pre, self.crop, transform=lambda im: augment_image(im, rng, photometric))
        return front_views(self.model.front, x, self.device, self.precision, flips=False)[0]

    def eval_views(self, paths: Sequence[str], flips: bool = True) -> list[torch.Tensor]:
        """The front output of the images and (``flips``) of their mirror images."""
        if self.cache is not None:
            return [self.cache.batch(paths, [v] * len(paths)).to(self.device) for v in ((0, 1) if flips else (0,))]
        return front_views(self.model.front, load_batch(paths, self.pre, self.crop), self.device, self.precision, flips=flips)


def _view_logits(model: torch.nn.Module, inputs: _Inputs, items: Sequence[Sample], batch_size: int, device: torch.device,
                 precision: str) -> np.ndarray:
    """Float32 logits ``(2, n, classes)``: the image and its flip (the views predict averages)."""
    model.eval()
    out: list[np.ndarray] = []
    with torch.no_grad():
        for s in range(0, len(items), batch_size):
            paths = [p for p, _ in items[s : s + batch_size]]
            views = []
            for xv in inputs.eval_views(paths):
                with autocast(device, precision):
                    views.append(model(channels_last(xv, device), from_front=True).float().cpu().numpy())
            out.append(np.stack(views))
    return np.concatenate(out, axis=1) if out else np.zeros((2, 0, 0), np.float32)


def _predict(model: torch.nn.Module, inputs: _Inputs, items: Sequence[Sample], batch_size: int, device: torch.device, precision: str,
             temperature: float = 1.0) -> np.ndarray:
    """Softmax probabilities at ``temperature`` averaged over the image and its flip (what predict computes)."""
    return view_probs(torch.from_numpy(_view_logits(model, inputs, items, batch_size, device, precision)), temperature).numpy()


def _summary(m: dict) -> dict:
    return {"accuracy": m["accuracy"], "mA": m["mA"], "n": m["n"], **({"ap": m["ap"]} if "ap" in m else {})}


# --------------------------------------------------------------------------- main entry
@dataclass(frozen=True)
class Unit:
    """The tasks one network trains.

    By default one task: the decoupled method, one single-task classifier per attribute; the
    yes/no groups of one multi-label group are one attribute, so one unit (:func:`units_of_groups`).
    With ``TrainConfig.multitask``, every task of one model input (size and crop): one shared tail,
    each task reading its slice of one head (the published method's ablation arm). Both run the
    same loop; a one-task unit is exactly the single-task training.
    """

    groups: tuple[Group, ...]

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(g.task for g in self.groups)

    @property
    def name(self) -> str:
        """The task, the multi-label group (``pedestrian.upper_color``) or ``multitask:<task>,<task>,...``:
        seeds and progress derive from it."""
        if len(self.groups) == 1:
            return self.tasks[0]
        families = {(g.subject, g.family) for g in self.groups}
        if len(families) == 1 and all(g.family for g in self.groups):
            return ".".join(families.pop())
        return "multitask:" + ",".join(self.tasks)

    @property
    def slices(self) -> tuple[slice, ...]:
        """Each task's columns of the head."""
        ends = np.cumsum([len(g.classes) for g in self.groups])
        return tuple(slice(int(e - len(g.classes)), int(e)) for g, e in zip(self.groups, ends))

    @property
    def n_classes(self) -> int:
        return sum(len(g.classes) for g in self.groups)

    @property
    def ranked(self) -> bool:
        """Whether every task is a yes/no group of a multi-label group (a colour): such a group
        is only ever ranked by P(yes), never read by its argmax, so its epoch is selected by
        the average precision of that ranking (:func:`unit_score`)."""
        return all(g.family and "yes" in g.classes for g in self.groups)


def unit_score(unit: Unit, val: dict[str, dict]) -> float:
    """The selection score of one epoch: the mean over the unit's tasks of their selection mA,
    or, for a :attr:`Unit.ranked` unit, of their average precision of P(yes) (tasks whose
    selection split has no "yes" are left out). The argmax of a rare colour says "no" as the
    model grows sure, so its mA falls while its ranking improves: on peta-train's selection
    split the upper-body colours' mean mA peaked at epoch 2 of 16."""
    if unit.ranked:
        aps = [v["ap"] for v in val.values() if v.get("ap") is not None]
        if aps:
            return float(np.mean(aps))
    return float(np.mean([v["mA"] for v in val.values()]))


def units_of_groups(groups: Sequence[Group]) -> list[Unit]:
    """The default units: one per task, except that the yes/no groups of one multi-label group
    (its colours, say) are one unit: one classifier for one attribute, with a yes/no head per
    class, as a multi-label classifier is (:mod:`attrret.schema`). In order of first task."""
    units: dict[str, list[Group]] = {}
    for g in groups:
        units.setdefault(g.family or f"\0{g.task}", []).append(g)
    return [Unit(tuple(members)) for members in units.values()]


def train_tasks(config: TrainConfig, progress: bool = True, *, schema: Schema | None = None) -> list[TaskResult]:
    """Train every task of ``config.task`` (a task name, ``pedestrian``, ``vehicle`` or ``all``)
    of ``schema`` (None: the packaged one); its fingerprint and directory go into every checkpoint.
    With ``config.multitask``, the tasks of each input train as one shared network (:class:`Unit`)."""
    if not config.datasets:
        raise AttrretError("no training data given (--data DIR)")
    tune_malloc()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    prec = resolve_precision(config.precision, device)
    config = dataclasses.replace(config, precision=prec.name)  # what runs is what checkpoints record
    d = init_dist(device)
    schema = schema or load_schema()
    try:
        groups = schema.select_tasks(config.task)
    except KeyError as exc:
        raise AttrretError(str(exc.args[0])) from None

    from rich.console import Console

    console = Console(stderr=True, quiet=not (progress and d.main))

    def log(msg: str) -> None:
        console.print(msg, highlight=False, markup=False)

    log(f"precision: {prec.describe()}")

    data = load_task_data(config.datasets, groups, schema=schema, holdout=config.holdout, holdout_seed=config.holdout_seed, fold=config.fold,
                          val_fraction=config.val_fraction, seed=config.seed, skip_bad=config.skip_bad,
                          on_untrainable=log if len(groups) > 1 else None)
    groups = tuple(g for g in groups if g.task in data)
    if not groups:
        raise AttrretError(f"no trainable task in {', '.join(config.datasets)} for --task {config.task}")
    recipes = load_recipes(schema)
    # Tasks that train on the same input (size and crop) share one backbone and one trunk cache.
    by_input: dict[tuple[HW | None, str], list[Group]] = {}
    for g in groups:
        by_input.setdefault(config.task_input(recipes.task(g.task)), []).append(g)
    units_of = {key: [Unit(tuple(members))] if config.multitask else units_of_groups(members) for key, members in by_input.items()}
    if config.multitask and not any(len(u.groups) > 1 for us in units_of.values() for u in us):
        inputs = [f"{len(m)} on {hw_label(hw) if hw else 'the native size'} ({crop})" for (hw, crop), m in by_input.items()]
        raise AttrretError(f"--multitask needs two or more trainable tasks on one input; {config.task} has {', '.join(inputs)}")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[ips]:>6.0f} img/s  loss {task.fields[loss]:.3f}"), TimeRemainingColumn()]
    results: dict[str, TaskResult] = {}
    with Progress(*columns, console=console, disable=not (progress and d.main)) as prog:
        images = _cache_images(config, data, schema) if config.cache else []
        for (hw, crop), units in units_of.items():
            # A finished run (--resume, same config) needs no cache: nothing rebuilds one it will not read.
            inp = _prepare_input(config, hw, crop, images, device, d, prog, log,
                                 need_cache=lambda inp: not all(
                                     _already_trained(c, u, _resolved(c, u, inp, schema))
                                     for u in units for c in [config.for_tasks(recipes, u.tasks)]))
            for unit in units:
                # One training per task directory at a time (rank 0 writes it; the kernel frees the lock if we die).
                with contextlib.ExitStack() as locks:
                    if d.main:
                        for g in unit.groups:  # the lock lives beside the task dir: the dir keeps its layout
                            locks.enter_context(file_lock(Path(config.workdir) / "models" / f"{TASK_LOCK_PREFIX}{g.task}.lock",
                                                          waiting=f"{g.task}: waiting for another training of it", log=log))
                    for r in _train_unit(config.for_tasks(recipes, unit.tasks), unit, data, inp, device, d, prog, log, schema,
                                         all(recipes.task(t).photometric for t in unit.tasks)):
                        results[r.task] = r
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return [results[g.task] for g in groups]


@dataclass(frozen=True)
class _SharedInput:
    """What the tasks training on one model input (size and crop) share: the backbone built for
    that size, how many of its blocks train, and the trunk cache of its front (None: on the fly)."""

    backbone: Backbone
    crop: str
    n_blocks: int
    cache: FrontCache | None

    @property
    def pre(self) -> Preprocess:
        return self.backbone.preprocess


def _cache_images(config: TrainConfig, data: dict[str, TaskData], schema: Schema) -> list[str]:
    """Every image of the data set, not only this run's tasks': later runs on other tasks of the
    same data then find the same cache."""
    from attrret.data.records import load_records

    return sorted({p for td in data.values() for part in (td.train, td.val, td.holdout) for p, _ in part}
                  | {str(Path(r.path).resolve()) for root in config.datasets
                     for r in load_records(root, "all", schema=schema, skip_bad=True, decode=config.skip_bad)})


def cache_root(workdir: str | Path) -> Path:
    """Where a training keeps its trunk cache (``<root>/cache/``): the workdir, or for an extra
    ensemble member (``W/members/NAME``) the run's own workdir W, so the members of one run share
    one cache (the anchor member reads the several-dataset run's front outputs)."""
    w = Path(workdir)
    return w.parent.parent if w.parent.name == MEMBERS_DIR else w


def _prepare_input(config: TrainConfig, hw: HW | None, crop: str, images: list[str], device: torch.device, d: Dist,
                   prog, log, need_cache: Callable[[_SharedInput], bool] = lambda inp: True) -> _SharedInput:
    """Build the backbone for input size ``hw`` and open (or build) its trunk cache for ``crop``,
    unless ``need_cache`` says this input's tasks will not read it.

    Seeded afresh, so a randomly initialised front is the same whichever other inputs the run
    also trains: a task's result does not depend on the tasks trained beside it.
    """
    seed_everything(config.seed)
    backbone = create_backbone(config.backbone, weights=config.weights, pretrained=config.pretrained, img_size=hw)
    n_blocks = config.trainable_blocks
    if n_blocks is None:
        n_blocks = default_trainable_blocks(backbone.family, backbone.trunk.num_blocks)
    elif n_blocks > backbone.trunk.num_blocks:  # a typo (20 for 2) would silently train the whole trunk
        raise OptionError(f"--trainable-blocks {n_blocks}: {backbone.arch} has {backbone.trunk.num_blocks} blocks "
                          f"(give 0..{backbone.trunk.num_blocks}; {backbone.trunk.num_blocks} trains the whole trunk)")
    log(f"backbone {backbone.arch} ({backbone.family}, {backbone.weights}), input {hw_label(backbone.preprocess.hw)} px, crop {crop}, "
        f"last {n_blocks} of {backbone.trunk.num_blocks} blocks trainable, device {device} ({config.precision}), world {d.world}")
    cache = None
    if config.cache and need_cache(_SharedInput(backbone, crop, n_blocks, None)):
        proto = Classifier(backbone.trunk, backbone.feature_dim, 2, n_blocks).to(device)
        bar = prog.add_task(f"trunk cache {hw_label(backbone.preprocess.hw)} {crop}", total=len(images), ips=0.0, loss=0.0)
        t0 = time.perf_counter()

        def advance(n: int) -> None:
            done = prog.tasks[bar].completed + n
            prog.update(bar, advance=n, ips=done / max(1e-9, time.perf_counter() - t0))

        kwargs = dict(arch=backbone.arch, pre=backbone.preprocess, crop=crop, images=images, workdir=cache_root(config.workdir),
                      device=device, precision=config.precision, batch_size=config.batch_size,
                      budget_bytes=int(config.cache_budget_gb * 2**30), log=log, progress=advance)
        if d.main:
            cache = open_or_build(proto, **kwargs)
        barrier(d)
        if not d.main:
            cache = open_or_build(proto, **kwargs, build=False)
        prog.update(bar, completed=len(images))
    return _SharedInput(backbone, crop, n_blocks, cache)


@dataclass(frozen=True)
class BestEpoch:
    """The epoch kept so far: the best selection score (:func:`unit_score`: the selection-split
    mA, or a colour's average precision, averaged over the unit's tasks; every epoch beats the
    last when there is no selection split). ``val``: each task's selection
    metrics at that epoch; ``state``: that epoch's :meth:`Classifier.tail_state_dict`."""

    epoch: int = -1
    mA: float = -1.0  # the score (unit_score), mA for every unit but the ranked ones
    val: dict[str, dict] | None = None
    state: dict[str, torch.Tensor] | None = None

    def beaten_by(self, mA: float, has_val: bool) -> bool:
        return mA > self.mA or not has_val

    def snapshot(self) -> dict:
        """The ``best_*`` entries of ``last.pt``."""
        return {"best_epoch": self.epoch, "best_mA": self.mA, "best_state": self.state, "best_val": self.val}

    @classmethod
    def from_snapshot(cls, state: dict) -> BestEpoch:
        return cls(state["best_epoch"], state["best_mA"], state["best_val"], state["best_state"])


@dataclass
class _UnitRun:
    """One unit's training state, carried from epoch to epoch (and what ``last.pt`` saves).

    ``paths`` / ``labels``: the unit's training images, each once, with one label column per
    task (-1 where the image is not in that task's training split: its loss term is masked).
    """

    unit: Unit
    resolved: dict  # the config as this unit ran it
    model: Classifier
    net: torch.nn.Module  # the model, or its DDP wrapper
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    ema: torch.nn.Module | None  # torch.optim.swa_utils.AveragedModel
    weights: list[torch.Tensor | None]  # each task's class weights of the loss
    inputs: _Inputs
    paths: list[str]
    labels: np.ndarray
    origin: np.ndarray  # the dataset each row comes from (epoch_order balances them)
    steps: int  # optimiser steps per epoch
    front_hash: str
    photometric: bool = True  # the tasks' recipes: brightness/contrast jitter keeps their labels true
    next_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best: BestEpoch = BestEpoch()
    train_time: float = 0.0
    train_seen: int = 0

    @property
    def eval_model(self) -> Classifier:
        return self.ema.module if self.ema is not None else self.model


def _train_unit(config: TrainConfig, unit: Unit, data: dict[str, TaskData], inp: _SharedInput, device: torch.device, d: Dist, prog,
                log, schema: Schema, photometric: bool = True) -> list[TaskResult]:
    """resume, run the remaining epochs (saving ``last.pt`` after each), save the best epoch.
    ``config`` is the unit's own (:meth:`TrainConfig.for_tasks`): its epochs and lr, as it runs and
    records them; ``photometric``: its recipes'."""
    resolved = _resolved(config, unit, inp, schema)
    done = _already_trained(config, unit, resolved, log)
    if done is not None:
        return done
    run = _start(config, unit, data, inp, device, d, resolved, photometric)
    last_path = _task_dir(config, unit.groups[0]) / "last.pt"
    if config.resume:
        resume(run, last_path, log)
    bar = prog.add_task(f"{unit.name:<22}", total=run.steps * config.epochs, completed=run.next_epoch * run.steps, ips=0.0, loss=0.0)
    t_unit = time.perf_counter()
    for epoch in range(run.next_epoch, config.epochs):
        run_epoch(run, config, data, epoch, device, d,
                  on_step=lambda loss: prog.update(bar, advance=1, ips=run.train_seen / max(run.train_time, 1e-9), loss=loss))
        entry = run.history[-1]
        scores = ", ".join(f"{t} acc {v['accuracy']:.3f} mA {v['mA']:.3f}" for t, v in entry["val"].items())
        log(f"{unit.name}: epoch {epoch + 1}/{config.epochs} {entry['seconds']:.1f} s, loss {entry['loss']:.3f}, val {scores}")
        if d.main:
            save_last(run, last_path)
    return save_best(run, config, data, inp, device, d, schema, last_path, time.perf_counter() - t_unit)


#: ``W/members/<ANCHOR>/``: the first dataset's own member (:func:`anchor_member`).
ANCHOR_MEMBER = "anchor"


def anchor_member(config: TrainConfig, results: Sequence[TaskResult], schema: Schema) -> tuple[TrainConfig, tuple[str, ...]]:
    """The anchor member of a several-dataset training: its config and the task specs it trains.

    Every group the first dataset (the anchor) labels together with another dataset trains
    again on the anchor alone, as a second ensemble member in ``W/members/anchor/``; predict
    averages the members that have a task (:mod:`attrret.retrieval.indexer`), so those groups
    average a union model and an anchor model, and every other group is the union model alone.

    Why: a model trained on the union learns a compromise between the datasets' cameras and
    label conventions: on pa100k-mini's held split the union models ranked below pa100k-mini's
    own at each of three seeds, and the average of the two above them in official mAP@10 at
    each (``bench/clothing.py --seeds``, docs/benchmarks.md). It costs the other dataset's
    cameras what it gives the anchor's, so it is asked for. ``results``: the union training's.
    """
    first = config.datasets[0]
    shared = [schema.task(r.task) for r in results if first in r.datasets and len(r.datasets) > 1]
    member = dataclasses.replace(config, data=first, workdir=str(Path(config.workdir) / MEMBERS_DIR / ANCHOR_MEMBER))
    return member, tuple(u.name for u in units_of_groups(shared))


def train_domain_gate(config: TrainConfig, tasks: Sequence[str], *, schema: Schema | None = None, progress: bool = True) -> Path:
    """Fit the anchor member's domain gate (:mod:`attrret.classifiers.domain`) and write it beside
    the member's ``models/`` (``W/members/anchor/domain_gate.json``); returns its path.

    ``config``: the several-dataset training's (its datasets, splits and trunk cache, which this
    reuses: the front output it reads is the one the union's tasks trained on); ``tasks``: the
    anchor member's. The gate learns from the images of their subjects (every image when the
    router is among them) and reads the input (size and crop) of the first. Predict then weighs
    the anchor member, per image, by the gate's probability that the image is the first
    dataset's (:mod:`attrret.classifiers.engine`).
    """
    if len(config.datasets) < 2:
        raise AttrretError("a domain gate needs several --data: it tells the first dataset's images from the others'")
    if not tasks:
        raise AttrretError("a domain gate weighs an anchor member's tasks; none given")
    schema = schema or load_schema()
    groups = [schema.task(t) for t in tasks]
    kinds = None if any(g.task == schema.router.task for g in groups) else {g.subject for g in groups}
    device = resolve_device(config.device)
    prec = resolve_precision(config.precision, device)
    config = dataclasses.replace(config, precision=prec.name)
    hw, crop = config.task_input(load_recipes(schema).task(tasks[0]))
    train, val = load_origin_data(config.datasets, kinds, schema=schema, holdout=config.holdout,
                                  holdout_seed=config.holdout_seed, fold=config.fold, val_fraction=config.val_fraction,
                                  seed=config.seed, skip_bad=config.skip_bad)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(stderr=True, quiet=not progress)
    images = _cache_images(config, {}, schema) if config.cache else []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console, disable=not progress) as prog:
        inp = _prepare_input(config, hw, crop, images, device, Dist(), prog, lambda s: console.print(s, highlight=False, markup=False))
        front = Classifier(inp.backbone.trunk, inp.backbone.feature_dim, 2, inp.n_blocks).to(device).eval()
        inputs = _Inputs(front, inp.pre, crop, inp.cache, device, prec.name)

        def features(samples: Sequence[Sample]) -> np.ndarray:
            """Pooled front output of each image (not its mirror): cached, or computed here."""
            paths = [p for p, _ in samples]
            bar = prog.add_task("domain gate: front", total=len(paths))
            out = []
            for i in range(0, len(paths), config.batch_size):
                chunk = paths[i:i + config.batch_size]
                out.append(pooled(inputs.eval_views(chunk, flips=False)[0]).cpu().numpy())
                prog.update(bar, advance=len(chunk))
            return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

        x_train, x_val = features(train), features(val)
    y_train = np.array([k == 0 for _, k in train], np.float64)
    weight, bias = fit_logistic(x_train, y_train)
    gate = DomainGate(arch=inp.backbone.arch, front_hash=front.front_hash(), preprocess=inp.pre, cut=front.cut, crop=crop,
                      weight=tuple(map(float, weight)), bias=bias, datasets=tuple(str(Path(d).resolve()) for d in config.datasets))
    metrics = {"train_images": len(train), "val_images": len(val), "precision": prec.name,
               "train_accuracy": accuracy_by_dataset(gate.probability(x_train), [k for _, k in train], gate.datasets)}
    if len(val):
        metrics["val_accuracy"] = accuracy_by_dataset(gate.probability(x_val), [k for _, k in val], gate.datasets)
    gate = dataclasses.replace(gate, metrics=metrics)
    out = Path(config.workdir) / MEMBERS_DIR / ANCHOR_MEMBER / DOMAIN_GATE_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    gate.save(out)
    console.print(f"domain gate {out}: selection accuracy {metrics.get('val_accuracy', metrics['train_accuracy'])}",
                  highlight=False, markup=False)
    return out


def _task_dir(config: TrainConfig, group: Group) -> Path:
    return Path(config.workdir) / "models" / group.task


def _resolved(config: TrainConfig, unit: Unit, inp: _SharedInput, schema: Schema) -> dict:
    """The config as ``unit`` runs it (``config``: the unit's own, :meth:`TrainConfig.for_tasks`):
    its epochs, lr, input size and crop, whether given or from its recipe, and the schema (so
    --resume never continues or reuses a task of another schema). A multi-task unit also names
    its tasks: the network it trains depends on them."""
    out = {**config.as_dict(), "task": unit.name, "trainable_blocks": inp.n_blocks, "img_size": list(inp.pre.hw),
           "crop": inp.crop, "schema": schema.fingerprint}
    if len(unit.groups) > 1:
        out["tasks"] = list(unit.tasks)
    return out


def _already_trained(config: TrainConfig, unit: Unit, resolved: dict, log=lambda s: None) -> list[TaskResult] | None:
    """With ``--resume``, the results of a finished training of this same config (then nothing runs)."""
    if not config.resume:
        return None
    done = []
    for g in unit.groups:
        path = _task_dir(config, g) / "metrics.json"
        m = json.loads(path.read_text()) if path.is_file() else {}
        if not (m.get("complete") and _same_run(m.get("config"), resolved)):
            return None
        done.append(TaskResult(g.task, path.parent, g.classes, m["n_train"], m["n_val"], m["n_holdout"], m["best_epoch"],
                               m["val"], m.get("holdout"), m["history"], 0.0, 0.0, m.get("weights_sha256", ""), True,
                               m.get("datasets", {})))
    log(f"{unit.name}: already trained with this config, skipped (--resume)")
    return done


def _train_rows(unit: Unit, data: dict[str, TaskData], datasets: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The unit's training images, each once in first-seen order, their ``(n, tasks)`` labels
    (-1: not in that task's training split) and the dataset (an index into ``datasets``) each
    comes from. For one task: its training split as it is."""
    row: dict[str, int] = {}
    origin: list[int] = []
    for g in unit.groups:
        td = data[g.task]
        roots = list(td.counts)
        for p, _ in td.train:
            if p not in row:
                row[p] = len(row)
                origin.append(datasets.index(roots[td.origin[p]]) if roots else 0)
    labels = np.full((len(row), len(unit.groups)), -1, dtype=np.int64)
    for t, g in enumerate(unit.groups):
        for p, y in data[g.task].train:
            labels[row[p], t] = y
    return list(row), labels, np.array(origin, dtype=np.int64)


def epoch_order(rng: np.random.Generator, origin: np.ndarray, alpha: float) -> np.ndarray:
    """One epoch's draw of training rows (as many as there are), balanced across datasets:
    dataset d gets a share of the draws proportional to ``n_d ** alpha``, its rows permuted and
    cycled (or cut) to fill it, and the whole is shuffled. From one dataset: a permutation."""
    n = len(origin)
    ids = np.unique(origin)
    if len(ids) <= 1:
        return rng.permutation(n)
    sizes = np.array([np.count_nonzero(origin == d) for d in ids], np.float64)
    share = sizes**alpha / (sizes**alpha).sum() * n
    quota = np.floor(share).astype(np.int64)
    quota[np.argsort(quota - share, kind="stable")[: n - quota.sum()]] += 1  # largest remainders
    parts = [np.resize(rng.permutation(np.flatnonzero(origin == d)), q) for d, q in zip(ids, quota)]
    return rng.permutation(np.concatenate(parts))


def _start(config: TrainConfig, unit: Unit, data: dict[str, TaskData], inp: _SharedInput, device: torch.device, d: Dist,
           resolved: dict, photometric: bool = True) -> _UnitRun:
    """A fresh model (seeded per unit), optimiser, schedule, loss weights and EMA for one unit."""
    torch.manual_seed(_task_seed(config.seed, unit.name))
    backbone = inp.backbone
    model = Classifier(copy.deepcopy(backbone.trunk), backbone.feature_dim, unit.n_classes, inp.n_blocks,
                       frozen_tail_norms=config.tail_norm == "frozen").to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    net: torch.nn.Module = model
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=config.lr, weight_decay=config.weight_decay)
    paths, labels, origin = _train_rows(unit, data, config.datasets)
    steps = max(1, math.ceil(len(paths) / (config.batch_size * d.world)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(steps * config.epochs, int(round(config.warmup_epochs * steps))))
    weights = [_class_weights(data[g.task].train, len(g.classes), config.balance) for g in unit.groups]
    ema = None
    if config.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)
    return _UnitRun(
        unit=unit, resolved=resolved, photometric=photometric, model=model, net=net, opt=opt, sched=sched,
        scaler=grad_scaler(resolve_precision(config.precision, device)), ema=ema,
        weights=[w.to(device) if w is not None else None for w in weights],
        inputs=_Inputs(model, inp.pre, inp.crop, inp.cache, device, config.precision), paths=paths, labels=labels, origin=origin,
        steps=steps,
        front_hash=model.front_hash(),  # snapshots hold the tail only; resume checks they fit this front
    )


def resume(run: _UnitRun, last_path: Path, log) -> None:
    """Continue after the last finished epoch saved in ``last_path``, when it is from this same
    run and front; a damaged or foreign one is reported and training starts afresh."""
    if not last_path.is_file():
        return
    try:  # attrret wrote it; a torn one (a crash, a full disk) must not block the run
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError("not a resume state")
    except Exception as exc:  # noqa: BLE001 - torch.load raises many kinds on a torn zip
        log(f"{run.unit.name}: warning: {last_path} is damaged ({type(exc).__name__}); starting afresh")
        return
    if not (_same_run(state.get("config"), run.resolved) and state.get("front_hash") == run.front_hash):
        log(f"{run.unit.name}: {last_path} is from another config or front; starting afresh")
        return
    try:
        run.model.load_tail_state_dict(state["model"])
        run.opt.load_state_dict(state["optimizer"])
        run.sched.load_state_dict(state["scheduler"])
        if run.ema is not None and state.get("ema") is not None:
            run.ema.load_state_dict(state["ema"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise AttrretError(f"{last_path} does not fit this model ({exc}); delete it or train without --resume") from None
    run.next_epoch, run.history = state["epoch"] + 1, list(state["history"])
    run.best = BestEpoch.from_snapshot(state)
    log(f"{run.unit.name}: resumed after epoch {state['epoch'] + 1}")


def unit_loss(logits: torch.Tensor, labels: torch.Tensor, unit: Unit, weights: Sequence[torch.Tensor | None],
              label_smoothing: float) -> torch.Tensor:
    """The mean, over the tasks with a label in the batch, of each task's
    :func:`balanced_cross_entropy` on its head slice and its labelled rows (for one task: that
    task's loss). An image outside a task's training split (-1) trains no head of it."""
    terms = []
    for t, (sl, w) in enumerate(zip(unit.slices, weights)):
        known = labels[:, t] >= 0
        if bool(known.any()):
            terms.append(balanced_cross_entropy(logits[known, sl], labels[known, t], w, label_smoothing))
    return torch.stack(terms).mean()


def run_epoch(run: _UnitRun, config: TrainConfig, data: dict[str, TaskData], epoch: int, device: torch.device, d: Dist,
              on_step: Callable[[float], None] = lambda loss: None) -> None:
    """Train one epoch (every random choice from ``(seed, unit, epoch)``), evaluate it on the
    selection splits, append its history entry and keep it if it is the best so far.

    The history's ``loss`` is this rank's mean training loss over the epoch's batches.
    """
    seed = _task_seed(config.seed, run.unit.name, epoch + 1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    per_rank = config.batch_size
    order = epoch_order(rng, run.origin, config.data_alpha)
    need = run.steps * per_rank * d.world  # every rank runs the same number of equal batches
    order = np.resize(order, need) if len(order) < need else order[:need]
    shard = order[d.rank :: d.world]
    photometric = run.photometric
    run.net.train()
    t_start = t0 = time.perf_counter()
    loss_sum, loss_n = 0.0, 0
    for s in range(run.steps):
        idx = shard[s * per_rank : (s + 1) * per_rank]
        x = channels_last(run.inputs.train_batch([run.paths[i] for i in idx], rng, photometric), device)
        y = torch.from_numpy(run.labels[idx]).to(device)
        with autocast(device, config.precision):
            logits = run.net(x, from_front=True)
        loss = unit_loss(logits.float(), y, run.unit, run.weights, config.label_smoothing)
        run.opt.zero_grad(set_to_none=True)
        if run.scaler is not None:
            run.scaler.scale(loss).backward()
            run.scaler.step(run.opt)
            run.scaler.update()
        else:
            loss.backward()
            run.opt.step()
        run.sched.step()
        if run.ema is not None:
            run.ema.update_parameters(run.model)
        # Test-only (attrret.faults): killed right after the first optimiser step of epoch N,
        # a well-defined point mid-epoch with epoch N-1's last.pt on disk.
        fault_point("ATTRRET_TEST_KILL_AT_EPOCH", str(epoch + 1))
        batch_loss = float(loss.detach())
        loss_sum, loss_n = loss_sum + batch_loss * len(idx), loss_n + len(idx)
        run.train_seen += len(idx) * d.world
        now = time.perf_counter()
        run.train_time, t0 = run.train_time + (now - t0), now
        on_step(batch_loss)
    epoch_seconds = t0 - t_start
    mean_loss = loss_sum / max(1, loss_n)
    if not math.isfinite(mean_loss):
        raise AttrretError(f"{run.unit.name}: training diverged in epoch {epoch + 1} (loss is {mean_loss}); "
                           "lower --lr and train again")
    if d.world > 1:  # DDP syncs gradients; make norm statistics identical on every rank too
        import torch.distributed as dist

        for b in run.model.buffers():
            dist.broadcast(b, 0)
    val = _evaluate(run.eval_model, run.inputs, run.unit, data, "val", config)
    mean_ma = float(np.mean([v["mA"] for v in val.values()]))
    score = unit_score(run.unit, val)
    run.history.append({"epoch": epoch, "loss": mean_loss, "lr": run.sched.get_last_lr()[0], "seconds": epoch_seconds,
                        "val_mA": mean_ma, **({"val_ap": score} if run.unit.ranked else {}),
                        "val": {t: _summary(v) for t, v in val.items()}})
    if run.best.beaten_by(score, any(data[t].val for t in run.unit.tasks)):
        run.best = BestEpoch(epoch, score, val, run.eval_model.tail_state_dict())
    run.next_epoch = epoch + 1


def _split_logits(model: Classifier, inputs: _Inputs, unit: Unit, data: dict[str, TaskData], split: str,
                  config: TrainConfig) -> dict[str, np.ndarray]:
    """Per task, the float32 ``(2, n, classes)`` logits (image and flip) of its ``split`` images,
    from one pass over the union of those images (a one-task unit: its split as it is)."""
    at: dict[str, int] = {}
    for t in unit.tasks:
        for p, _ in getattr(data[t], split):
            at.setdefault(p, len(at))
    logits = _view_logits(model, inputs, [(p, 0) for p in at], config.batch_size, inputs.device, config.precision)
    return {g.task: logits[:, [at[p] for p, _ in getattr(data[g.task], split)], sl] for g, sl in zip(unit.groups, unit.slices)}


def _evaluate(model: Classifier, inputs: _Inputs, unit: Unit, data: dict[str, TaskData], split: str,
              config: TrainConfig) -> dict[str, dict]:
    """Per task, accuracy and mA on its ``split`` images (the flip-averaged softmax, as training's
    evaluation has always computed it: :func:`calibration.view_probs`), and for a
    :attr:`Unit.ranked` unit the average precision of P(yes) (``ap``, None without a yes)."""
    out = {}
    for g, logits in zip(unit.groups, _split_logits(model, inputs, unit, data, split, config).values()):
        items = getattr(data[g.task], split)
        probs = view_probs(torch.from_numpy(logits)).numpy() if items else np.zeros((0, len(g.classes)), np.float32)
        truth = np.array([y for _, y in items], dtype=int)
        out[g.task] = classification_metrics(truth, probs.argmax(1), g.classes)
        if unit.ranked:
            yes = g.index("yes")
            out[g.task]["ap"] = average_precision(truth == yes, probs[:, yes])
    return out


def save_last(run: _UnitRun, last_path: Path) -> None:
    """``last.pt``: everything ``resume`` needs to continue after this epoch, written atomically
    (under a temporary name unique to this process, renamed into place when complete)."""
    with atomic_path(last_path) as tmp:
        torch.save({"config": run.resolved, "front_hash": run.front_hash, "epoch": run.next_epoch - 1, "history": run.history,
                    "model": run.model.tail_state_dict(), "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
                    "ema": run.ema.state_dict() if run.ema is not None else None, **run.best.snapshot()}, tmp)


def _task_model(model: Classifier, unit: Unit, t: int) -> Classifier:
    """Task ``t``'s classifier: the unit's model itself for one task, else the shared trunk with
    that task's slice of the head (what predict, rank and ONNX export read unchanged)."""
    if len(unit.groups) == 1:
        return model
    own = Classifier(model.trunk, model.head.in_features, len(unit.groups[t].classes), model.trainable_blocks)
    own.to(model.head.weight.device).eval()
    with torch.no_grad():
        own.head.weight.copy_(model.head.weight[unit.slices[t]])
        own.head.bias.copy_(model.head.bias[unit.slices[t]])
    return own


def save_best(run: _UnitRun, config: TrainConfig, data: dict[str, TaskData], inp: _SharedInput, device: torch.device, d: Dist,
              schema: Schema, last_path: Path, seconds: float) -> list[TaskResult]:
    """Load the best epoch into the model, fit each task's temperature on its selection split,
    evaluate it on its holdout and (rank 0) write each task's ``model.pt``, ``config.json`` and
    ``metrics.json``, then remove ``last.pt``."""
    unit, best = run.unit, run.best
    final = run.model  # training is over: the best epoch's tail goes into the same network
    final.load_tail_state_dict(best.state)
    final.eval()
    if not all(bool(torch.isfinite(t).all()) for t in final.state_dict().values() if t.is_floating_point()):
        raise AttrretError(f"{unit.name}: the trained weights are not finite (NaN or inf); lower --lr and train again")
    inputs = _Inputs(final, inp.pre, inp.crop, inp.cache, device, config.precision)
    val_logits = _split_logits(final, inputs, unit, data, "val", config) if config.calibrate else {}
    holdout = _evaluate(final, inputs, unit, data, "holdout", config)
    ips = run.train_seen / run.train_time if run.train_time else 0.0
    results = []
    for t, g in enumerate(unit.groups):
        td = data[g.task]
        model = _task_model(final, unit, t)
        calibration = _calibration(val_logits[g.task], td.val) if config.calibrate and td.val else None
        digest = _state_digest(model)
        history = [{**h, "val": h["val"][g.task]} for h in run.history]
        metrics = {
            "task": g.task, "classes": list(g.classes), "complete": True, "best_epoch": best.epoch, "val": best.val[g.task],
            "val_source": td.val_source, "holdout": holdout[g.task] if td.holdout else None,
            "holdout_source": td.holdout_source if td.holdout else None,
            "history": history, "n_train": len(td.train), "n_val": len(td.val), "n_holdout": len(td.holdout),
            "train_seconds": run.train_time, "train_images_per_s": ips, "weights_sha256": digest, "config": run.resolved,
            "calibration": calibration, "datasets": td.counts,
        }
        if d.main:
            write_task_model(_task_dir(config, g), model, g, inp, config, schema, metrics)
        if d.world > 1:
            print(f"[rank {d.rank}/{d.world}] {g.task}: weights sha256={digest} best_epoch={best.epoch} "
                  f"val_mA={best.val[g.task]['mA']:.6f}", file=sys.stderr, flush=True)
        results.append(TaskResult(g.task, _task_dir(config, g), g.classes, len(td.train), len(td.val), len(td.holdout), best.epoch,
                                  best.val[g.task], metrics["holdout"], history, seconds, ips, digest, datasets=td.counts))
    if d.main:
        last_path.unlink(missing_ok=True)
    return results


def write_task_model(out_dir: Path, model: Classifier, group: Group, inp: _SharedInput, config: TrainConfig, schema: Schema,
                     metrics: dict) -> None:
    """Write one task's ``model.pt``, ``config.json`` and ``metrics.json`` (``metrics`` as
    :func:`save_best` builds it: best epoch, val, holdout, calibration, the resolved config)."""
    backbone, calibration, holdout = inp.backbone, metrics["calibration"], metrics["holdout"]
    front = front_record(backbone, model)
    meta = {
        "task": group.task, "subject": group.subject, "group": group.name, "classes": list(group.classes),
        "backbone": {"spec": backbone.spec, "arch": backbone.arch, "weights": backbone.weights,
                     "family": backbone.family, "feature_dim": backbone.feature_dim, "native_size": backbone.native_size},
        "preprocess": inp.pre.as_dict(), "crop": inp.crop, "trainable_blocks": model.trainable_blocks,
        "tail_norm": config.tail_norm, "precision": config.precision,  # the precision it trained in
        "cut": model.cut, **front, "schema_fingerprint": schema.fingerprint, "schema_source": schema.source,
        "temperature": calibration["temperature"] if calibration else 1.0,
        "datasets": metrics.get("datasets", {}),  # per dataset it learned from: its labels per split
        "metrics": {"best_epoch": metrics["best_epoch"], "val": _summary(metrics["val"]),
                    "holdout": _summary(holdout) if holdout else None},
        "config": metrics["config"],
    }
    # Lean (the front rebuilt from its pinned pretrained weights): the tail and head only.
    save_checkpoint(out_dir / "model.pt", meta, model.tail_state_dict() if front["front"] == FRONT_PRETRAINED else model.state_dict())
    atomic_write_text(out_dir / "config.json", json.dumps(metrics["config"], indent=2))
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2))


def _calibration(logits: np.ndarray, val: Sequence[Sample]) -> dict:
    """A task's softmax temperature fitted on its selection split's ``(2, n, classes)`` logits
    (:mod:`calibration`), with that split's NLL before and after."""
    labels = np.array([y for _, y in val])
    t = fit_temperature(logits, labels)
    return {"temperature": t, "fitted_on": len(val), "val_nll": view_nll(logits, labels), "val_nll_calibrated": view_nll(logits, labels, t)}


def _same_run(saved: dict | None, current: dict) -> bool:
    """Whether a saved config describes the same training (``resume`` itself does not count).
    A setting added to :class:`TrainConfig` after a config was saved ran at its default then."""
    if saved is None:
        return False
    ignore = {"resume"}
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
    return {k: v for k, v in saved.items() if k not in ignore} == {k: v for k, v in current.items() if k not in ignore}
