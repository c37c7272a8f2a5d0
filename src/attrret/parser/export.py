"""A parsed caption as the JSON object ``attrret parse`` writes, optionally with its code.

The code is the label encoding of the caption's known values (stated + implied): the
21-bit Track-2 string for pedestrians, the attribute text ("white Audi.") for vehicles. A
caption need not fix every group (form A hides the sleeve), so unknown bits are written as
``?`` rather than guessed: ``"1,0,1,0,0,0,1,1,0,0,0,0,0,?,?,?,?,?,?,1,?"``. With every group
known the string equals the label file's attribute field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrret.parser.query import Query
from attrret.schema import Schema, Subject
from attrret.schema.codes import values_to_vehicle_text

__all__ = ["code21_text", "query_record"]


def code21_text(values: Mapping[str, str], subject: Subject) -> str:
    """21-bit Track-2 code of partial ``values``, ``?`` for the bits of unknown groups."""
    bits: list[str] = ["?"] * int(subject.code_bits or 0)
    for g in subject.groups:
        if g.name not in values:
            continue
        i = g.index(values[g.name])
        if len(g.bits) == 1 and g.size == 2:
            bits[g.bits[0]] = "1" if i == 0 else "0"
        else:
            for j, b in enumerate(g.bits):
                bits[b] = "1" if j == i else "0"
    return ",".join(bits)


def query_record(q: Query, schema: Schema, *, with_code: bool = False) -> dict[str, Any]:
    """``q.to_json()``, plus ``code21`` (pedestrian) or ``attribute`` (vehicle) on request."""
    rec = q.to_json()
    if with_code:
        known = q.known(use_implied=True)
        if q.kind == "pedestrian":
            rec["code21"] = code21_text(known, schema.pedestrian)
        elif q.kind == "vehicle":
            rec["attribute"] = values_to_vehicle_text(known, schema) if known else None
    return rec
