"""Retrieval metrics: the organisers' mAP@10 (quirks included), a sound mAP@10, and R@K.

Official Track-2 score (the organisers' script): walk each query's returned list; at every
hit ``hits += 1`` and ``ap += hits / rank``; then ``ap /= hits`` (0 when nothing was hit);
mAP is the mean over queries. Two quirks are reproduced on purpose:

- it divides by the hits FOUND, not by the number of relevant images, so 1 hit at rank 1
  followed by 9 misses scores a perfect 1.0;
- it does not de-duplicate names, so returning the same relevant image twice counts twice.

The sound mAP@K divides by ``min(K, number relevant)`` and counts a repeated name once, so
it cannot be gamed by short or repetitive lists. R@K is 1 when any of the first K results
is relevant. Every list is cut to its first K entries.

Relevance comes either from the organisers' ``test_gt.txt`` (explicit lists) or from full
labels by the Track-2 rules (:class:`LabelRelevance`): pedestrians are relevant when the
gender bit is equal and the candidate has every 1-bit of the query image's code (superset);
vehicles when colour, brand and type are all equal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = [
    "official_ap",
    "sound_ap",
    "recall_at",
    "Relevance",
    "SetRelevance",
    "LabelRelevance",
    "PartialRelevance",
    "Scores",
    "evaluate_lists",
    "label_keys",
]

RECALL_KS = (1, 5, 10)


def official_ap(names: Sequence[str], is_relevant: Callable[[str], bool], k: int = 10) -> float:
    """The organisers' AP of one returned list (divides by hits found; duplicates count)."""
    hits, ap = 0, 0.0
    for rank, name in enumerate(names[:k], start=1):
        if is_relevant(name):
            hits += 1
            ap += hits / rank
    return ap / hits if hits else 0.0


def sound_ap(names: Sequence[str], is_relevant: Callable[[str], bool], n_relevant: int, k: int = 10) -> float:
    """AP@k divided by ``min(k, n_relevant)``; a repeated name is a miss the second time."""
    if n_relevant <= 0:
        return 0.0
    hits, ap, seen = 0, 0.0, set()
    for rank, name in enumerate(names[:k], start=1):
        if name in seen:
            continue
        seen.add(name)
        if is_relevant(name):
            hits += 1
            ap += hits / rank
    return ap / min(k, n_relevant)


def recall_at(names: Sequence[str], is_relevant: Callable[[str], bool], k: int) -> float:
    """1.0 when any of the first ``k`` names is relevant."""
    return float(any(is_relevant(n) for n in names[:k]))


class Relevance(Protocol):
    """Relevance of gallery images to query ``j`` (queries in submission order)."""

    def __len__(self) -> int: ...

    def is_relevant(self, j: int, name: str) -> bool: ...

    def n_relevant(self, j: int) -> int: ...

    def text(self, j: int) -> str: ...


@dataclass(frozen=True)
class SetRelevance:
    """Relevance given as explicit name lists (the organisers' ``test_gt.txt``)."""

    rows: tuple[tuple[str, frozenset[str]], ...]

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[str, Sequence[str]]]) -> SetRelevance:
        return cls(tuple((text, frozenset(names)) for text, names in rows))

    def __len__(self) -> int:
        return len(self.rows)

    def is_relevant(self, j: int, name: str) -> bool:
        return name in self.rows[j][1]

    def n_relevant(self, j: int) -> int:
        return len(self.rows[j][1])

    def text(self, j: int) -> str:
        return self.rows[j][0]


class LabelRelevance:
    """Relevance derived from complete labels by the Track-2 rules.

    Query ``j`` is the caption of line ``j``; its query image is that line's image. Codes are
    packed into integers once, so a relevance test is one AND, and relevant counts are cached
    per distinct code (a test set has far fewer codes than lines).
    """

    def __init__(self, images: Sequence[str], kinds: Sequence[str], captions: Sequence[str], keys: Sequence[tuple]) -> None:
        """``keys[i]``: for pedestrians ``("p", gender_bit, packed_bits)``; vehicles ``("v", colour, brand, type)``."""
        if not (len(images) == len(kinds) == len(captions) == len(keys)):
            raise ValueError("images, kinds, captions and keys must have the same length")
        self.images = tuple(images)
        self.kinds = tuple(kinds)
        self.captions = tuple(captions)
        self.keys = tuple(keys)
        self._by_name = {name: key for name, key in zip(self.images, self.keys)}
        ped = [k for k in self.keys if k[0] == "p"]
        self._ped_gender = np.array([k[1] for k in ped], dtype=np.int64)
        self._ped_bits = np.array([k[2] for k in ped], dtype=np.int64)
        self._veh_counts: dict[tuple, int] = {}
        for k in self.keys:
            if k[0] == "v":
                self._veh_counts[k] = self._veh_counts.get(k, 0) + 1
        self._count_cache: dict[tuple, int] = {}

    @staticmethod
    def relevant_key(query: tuple, candidate: tuple) -> bool:
        """The Track-2 rule on two keys (query image's, candidate's)."""
        if query[0] != candidate[0]:
            return False
        if query[0] == "p":
            return query[1] == candidate[1] and (candidate[2] & query[2]) == query[2]
        return query == candidate

    def __len__(self) -> int:
        return len(self.images)

    def is_relevant(self, j: int, name: str) -> bool:
        cand = self._by_name.get(name)
        return cand is not None and self.relevant_key(self.keys[j], cand)

    def n_relevant(self, j: int) -> int:
        key = self.keys[j]
        if key[0] == "v":
            return self._veh_counts[key]
        if key not in self._count_cache:
            ok = (self._ped_gender == key[1]) & ((self._ped_bits & key[2]) == key[2])
            self._count_cache[key] = int(ok.sum())
        return self._count_cache[key]

    def text(self, j: int) -> str:
        return self.captions[j]


class PartialRelevance:
    """Relevance from incomplete labels (vehicles-mini, Track-2's own training vehicles): each
    query states some groups' values, each image knows some groups' values.

    An image is *judged* for a query when its labels settle every group the query states;
    it is relevant when, besides, each stated value equals the image's. Unjudged images are
    neither hits nor misses: :func:`evaluate_lists` drops them from a list before cutting it
    at k (:meth:`is_judged`), as TREC-style evaluation of incomplete judgements does.
    """

    def __init__(self, texts: Sequence[str], stated: Sequence[Mapping[str, str]], images: Sequence[str],
                 labels: Sequence[Mapping[str, str]]) -> None:
        if len(texts) != len(stated) or len(images) != len(labels):
            raise ValueError("one stated mapping per query text and one label mapping per image")
        self.texts, self.stated = tuple(texts), tuple(dict(s) for s in stated)
        self.labels = {name: dict(v) for name, v in zip(images, labels)}
        self._n = [sum(self._relevant(s, v) for v in self.labels.values()) for s in self.stated]
        self._judged = [sum(self._judges(s, v) for v in self.labels.values()) for s in self.stated]

    @staticmethod
    def _judges(stated: Mapping, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` settle every group the query constrains (a subclass with other
        constraints than ``{group: class}`` overrides this and :meth:`_relevant`)."""
        return all(g in labels for g in stated)

    @staticmethod
    def _relevant(stated: Mapping, labels: Mapping[str, str]) -> bool:
        return bool(stated) and all(labels.get(g) == c for g, c in stated.items())

    def __len__(self) -> int:
        return len(self.texts)

    def is_judged(self, j: int, name: str) -> bool:
        labels = self.labels.get(name)
        return labels is not None and self._judges(self.stated[j], labels)

    def is_relevant(self, j: int, name: str) -> bool:
        labels = self.labels.get(name)
        return labels is not None and self._relevant(self.stated[j], labels)

    def n_relevant(self, j: int) -> int:
        return self._n[j]

    def n_judged(self, j: int) -> int:
        """How many labelled images query ``j`` can judge: a list that keeps fewer than
        ``min(k, n_judged)`` of them after the drop was cut too early."""
        return self._judged[j]

    def text(self, j: int) -> str:
        return self.texts[j]


@dataclass(frozen=True)
class Scores:
    """Mean metrics over a set of queries."""

    n: int
    official_map: float
    sound_map: float
    recall: dict[int, float]

    def to_json(self) -> dict:
        return {
            "n": self.n,
            "official_map@10": self.official_map,
            "sound_map@10": self.sound_map,
            **{f"R@{k}": v for k, v in self.recall.items()},
        }


def evaluate_lists(
    lists: Sequence[Sequence[str]],
    relevance: Relevance,
    kinds: Sequence[str | None],
    k: int = 10,
) -> dict[str, Scores]:
    """Score ``lists[j]`` against query ``j``; returns ``{"all": ..., "pedestrian": ..., "vehicle": ...}``.

    Kinds with no query are left out; a query of unknown kind counts in "all" only. With a
    relevance that has ``is_judged`` (:class:`PartialRelevance`), unjudged names are dropped
    from each list before it is cut at ``k``, so those lists must be ranked deeper than ``k``
    (the whole gallery is safe): a list that keeps fewer than ``k`` judged names while the
    gallery holds more is refused, because scoring it would count the dropped places as misses.
    """
    if len(lists) != len(relevance):
        raise ValueError(f"{len(lists)} result lists for {len(relevance)} queries")
    judged = getattr(relevance, "is_judged", None)
    per: list[tuple[str | None, float, float, dict[int, float]]] = []
    for j, names in enumerate(lists):
        if judged is not None:
            kept = [n for n in names if judged(j, n)]
            if len(kept) < min(k, relevance.n_judged(j)) and len(kept) < len(names):
                raise ValueError(
                    f"query {j} ({relevance.text(j)!r}): {len(names) - len(kept)} of its {len(names)} results are "
                    f"unjudged and only {len(kept)} judged remain, fewer than k = {k}; rank deeper than k "
                    "(the whole gallery) so unjudged images are dropped before the cut"
                )
            names = kept
        rel = lambda n, j=j: relevance.is_relevant(j, n)  # noqa: E731
        per.append(
            (
                kinds[j],
                official_ap(names, rel, k),
                sound_ap(names, rel, relevance.n_relevant(j), k),
                {r: recall_at(names, rel, r) for r in RECALL_KS},
            )
        )
    out: dict[str, Scores] = {}
    for group in ("all", "pedestrian", "vehicle"):
        rows = [p for p in per if group == "all" or p[0] == group]
        if not rows:
            continue
        out[group] = Scores(
            n=len(rows),
            official_map=float(np.mean([r[1] for r in rows])),
            sound_map=float(np.mean([r[2] for r in rows])),
            recall={r: float(np.mean([row[3][r] for row in rows])) for r in RECALL_KS},
        )
    return out


def label_keys(values: Sequence[Mapping[str, str]], kinds: Sequence[str], schema) -> list[tuple]:
    """Relevance keys of labelled images (see :class:`LabelRelevance`)."""
    from attrret.schema.codes import values_to_code21

    keys: list[tuple] = []
    for v, kind in zip(values, kinds):
        if kind == "pedestrian":
            bits = values_to_code21(v, schema.pedestrian)
            packed = sum(b << i for i, b in enumerate(bits))
            keys.append(("p", bits[0], packed))
        else:
            keys.append(("v", v.get("color"), v.get("brand"), v.get("type")))
    return keys
