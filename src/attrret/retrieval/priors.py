"""Hidden priors: soft targets for groups every image has but the caption hides.

A Track-2 form-A caption ("She is wearning a hat,glasses.") says nothing of sleeve, upper
pattern or skirt, yet every pedestrian has a sleeve length. Rather than ignore such a group,
the ranker can pull it towards ``P(class | what the caption states)`` estimated on training
labels, so an image whose classifier is confident about an unlikely value ranks lower.

Estimation (kept simple on purpose): condition on the query's stated values of a few
groups, in priority order ``gender, coat, hat, glasses, age``; if fewer than ``min_support``
training images match, drop the last conditioning group and retry (back-off down to the
marginal). Counts are smoothed with ``alpha`` per class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from attrret.schema import Subject

__all__ = ["HiddenPriors", "DEFAULT_CONDITION"]

DEFAULT_CONDITION = ("gender", "coat", "hat", "glasses", "age")


@dataclass(frozen=True)
class HiddenPriors:
    """Class-index table of complete training labels of one subject, queried with back-off."""

    subject: Subject
    table: np.ndarray  # (n, n_groups) int16 class indices, -1 = unknown
    condition: tuple[str, ...] = DEFAULT_CONDITION
    min_support: int = 30
    alpha: float = 1.0
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def known(self) -> frozenset[str]:
        """The groups some training label knows: only they get a prior (a group no label knows,
        such as hair in Track-2 data, would get a uniform target, which is no knowledge)."""
        hit = self._cache.get("known")
        if hit is None:
            hit = self._cache["known"] = frozenset(g for j, g in enumerate(self.subject.group_names)
                                                   if (self.table[:, j] >= 0).any())
        return hit

    @classmethod
    def from_values(cls, values: Sequence[Mapping[str, str]], subject: Subject, **kw) -> HiddenPriors:
        """Build from ``{group: class}`` label dicts (unknown groups absent)."""
        names = subject.group_names
        table = np.full((len(values), len(names)), -1, dtype=np.int16)
        for r, v in enumerate(values):
            for j, g in enumerate(names):
                if g in v:
                    table[r, j] = subject.group(g).index(v[g])
        if not len(values):
            raise ValueError("hidden priors need at least one training label")
        cond = tuple(g for g in kw.pop("condition", DEFAULT_CONDITION) if g in names)
        return cls(subject, table, cond, **kw)

    def target(self, group: str, stated: Mapping[str, str]) -> tuple[np.ndarray, tuple[tuple[str, str], ...]]:
        """Soft target over ``group``'s classes given ``stated``, and the conditions actually used."""
        names = self.subject.group_names
        cond = [(g, stated[g]) for g in self.condition if g in stated and g != group]
        gj = names.index(group)
        size = self.subject.group(group).size
        while True:
            key = (group, tuple(cond))
            if key in self._cache:
                return self._cache[key], key[1]
            rows = self.table[:, gj] >= 0
            for g, cls in cond:
                rows &= self.table[:, names.index(g)] == self.subject.group(g).index(cls)
            if rows.sum() >= self.min_support or not cond:
                counts = np.bincount(self.table[rows, gj], minlength=size).astype(np.float64)
                dist = (counts + self.alpha) / (counts.sum() + self.alpha * size)
                self._cache[key] = dist  # memo of a pure function of frozen data
                return dist, key[1]
            cond = cond[:-1]
