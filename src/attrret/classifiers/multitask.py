"""One multi-task classifier: a shared trunk tail with every group's head, the ablation's other arm.

Why. attrret trains one model per attribute, as the published decoupled method does; that
method's ablation compares it with one network whose trunk all heads share. This module trains
that alternative on exactly the single-task protocol, so ``bench/accuracy.py`` can put the two
side by side (and, with ``trainable_blocks`` covering the whole trunk, full fine-tuning, which
is affordable for one shared model where it is not for twelve):

- each task keeps its own training, selection and holdout images (:func:`load_task_data`); an
  image trains a head only when it is in that task's training split (the loss is masked), so
  incomplete labels (vehicles-mini) and per-task selection splits need nothing special;
- the loss is the mean over the tasks present in a batch of each task's
  :func:`balanced_cross_entropy` (class weights, label smoothing as configured);
- the kept epoch is the one with the best mean selection-split mA; each task then fits its own
  temperature on its selection split;
- the result is written as ordinary per-task checkpoints (the shared tail plus that task's
  slice of the head, :func:`write_task_model`), so predict, rank and ONNX export read it
  unchanged. Every checkpoint's config says ``"multitask": [tasks]``.

Single process, no ``--resume``: this is a measurement tool, not a second training path.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from attrret.classifiers.data import TaskData, load_task_data
from attrret.classifiers.preprocess import channels_last
from attrret.classifiers.metrics import classification_metrics
from attrret.classifiers.recipes import load_recipes
from attrret.classifiers.model import Classifier
from attrret.classifiers.calibration import fit_temperature, view_nll, view_probs
from attrret.classifiers.runtime import Dist, autocast, grad_scaler, resolve_device, resolve_precision, tune_malloc
from attrret.classifiers.train import (
    TaskResult,
    TrainConfig,
    _cache_images,
    _class_weights,
    _Inputs,
    _lr_lambda,
    _prepare_input,
    _state_digest,
    _summary,
    _task_seed,
    _view_logits,
    balanced_cross_entropy,
    write_task_model,
)
from attrret.errors import AttrretError
from attrret.schema import Schema, load_schema

__all__ = ["train_multitask"]


def train_multitask(config: TrainConfig, *, schema: Schema | None = None,
                    log: Callable[[str], None] = lambda s: None) -> list[TaskResult]:
    """Train one shared classifier for every task of ``config.task`` and write one checkpoint
    per task under ``config.workdir/models/`` (see the module doc)."""
    from rich.progress import Progress

    tune_malloc()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = resolve_device(config.device)
    prec = resolve_precision(config.precision, device)
    config = dataclasses.replace(config, precision=prec.name)  # what runs is what checkpoints record
    log(f"precision: {prec.describe()}")
    d = Dist()
    schema = schema or load_schema()
    groups = schema.select_tasks(config.task)
    data = load_task_data(config.data, groups, schema=schema, holdout=config.holdout, holdout_seed=config.holdout_seed,
                          fold=config.fold, val_fraction=config.val_fraction, seed=config.seed, skip_bad=config.skip_bad,
                          on_untrainable=log)
    groups = tuple(g for g in groups if g.task in data)
    if len(groups) < 2:
        raise AttrretError(f"a multi-task model needs two or more trainable tasks; {config.task} has {len(groups)}")
    recipes = [load_recipes(schema).task(g.task) for g in groups]
    inputs_of = {config.task_input(r) for r in recipes}
    if len(inputs_of) != 1:
        raise AttrretError(f"a multi-task model needs one input size and crop for every task; {config.task} has {sorted(map(str, inputs_of))}")
    (hw, crop), = inputs_of
    config = dataclasses.replace(config, epochs=max(config.task_epochs(r) for r in recipes),
                                 lr=max(config.task_lr(r) for r in recipes))
    with Progress(disable=True) as prog:
        inp = _prepare_input(config, hw, crop, _cache_images(config, data, schema) if config.cache else [], device, d, prog, log)
    tasks = [g.task for g in groups]
    sizes = [len(g.classes) for g in groups]
    starts = np.cumsum([0, *sizes])
    slices = [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]

    # One label row per training image: the class of each task whose training split holds it, else -1.
    train_paths = sorted({p for g in groups for p, _ in data[g.task].train})
    row = {p: i for i, p in enumerate(train_paths)}
    labels = np.full((len(train_paths), len(groups)), -1, dtype=np.int64)
    for t, g in enumerate(groups):
        for p, y in data[g.task].train:
            labels[row[p], t] = y

    torch.manual_seed(_task_seed(config.seed, "multitask:" + ",".join(tasks)))
    backbone = inp.backbone
    model = Classifier(copy.deepcopy(backbone.trunk), backbone.feature_dim, int(starts[-1]), inp.n_blocks,
                       frozen_tail_norms=config.tail_norm == "frozen").to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = max(1, math.ceil(len(train_paths) / config.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(steps * config.epochs, int(round(config.warmup_epochs * steps))))
    weights = [_class_weights(data[g.task].train, n, config.balance) for g, n in zip(groups, sizes)]
    weights = [w.to(device) if w is not None else None for w in weights]
    scaler = grad_scaler(prec)
    inputs = _Inputs(model, inp.pre, inp.crop, inp.cache, device, config.precision)
    photometric = all(r.photometric for r in recipes)
    resolved = {**config.as_dict(), "task": config.task, "trainable_blocks": inp.n_blocks, "img_size": list(inp.pre.hw),
                "crop": inp.crop, "schema": schema.fingerprint, "multitask": tasks}

    history: list[dict] = []
    best: tuple[float, int, dict, dict] | None = None  # (mean val mA, epoch, per-task val metrics, tail state)
    t_train, seen = 0.0, 0
    for epoch in range(config.epochs):
        seed = _task_seed(config.seed, "multitask", epoch + 1)
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(train_paths))
        model.train()
        t0 = time.perf_counter()
        loss_sum = 0.0
        for s in range(steps):
            idx = order[s * config.batch_size : (s + 1) * config.batch_size]
            if len(idx) == 0:
                continue
            x = channels_last(inputs.train_batch([train_paths[i] for i in idx], rng, photometric), device)
            y = torch.from_numpy(labels[idx]).to(device)
            with autocast(device, prec):
                logits = model(x, from_front=True)
            logits = logits.float()
            terms = [balanced_cross_entropy(logits[y[:, t] >= 0, sl], y[y[:, t] >= 0, t], w, config.label_smoothing)
                     for t, (sl, w) in enumerate(zip(slices, weights)) if bool((y[:, t] >= 0).any())]
            loss = torch.stack(terms).mean()
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            seen += len(idx)
        seconds = time.perf_counter() - t0
        t_train += seconds
        mean_loss = loss_sum / len(train_paths)
        if not math.isfinite(mean_loss):
            raise AttrretError(f"multi-task {config.task}: training diverged in epoch {epoch + 1}; lower --lr")
        val = _split_metrics(model, inputs, data, groups, slices, "val", config, device)
        mean_ma = float(np.mean([v["mA"] for v in val.values()])) if val else float(epoch)
        history.append({"epoch": epoch, "loss": mean_loss, "lr": sched.get_last_lr()[0], "seconds": seconds,
                        "val_mean_mA": mean_ma, "val": {t: _summary(v) for t, v in val.items()}})
        log(f"multi-task {config.task}: epoch {epoch + 1}/{config.epochs} {seconds:.1f} s, loss {mean_loss:.3f}, mean val mA {mean_ma:.3f}")
        if best is None or mean_ma > best[0]:
            best = (mean_ma, epoch, val, model.tail_state_dict())

    assert best is not None
    _, best_epoch, best_val, state = best
    model.load_tail_state_dict(state)
    model.eval()
    holdout = _split_metrics(model, inputs, data, groups, slices, "holdout", config, device)
    logits_val = _split_logits(model, inputs, data, groups, slices, "val", config, device)
    ips = seen / t_train if t_train else 0.0
    results = []
    for t, g in enumerate(groups):
        td = data[g.task]
        head = Classifier(model.trunk, backbone.feature_dim, sizes[t], inp.n_blocks).to(device)
        with torch.no_grad():
            head.head.weight.copy_(model.head.weight[slices[t]])
            head.head.bias.copy_(model.head.bias[slices[t]])
        calibration = None
        if config.calibrate and td.val:
            lv, yv = logits_val[g.task], np.array([y for _, y in td.val])
            temp = fit_temperature(lv, yv)
            calibration = {"temperature": temp, "fitted_on": len(td.val), "val_nll": view_nll(lv, yv),
                           "val_nll_calibrated": view_nll(lv, yv, temp)}
        digest = _state_digest(head)
        metrics = {
            "task": g.task, "classes": list(g.classes), "complete": True, "best_epoch": best_epoch, "val": best_val.get(g.task),
            "val_source": td.val_source, "holdout": holdout.get(g.task), "holdout_source": td.holdout_source if td.holdout else None,
            "history": history, "n_train": len(td.train), "n_val": len(td.val), "n_holdout": len(td.holdout),
            "train_seconds": t_train, "train_images_per_s": ips, "weights_sha256": digest, "config": resolved,
            "calibration": calibration,
        }
        out_dir = Path(config.workdir) / "models" / g.task
        out_dir.mkdir(parents=True, exist_ok=True)
        write_task_model(out_dir, head, g, inp, config, schema, metrics)
        results.append(TaskResult(g.task, out_dir, g.classes, len(td.train), len(td.val), len(td.holdout), best_epoch,
                                  best_val.get(g.task), holdout.get(g.task), history, t_train, ips, digest))
    return results


def _split_logits(model: Classifier, inputs: _Inputs, data: dict[str, TaskData], groups, slices, split: str,
                  config: TrainConfig, device: torch.device) -> dict[str, np.ndarray]:
    """Per task, the ``(2, n, classes)`` logits of its ``split`` images (image and flip), from
    one pass over the union of those images."""
    paths = sorted({p for g in groups for p, _ in getattr(data[g.task], split)})
    if not paths:
        return {}
    at = {p: i for i, p in enumerate(paths)}
    logits = _view_logits(model, inputs, [(p, 0) for p in paths], config.batch_size, device, config.precision)
    out = {}
    for g, sl in zip(groups, slices):
        items = getattr(data[g.task], split)
        if items:
            out[g.task] = logits[:, [at[p] for p, _ in items], sl]
    return out


def _split_metrics(model: Classifier, inputs: _Inputs, data: dict[str, TaskData], groups, slices, split: str,
                   config: TrainConfig, device: torch.device) -> dict[str, dict]:
    """Per task, accuracy and mA on its ``split`` images (the flip-averaged softmax, as predict)."""
    out = {}
    for task, lv in _split_logits(model, inputs, data, groups, slices, split, config, device).items():
        g = next(g for g in groups if g.task == task)
        probs = view_probs(torch.from_numpy(lv)).numpy()
        truth = np.array([y for _, y in getattr(data[task], split)])
        out[task] = classification_metrics(truth, probs.argmax(1), g.classes)
    return out
