"""A single-task classifier: a trunk cut into a frozen front and a trainable tail, plus a linear head.

The cut is what makes training cheap: the front is the same pretrained network for every task,
so its output can be computed once and cached (:mod:`attrret.classifiers.cache`), and each task
only runs and trains the tail. ``forward(x, from_front=True)`` takes cached front output.

Stage indices: 0 = stem, 1..K = blocks, K+1 = post (norms, head conv, pooling, projection).
``trainable_blocks = N`` trains the last N blocks, post and head; ``N >= K`` trains everything
(stem included, nothing to cache but the resized image); ``N = 0`` trains the linear head only.
"""

from __future__ import annotations

import copy
import hashlib

import torch
from torch import nn

from attrret.classifiers.trunks import Trunk

__all__ = ["Classifier", "cut_for", "hash_tensor"]


def cut_for(num_blocks: int, trainable_blocks: int) -> int:
    """Index of the first trainable stage (everything before it is the frozen front)."""
    if trainable_blocks < 0:
        raise ValueError("trainable_blocks must be >= 0")
    if trainable_blocks >= num_blocks:
        return 0
    if trainable_blocks == 0:
        return num_blocks + 2
    return 1 + num_blocks - trainable_blocks


def hash_tensor(h: hashlib._Hash, name: str, t: torch.Tensor) -> None:
    """Feed ``name`` and ``t``'s raw bytes to ``h``: any dtype (bf16 included, read as bytes), any device."""
    h.update(name.encode())
    h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


class Classifier(nn.Module):
    def __init__(self, trunk: Trunk, feature_dim: int, n_classes: int, trainable_blocks: int, *,
                 frozen_tail_norms: bool = False) -> None:
        """``frozen_tail_norms``: the tail's BatchNorms become fixed affine maps (see
        :meth:`Trunk.freeze_norms`; this modifies ``trunk``, so pass a copy if it is shared)."""
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(feature_dim, n_classes)
        self.trainable_blocks = trainable_blocks
        self.num_blocks = trunk.num_blocks
        self.cut = cut_for(self.num_blocks, trainable_blocks)
        if frozen_tail_norms:
            trunk.freeze_norms(self.tail_modules())
        self._freeze()

    # -- structure -----------------------------------------------------------------------------
    def _stage(self, s: int, x: torch.Tensor) -> torch.Tensor:
        if s == 0:
            return self.trunk.stem(x)
        if s <= self.num_blocks:
            return self.trunk.block(s - 1, x)
        return self.trunk.post(x)

    def frozen_modules(self) -> list[nn.Module]:
        """Modules of the front: kept in eval mode (norm statistics frozen) and without gradients."""
        mods: list[nn.Module] = []
        if self.cut >= 1:
            mods += self.trunk.stem_parameters_and_modules()[1]
        mods += self.trunk.blocks()[: max(0, min(self.cut - 1, self.num_blocks))]
        if self.cut == self.num_blocks + 2:
            mods += self.trunk.post_modules()
        return mods

    def tail_modules(self) -> list[nn.Module]:
        """Modules after the cut (the ones that train), head excluded."""
        mods: list[nn.Module] = []
        if self.cut == 0:
            mods += self.trunk.stem_parameters_and_modules()[1]
        mods += self.trunk.blocks()[max(0, self.cut - 1):]
        if self.cut <= self.num_blocks + 1:
            mods += self.trunk.post_modules()
        return mods

    def _frozen_loose_parameters(self) -> list[nn.Parameter]:
        return self.trunk.stem_parameters_and_modules()[0] if self.cut >= 1 else []

    def _freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(True)
        for m in self.frozen_modules():
            for p in m.parameters():
                p.requires_grad_(False)
        for p in self._frozen_loose_parameters():
            p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        for m in self.frozen_modules():
            m.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def tail_keys(self) -> set[str]:
        """State-dict keys that training can change: tail and head parameters and buffers."""
        frozen = {id(t) for m in self.frozen_modules() for t in m.state_dict(keep_vars=True).values()}
        frozen |= {id(p) for p in self._frozen_loose_parameters()}
        return {k for k, v in self.state_dict(keep_vars=True).items() if id(v) not in frozen}

    def tail_state_dict(self) -> dict[str, torch.Tensor]:
        """Detached CPU copies of the tail and head entries only.

        What per-epoch snapshots (``last.pt``, the best epoch) need: the front is the pretrained
        network itself, rebuilt from the backbone, so copying and writing its 10+ MB every epoch
        of every task only cost time (a fifth of a small task's wall time, measured).
        """
        keys = self.tail_keys()
        return {k: v.detach().cpu().clone() for k, v in self.state_dict().items() if k in keys}

    def load_tail_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load a :meth:`tail_state_dict`; the keys must be exactly this model's tail keys."""
        keys = self.tail_keys()
        if set(state) != keys:
            missing, extra = sorted(keys - set(state)), sorted(set(state) - keys)
            raise ValueError(f"not a tail state of this model (missing {missing[:3]}, unexpected {extra[:3]})")
        self.load_state_dict(state, strict=False)

    def share_front(self) -> "Classifier":
        """A copy that shares this model's front tensors (the same objects: no memory, the same
        front hash) and owns copies of its tail and head, for another task on the same front.

        Why: predict runs several tasks behind one front, and each task's tail must be its own
        module. Loading each task's weights into one shared module in turn is wrong under
        autocast, which caches the low-precision copy of every weight for a whole region: the
        second task would run the first task's cached tail.
        """
        memo: dict[int, object] = {id(t): t for m in self.frozen_modules() for t in (*m.parameters(), *m.buffers())}
        # the front's modules themselves too (they hold nothing a task changes): copying their
        # structure was half the time of building 16 tasks' models
        memo.update({id(sub): sub for m in self.frozen_modules() for sub in m.modules()})
        memo.update({id(p): p for p in self._frozen_loose_parameters()})
        return copy.deepcopy(self, memo)

    # -- compute -------------------------------------------------------------------------------
    def front(self, x: torch.Tensor) -> torch.Tensor:
        for s in range(self.cut):
            x = self._stage(s, x)
        return x

    def features(self, x: torch.Tensor, from_front: bool = False) -> torch.Tensor:
        """The pooled features the head reads (the tail's output)."""
        if not from_front:
            x = self.front(x)
        for s in range(self.cut, self.num_blocks + 2):
            x = self._stage(s, x)
        return x

    def forward(self, x: torch.Tensor, from_front: bool = False) -> torch.Tensor:
        return self.head(self.features(x, from_front))

    def front_hash(self) -> str:
        """Hash of every tensor the front depends on: equal hash => identical front output."""
        return self.front_sha256()[:20]

    def front_sha256(self) -> str:
        """The full sha256 that :meth:`front_hash` abbreviates (recorded in lean checkpoints)."""
        h = hashlib.sha256(f"cut={self.cut}".encode())
        seen: set[int] = set()
        tensors: list[tuple[str, torch.Tensor]] = []
        for i, m in enumerate(self.frozen_modules()):
            for name, t in m.state_dict().items():
                tensors.append((f"{i}.{name}", t))
        for i, p in enumerate(self._frozen_loose_parameters()):
            tensors.append((f"loose{i}", p.data))
        for name, t in tensors:
            if id(t) in seen:
                continue
            seen.add(id(t))
            hash_tensor(h, name, t)
        return h.hexdigest()
