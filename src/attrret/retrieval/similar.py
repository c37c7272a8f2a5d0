"""Find similar: rank the gallery by how close each image's predictions are to an example's.

The maths. For an example with predicted distributions ``e_g`` (one per attribute group ``g``
of its kind, or the groups named) and an image with ``p_g``, the distance is the squared
Euclidean distance between the two, summed over the groups::

    d(e, p) = Σ_g Σ_k (e_gk − p_gk)²  =  Σ e²  −  2 Σ e·p  +  Σ p²

which is the ranker's Euclidean product form ``const + U·p + V·p²`` with a *soft target*: ``U =
−2e``, ``V = 1`` on the groups' columns, ``const = Σ e²`` (``e`` renormalised in float64 to sum
to one: :func:`example_target`) (:mod:`attrret.retrieval.ranker`, whose
soft prior targets are the same thing). So find-similar is one more query of the same exact
top-K scan, on every backend, with the same filters and the same tie-break by name. The
example's own row is at distance 0, so it is found first; it is put first explicitly, so an
image with identical predictions and an earlier name cannot displace it.

Only images of the example's kind (the router's argmax) are ranked, as for a text query.

A text query combined with an example (``--like NAME "but with a backpack"``): the groups the
text states (values, negations, either-or sets) replace the example's targets for those groups;
the other groups keep the example's distributions. The example then need not come first: it
is ranked like any image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from attrret.retrieval.index import Index
from attrret.retrieval.ranker import QueryPlan
from attrret.schema import SUBJECTS, Schema

__all__ = ["example_kind", "similar_plan", "example_target"]


def example_target(probs: np.ndarray, index: Index, task: str) -> tuple[float, ...]:
    """The example's distribution over ``task``'s classes, in float64, normalised to sum to one
    (the stored float32 one sums to one within rounding). Why: a target that sums to exactly one
    lets the scan fold the group's squares into its columns, the layout of every text query, so
    find-similar shares their prepared gallery instead of preparing its own per example."""
    p = np.asarray(probs, np.float64)[index.cols(task)]
    return tuple(float(x) for x in p / p.sum())


def example_kind(index: Index, probs: np.ndarray, schema: Schema) -> str | None:
    """The kind the router gives the example's probability row (None without a router column)."""
    task = schema.router.task
    if not index.has(task):
        return None
    return SUBJECTS[int(np.asarray(probs)[index.cols(task)].argmax())]


def similar_plan(index: Index, probs: np.ndarray, kind: str, schema: Schema, groups: Sequence[str] | None = None,
                 text: QueryPlan | None = None) -> QueryPlan:
    """The plan that ranks by distance to the example row ``probs`` (module doc) over ``groups``
    of ``kind`` (None: every group the index has), the groups ``text`` states replaced by it."""
    subject = schema.subject(kind)
    have = [g for g in subject.groups if index.has(g.task)]
    if groups:
        unknown = [g for g in groups if g not in subject.group_names]
        if unknown:
            raise ValueError(f"unknown {kind} group {unknown[0]!r}; use some of {', '.join(subject.group_names)}")
        have = [g for g in have if g.name in set(groups)]
    stated = set() if text is None else set(text.enforced) | set(text.allowed)
    targets = {g.name: example_target(probs, index, g.task) for g in have if g.name not in stated}
    if text is None:
        return QueryPlan(kind, {}, targets)
    return QueryPlan(kind, text.enforced, targets, (), text.missing, text.allowed)
