"""Track-2 relevance: which test images answer the caption of a query image.

Vehicles: same colour, brand and type. Pedestrians: same gender bit, and the candidate has
every bit that is 1 in the query image's 21-bit code ("inclusion" matching), including bits
the caption does not state. The groups outside the code that the synthetic caption states
(``said``, from :func:`attrret.data.captions.clothing_sentence`: garment colours, lower type,
hair) extend the code with one bit per yes/no group and class, read by the same rule: a
candidate's top has at least the colours the caption names (a black-and-white top answers "a
black top"), and the lower type and hair it names. The query image is always relevant to itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from attrret.schema import Schema, load_schema
from attrret.schema.codes import values_to_code21

__all__ = ["relevant_sets"]


def relevant_sets(items: Sequence[tuple[str, Mapping[str, str]]], schema: Schema | None = None,
                  said: Sequence[Mapping[str, str]] | None = None) -> list[list[int]]:
    """For each ``(kind, full values)`` item, the indices of relevant items (in input order);
    ``said[i]``: the values outside the code item i's caption states (None: none)."""
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
        base = [values_to_code21(items[i][1], schema.pedestrian) for i in ped]
        codes = np.array([b + _clothing_bits(items[i][1], schema) for b, i in zip(base, ped)], dtype=np.int32)
        asked = np.array([b + _clothing_bits(said[i] if said else {}, schema) for b, i in zip(base, ped)], dtype=np.int32)
        ones = asked.sum(1)
        # candidate j covers query i iff asked[i] . codes[j] == ones[i]; gender equal adds bit 0 = 0 case
        cover = (asked @ codes.T) == ones[:, None]
        same_gender = codes[:, 0][:, None] == codes[:, 0][None, :]
        rel = cover & same_gender
        for a, i in enumerate(ped):
            out[i] = [int(ped[b]) for b in np.flatnonzero(rel[a])]
    return out


def _clothing_bits(values: Mapping[str, str], schema: Schema) -> tuple[int, ...]:
    """The groups outside the code as bits, in schema order: 1 per yes of a multi-label group's
    class, one-hot for the others; a group ``values`` leaves out gives 0 bits (no requirement)."""
    bits: list[int] = []
    for g in schema.pedestrian.groups:
        if g.bits:
            continue
        if g.name not in values:
            bits += [0] if g.family else [0] * g.size
            continue
        bits += [int(values[g.name] == "yes")] if g.family else [int(values[g.name] == c) for c in g.classes]
    return tuple(bits)
