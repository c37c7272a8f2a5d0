"""Per-task temperature scaling (Guo et al., 2017), fitted on the selection split.

Why. The ranker compares predicted probabilities with the caption's 0/1 targets, so a
classifier that is right but timid (label smoothing, class weighting and a frozen trunk all
flatten the softmax) scores every image alike, and one that is overconfident lets its mistakes
dominate the distance. One scalar per task, ``softmax(logits / T)``, fixes the scale without
changing the argmax of a single view.

The fit minimises the negative log-likelihood of the probabilities predict will actually
produce: the softmax of each view (the image and its flip) divided by ``T``, averaged over the
views. That is not convex in ``T`` in general, so the search is a grid over ``log T`` refined by
golden-section search around the best grid point: deterministic, no optimiser state, and
``T = 1`` is always a candidate, so the fitted temperature never raises the NLL on the data it
was fitted on.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

__all__ = ["TEMPERATURE_RANGE", "fit_temperature", "float32_region", "view_nll", "view_probs"]

#: The temperatures searched (log-spaced): beyond them a task is either a hard argmax or noise.
TEMPERATURE_RANGE = (0.05, 20.0)
_GRID = 49
_GOLDEN_STEPS = 40


def view_probs(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The probabilities attrret reports: ``mean_v softmax(logits[v] / T)``, always in float32.

    ``logits`` is ``(views, n, classes)`` (the image and its flip, or one view) in any floating
    dtype; the division, softmax and mean run in float32 whatever autocast region is active, so
    a bf16 or fp16 model hands float32 probabilities to NumPy. The one definition of the
    post-processing: training's evaluation, calibration's target, predict and export use it.
    """
    with float32_region(logits.device.type):
        return (logits.float() / float(temperature)).softmax(-1).mean(0)


def float32_region(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast switched off inside an autocast region, else nothing: an exported graph (traced
    outside autocast) then holds no autocast node, whose generated names differ from one export
    to the next (an export must be byte-identical for indexes to stay fresh)."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def view_nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``mean_v softmax(logits[v] / T)``.

    ``logits`` is ``(views, n, classes)``; ``labels`` holds class indices, shape ``(n,)``.
    """
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    p_true = p.mean(axis=0)[np.arange(len(labels)), labels]
    return float(-np.log(np.maximum(p_true, 1e-12)).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in :data:`TEMPERATURE_RANGE` minimising :func:`view_nll` (module doc).

    With no samples there is nothing to fit and the answer is 1.0.
    """
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.int64)
    if logits.ndim != 3 or logits.shape[1] != len(labels):
        raise ValueError(f"logits must be (views, n, classes) with n = {len(labels)}, got {logits.shape}")
    if len(labels) == 0:
        return 1.0
    lo, hi = (math.log(t) for t in TEMPERATURE_RANGE)
    grid = np.linspace(lo, hi, _GRID)
    losses = [view_nll(logits, labels, math.exp(g)) for g in grid]
    i = int(np.argmin(losses))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, _GRID - 1)]
    f = lambda g: view_nll(logits, labels, math.exp(g))  # noqa: E731
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(_GOLDEN_STEPS):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
    candidates = [(losses[i], grid[i]), (fc, c), (fd, d), (f(0.0), 0.0)]
    best = min(candidates, key=lambda t: (t[0], abs(t[1])))  # ties: the temperature closest to 1
    return float(math.exp(best[1]))
