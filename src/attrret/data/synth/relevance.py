"""Track-2 relevance: which test images answer the caption of a query image.

Vehicles: same colour, brand and type. Pedestrians: same gender bit, and the candidate has
every bit that is 1 in the query image's 21-bit code ("inclusion" matching), including bits
the caption does not state. The query image is always relevant to itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from attrret.schema import Schema, load_schema
from attrret.schema.codes import values_to_code21

__all__ = ["relevant_sets"]


def relevant_sets(items: Sequence[tuple[str, Mapping[str, str]]], schema: Schema | None = None) -> list[list[int]]:
    """For each ``(kind, full values)`` item, the indices of relevant items (in input order)."""
    schema = schema or load_schema()
    kinds = np.array([k for k, _ in items])
    out: list[list[int]] = [[] for _ in items]
    veh = np.flatnonzero(kinds == "vehicle")
    keys: dict[tuple[str, str, str], list[int]] = {}
    for i in veh:
        v = items[i][1]
        keys.setdefault((v["color"], v["brand"], v["type"]), []).append(int(i))
    for i in veh:
        v = items[i][1]
        out[i] = keys[(v["color"], v["brand"], v["type"])]
    ped = np.flatnonzero(kinds == "pedestrian")
    if len(ped):
        codes = np.array([values_to_code21(items[i][1], schema.pedestrian) for i in ped], dtype=np.int32)
        ones = codes.sum(1)
        # candidate j covers query i iff codes[i] . codes[j] == ones[i]; gender equal adds bit 0 = 0 case
        cover = (codes @ codes.T) == ones[:, None]
        same_gender = codes[:, 0][:, None] == codes[:, 0][None, :]
        rel = cover & same_gender
        for a, i in enumerate(ped):
            out[i] = [int(ped[b]) for b in np.flatnonzero(rel[a])]
    return out
