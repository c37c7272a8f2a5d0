"""Contrastive training of the CLIP baseline, on cached front features, within a time budget.

A flat loop in the nanoGPT spirit: shuffle, take a batch, random flip view, symmetric InfoNCE
(or the KL loss with attribute-equal positives), AdamW, optional EMA of the weights. The
learning rate warms up, then follows a cosine whose progress is whichever runs out first,
the step count or the wall-clock budget, so a budget-limited run still ends on a low rate.

The budget never stops a run before its first step: it is checked before every step but the
first, so even a budget that the caller already spent (on caching the front features, which
``train_clip`` counts in it) yields a model trained for one step, never an untrained one.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from attrret.baseline.config import ClipConfig
from attrret.baseline.model import ClipModel
from attrret.classifiers.runtime import autocast

__all__ = ["TrainHistory", "clip_loss", "kl_positive_loss", "positive_mask", "train_contrastive", "Ema"]


@dataclass(frozen=True)
class TrainHistory:
    """What training did: losses per epoch, steps, and where the wall time went."""

    epoch_losses: tuple[float, ...]
    first_losses: tuple[float, ...]  # the first steps' losses (a fresh model's level)
    steps: int
    epochs_done: float
    train_seconds: float
    stopped_by: str  # "epochs" | "time_budget"
    extra: dict = field(default_factory=dict)


def clip_loss(logits: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric cross-entropy: image i matches caption i, every other pair is a negative."""
    target = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def positive_mask(keys: Sequence[Hashable]) -> torch.Tensor:
    """``bool[B,B]``: True where two captions describe equal attribute values."""
    ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    codes = torch.tensor([ids[k] for k in keys])
    return codes[:, None] == codes[None, :]


def kl_positive_loss(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """KL divergence to soft targets spread uniformly over attribute-equal pairs, both directions.

    Standard CLIP pushes apart two images whose captions say the same thing ("This is a white
    Audi." twice in a batch); the CLIP fine-tuning report of the challenge treats them as
    positives instead. ``positives`` must be symmetric with a true diagonal.
    """
    target = positives.float()
    target = target / target.sum(dim=1, keepdim=True)
    i2t = F.kl_div(F.log_softmax(logits, dim=1), target, reduction="batchmean")
    t2i = F.kl_div(F.log_softmax(logits.t(), dim=1), target, reduction="batchmean")
    return (i2t + t2i) / 2


class Ema:
    """Exponential moving average of a model's trainable weights (buffers copied as they are)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))  # warm start: early averages follow the weights
        for e, p in zip(self.model.parameters(), model.parameters()):
            if p.requires_grad:
                e.lerp_(p.detach(), 1 - d)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)


def _param_groups(model: ClipModel, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "embedding" in name or name == "logit_scale":
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_contrastive(
    model: ClipModel,
    features: torch.Tensor,
    tokens: torch.Tensor,
    keys: Sequence[Hashable],
    config: ClipConfig,
    *,
    started: float | None = None,
    progress: Callable[[int, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[ClipModel, TrainHistory]:
    """Train on ``features[N,V,...]`` (cached front output), ``tokens[N,L]`` and attribute ``keys``.

    ``started`` is the ``clock()`` reading at which the budget began (the caller counts the
    feature caching in it; default: now); returns the model to rank with (the EMA copy with
    ``config.ema``). ``clock`` is read once before each step (the budget check and the cosine's
    time progress share that reading) and once at the end; tests pass a fake one.

    At least one step always runs: ``config.time_budget`` is checked before every step but the
    first, so a budget spent before training began stops the run after exactly one step
    (``stopped_by == "time_budget"``, ``steps == 1``), taken at the schedule's start rate (the
    cosine's time progress counts from step 1 on, or that step would run at a zero rate).
    """
    started = clock() if started is None else started
    n = features.shape[0]
    if n < 2:
        raise ValueError("need at least 2 training pairs for a contrastive loss")
    batch = min(config.batch_size, n)
    steps_per_epoch = max(1, n // batch)
    total_steps = steps_per_epoch * config.epochs
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.98), eps=1e-6)
    ema = Ema(model, config.ema_decay) if config.ema else None
    key_codes = positive_mask(keys) if config.kl_positives else None

    def lr_at(step: int, elapsed: float) -> float:
        if step < config.warmup_steps:
            return config.lr * (step + 1) / config.warmup_steps
        progress_steps = step / total_steps
        progress_time = elapsed / config.time_budget if config.time_budget and step > 0 else 0.0
        p = min(1.0, max(progress_steps, progress_time))
        return config.lr * 0.5 * (1 + math.cos(math.pi * p))

    model.train()
    epoch_losses: list[float] = []
    first_losses: list[float] = []
    step, stopped_by = 0, "epochs"
    for epoch in range(config.epochs):
        order = torch.randperm(n, generator=gen)
        running, count = 0.0, 0
        for b in range(steps_per_epoch):
            elapsed = clock() - started
            if step > 0 and config.time_budget and elapsed >= config.time_budget:  # step 0 always runs
                stopped_by = "time_budget"
                break
            idx = order[b * batch : (b + 1) * batch]
            view = torch.randint(features.shape[1], (len(idx),), generator=gen) if config.flip_train else torch.zeros(len(idx), dtype=torch.long)
            x = features[idx, view].float()
            for g in opt.param_groups:
                g["lr"] = lr_at(step, elapsed)
            with autocast(torch.device("cpu"), config.precision):
                img = model.encode_image(x)
                txt = model.encode_text(tokens[idx])
            img, txt = img.float(), txt.float()  # the similarity and the loss in float32
            logits = model.scale() * img @ txt.t()
            if key_codes is not None:
                loss = kl_positive_loss(logits, key_codes[idx][:, idx])
            else:
                loss = clip_loss(logits)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update(model, step)
            step += 1
            running += loss.item()
            count += 1
            if len(first_losses) < 5:
                first_losses.append(loss.item())
        if count:
            epoch_losses.append(running / count)
            if progress:
                progress(epoch + 1, epoch_losses[-1])
        if stopped_by == "time_budget":
            break
    model.eval()
    history = TrainHistory(
        epoch_losses=tuple(epoch_losses),
        first_losses=tuple(first_losses),
        steps=step,
        epochs_done=step / steps_per_epoch,
        train_seconds=clock() - started,
        stopped_by=stopped_by,
    )
    return (ema.model if ema is not None else model), history
