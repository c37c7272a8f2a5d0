"""The domain gate: how much an image looks like it comes from one dataset's cameras.

A model trained on several datasets learns a compromise between their cameras and label
conventions. On pa100k-mini's held split the pa100k-mini + peta-train models of the Track-2
groups both datasets label ranked below pa100k-mini's own at each of three seeds; averaged with
pa100k-mini's own models (the anchor member, :func:`attrret.classifiers.train.anchor_member`) they
ranked above, but that average cost PETA's cameras as much as it gave PA-100K's
(``bench/clothing.py --seeds``, docs/benchmarks.md). So the anchor member should speak where its
dataset's cameras are and fall silent elsewhere: per image, the ensemble weighs it by the
probability that the image comes from the anchor dataset.

That probability is this gate: a logistic regression on the globally average-pooled output of
the frozen front of the trunk (the features the trunk cache already holds, so fitting costs
seconds), fitted on every dataset's training split with the anchor dataset as the positive class,
class-balanced (a small dataset is not outvoted), on standardised features with a small L2
penalty, by L-BFGS in float64. Its accuracy on each dataset's selection split is recorded. The
datasets' cameras differ in resolution, colour and viewpoint, which the front's channel means
separate (99.5% on a random fifth of pa100k-mini + peta-train held out of the fit).

At predict (:mod:`attrret.classifiers.engine`) a gated member's weight for an image is its
weight times the gate's probability, the mean of the gate's logits over the views (image and
mirror) through the sigmoid; each row's weights are normalised over the members that have the
task. An image from neither dataset gets the weight the gate gives it: the gate was not trained
to say "neither", which is why ``attrret train`` adds a gated member beside an ungated one.

Stored as ``domain_gate.json`` (:data:`attrret.ensemble.DOMAIN_GATE_FILE`) beside the member's
``models/``: the front it reads (architecture, front hash, preprocessing, cut, crop), the weights,
the datasets and the measured accuracies, as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from attrret.errors import CheckpointError
from attrret.geometry import Preprocess
from attrret.io import atomic_write_text

__all__ = ["GATE_FLOOR", "DomainGate", "DomainGateHead", "fit_logistic", "pooled", "GATE_FORMAT"]

GATE_FORMAT = 1
#: The least probability a gate gives (:class:`DomainGateHead`): a row whose members are all
#: gated, each near 0, still has weight (a gated member alone is its own models), and no
#: ensemble's weights change by more than this where an ungated member is present.
GATE_FLOOR = 1e-6


def pooled(feats: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Front output ``(n, C, H, W)`` -> its channel means ``(n, C)`` (what the gate reads)."""
    return feats.mean((2, 3)) if isinstance(feats, torch.Tensor) else np.asarray(feats, np.float32).mean((2, 3))


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-3, max_iter: int = 200) -> tuple[np.ndarray, float]:
    """``(weight, bias)`` of ``P(y=1 | x) = sigmoid(x @ weight + bias)``, class-balanced, on
    standardised features (folded back into ``weight`` and ``bias``) with an L2 penalty ``l2``.

    Raises ``ValueError`` unless ``y`` holds both classes."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 2 or len(x) != len(y) or not ((y == 0) | (y == 1)).all():
        raise ValueError(f"need x (n, d) and 0/1 labels y (n,), got {x.shape} and {y.shape}")
    pos = float(y.mean()) if len(y) else 0.0
    if not 0 < pos < 1:
        raise ValueError("the gate needs images of both the anchor dataset and the others")
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy((x - mu) / sd)
    yt = torch.from_numpy(y)
    cw = torch.from_numpy(np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos)))
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        z = xt @ w + b
        loss = (cw * nn.functional.binary_cross_entropy_with_logits(z, yt, reduction="none")).mean() + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_raw = w.detach().numpy() / sd
    return w_raw.astype(np.float64), float(b.detach()) - float(w_raw @ mu)


@dataclass(frozen=True)
class DomainGate:
    """A fitted gate (module doc): the front it reads and ``P(anchor | pooled front) =
    sigmoid(pooled @ weight + bias)``. ``datasets[0]`` is the anchor."""

    arch: str
    front_hash: str
    preprocess: Preprocess
    cut: int
    crop: str
    weight: tuple[float, ...]
    bias: float
    datasets: tuple[str, ...]
    metrics: dict = field(default_factory=dict)

    def front_key(self) -> tuple:
        """What a checkpoint's front must match (:func:`attrret.classifiers.engine.group_key`'s first five)."""
        return (self.arch, self.front_hash, self.preprocess, self.cut, self.crop)

    def probability(self, pooled_feats: np.ndarray) -> np.ndarray:
        """``P(anchor)`` of pooled front features ``(n, C)``, in float64 (what the fit measures)."""
        z = np.asarray(pooled_feats, np.float64) @ np.asarray(self.weight) + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def save(self, path: str | Path) -> None:
        doc = {"format": GATE_FORMAT, **asdict(self), "preprocess": self.preprocess.as_dict()}
        atomic_write_text(path, json.dumps(doc, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> DomainGate:
        """Read ``path``; a file that is not a gate of this format is a :class:`CheckpointError`."""
        try:
            doc = json.loads(Path(path).read_text())
            if doc.get("format") != GATE_FORMAT:
                raise ValueError(f"format {doc.get('format')!r}, this attrret reads {GATE_FORMAT}")
            gate = cls(arch=str(doc["arch"]), front_hash=str(doc["front_hash"]), preprocess=Preprocess.from_dict(doc["preprocess"]),
                       cut=int(doc["cut"]), crop=str(doc["crop"]), weight=tuple(float(v) for v in doc["weight"]),
                       bias=float(doc["bias"]), datasets=tuple(doc["datasets"]), metrics=dict(doc.get("metrics", {})))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{path}: not a readable domain gate ({type(exc).__name__}: {exc})") from None
        if not np.isfinite(gate.weight).all() or not np.isfinite(gate.bias):
            raise CheckpointError(f"{path}: non-finite domain gate weights; retrain the anchor member")
        return gate


class DomainGateHead(nn.Module):
    """The gate in the engine: front output of ``views`` stacked views -> ``float32[n, 1]``
    probabilities (at least :data:`GATE_FLOOR`), in float32 whatever precision the front ran in."""

    def __init__(self, gate: DomainGate) -> None:
        super().__init__()
        self.register_buffer("weight", torch.tensor(gate.weight, dtype=torch.float32))
        self.register_buffer("bias", torch.tensor(gate.bias, dtype=torch.float32))

    def forward(self, feats: torch.Tensor, views: int) -> torch.Tensor:
        z = pooled(feats.float()) @ self.weight + self.bias
        return torch.sigmoid(z.reshape(views, -1).mean(0)).clamp_min(GATE_FLOOR).unsqueeze(1)


def accuracy_by_dataset(prob: np.ndarray, origin: Sequence[int], datasets: Sequence[str]) -> dict[str, float]:
    """Per dataset, the share of its images the gate puts on the right side of 0.5."""
    origin = np.asarray(origin)
    out = {}
    for k, name in enumerate(datasets):
        mine = origin == k
        if mine.any():
            right = prob[mine] >= 0.5 if k == 0 else prob[mine] < 0.5
            out[name] = round(float(right.mean()), 4)
    return out
