"""Conversions between the label encodings attrret meets.

- the 21-bit Track-2 pedestrian code  <->  named values  <->  the 30-column one-hot code;
- the vehicle attribute text of Track-2 label files ("white Audi.", "Truck.",
  "Balong Heavy Truck.", "red Balong Heavy Truck Truck.")  <->  named values.

Named values are ``{group: class}`` dicts; a group that is absent is unknown.
All encodings are derived from the schema's ``bits`` and class order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from attrret.schema import Group, Schema, Subject

__all__ = [
    "CodeError",
    "parse_code21",
    "code21_to_values",
    "values_to_code21",
    "decode_groups",
    "values_to_onehot",
    "onehot_to_values",
    "vehicle_text_to_values",
    "values_to_vehicle_text",
]


class CodeError(ValueError):
    """A label that does not follow the schema (wrong length, non-binary, impossible bits)."""


def parse_code21(text: str, subject: Subject) -> tuple[int, ...]:
    """Parse ``"1,0,1,..."`` into bits, checking length and that every bit is 0 or 1."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != subject.code_bits:
        raise CodeError(f"code has {len(parts)} fields, expected {subject.code_bits}")
    if any(p not in ("0", "1") for p in parts):
        bad = next(p for p in parts if p not in ("0", "1"))
        raise CodeError(f"code field {bad!r} is not 0 or 1")
    return tuple(int(p) for p in parts)


def _group_from_bits(g: Group, bits: Sequence[int]) -> str:
    on = [i for i, b in enumerate(g.bits) if bits[b]]
    if len(g.bits) == 1 and g.size == 2:
        return g.classes[0] if on else g.classes[1]
    if len(on) > 1:
        raise CodeError(f"{g.name}: more than one of bits {list(g.bits)} is set")
    if not on:
        if len(g.bits) == g.size:
            raise CodeError(f"{g.name}: exactly one of bits {list(g.bits)} must be set")
        return g.classes[-1]
    return g.classes[on[0]]


def code21_to_values(bits: Sequence[int] | str, subject: Subject) -> dict[str, str]:
    """Decode a Track-2 pedestrian code into ``{group: class}`` for every group the code holds
    (a custom schema's group without ``bits`` is not in the code: it stays unknown)."""
    if isinstance(bits, str):
        bits = parse_code21(bits, subject)
    if len(bits) != subject.code_bits:
        raise CodeError(f"code has {len(bits)} bits, expected {subject.code_bits}")
    return {g.name: _group_from_bits(g, bits) for g in subject.groups if g.bits}


def decode_groups(bits: Sequence[int], subject: Subject) -> tuple[dict[str, str], list[str]]:
    """Like :func:`code21_to_values`, but a group whose bits break its rule (two one-hot bits set,
    none where one is required) is returned among the invalid group names instead of raising:
    an importer keeps the rest of the image's labels and leaves that group unknown."""
    values, invalid = {}, []
    for g in subject.groups:
        if not g.bits:  # not in the code: unknown
            continue
        try:
            values[g.name] = _group_from_bits(g, bits)
        except CodeError:
            invalid.append(g.name)
    return values, invalid


def values_to_code21(values: Mapping[str, str], subject: Subject) -> tuple[int, ...]:
    """Encode complete named values into the Track-2 code (every group with bits must be given;
    groups without bits are not in the code and are left out)."""
    extra = sorted(set(values) - set(subject.group_names))
    if extra:  # a misspelt group would otherwise be dropped silently
        raise CodeError(f"not {subject.name} groups: {', '.join(extra)}")
    bits = [0] * subject.code_bits
    for g in subject.groups:
        if not g.bits:
            continue
        if g.name not in values:
            raise CodeError(f"{g.name} is unknown: a code needs every group")
        i = g.index(values[g.name])
        if len(g.bits) == 1 and g.size == 2:
            bits[g.bits[0]] = int(i == 0)
        elif i < len(g.bits):
            bits[g.bits[i]] = 1
    return tuple(bits)


def values_to_onehot(values: Mapping[str, str], subject: Subject) -> tuple[np.ndarray, np.ndarray]:
    """One-hot code over the subject's columns, and a 0/1 mask of the columns of known groups."""
    code = np.zeros(subject.width, dtype=np.float32)
    mask = np.zeros(subject.width, dtype=np.float32)
    for name, cls in values.items():
        g = subject.group(name)
        cols = subject.columns(name)
        code[cols.start + g.index(cls)] = 1.0
        mask[cols] = 1.0
    return code, mask


def onehot_to_values(code: np.ndarray, subject: Subject, mask: np.ndarray | None = None) -> dict[str, str]:
    """Inverse of :func:`values_to_onehot` (argmax per group; masked-out groups are omitted)."""
    code = np.asarray(code)
    if code.shape != (subject.width,):
        raise CodeError(f"one-hot code has shape {code.shape}, expected ({subject.width},)")
    out = {}
    for g in subject.groups:
        cols = subject.columns(g.name)
        if mask is not None and not np.asarray(mask)[cols].any():
            continue
        out[g.name] = g.classes[int(np.argmax(code[cols]))]
    return out


def vehicle_text_to_values(text: str, schema: Schema) -> dict[str, str]:
    """Parse a Track-2 vehicle attribute ("white Audi.", "Truck.", "red Balong Heavy Truck Truck.").

    Grammar: ``[colour] [brand] [type].`` with at least one part. The brand is matched as the
    longest vocabulary entry, so "Balong Heavy Truck" is a brand and a trailing "Truck" after
    it is the type. Spelling must be exact (it is label data, not free text).
    """
    v = schema.vehicle
    colors, types, brands = (set(v.group(n).classes) for n in ("color", "type", "brand"))
    rest = text.strip()
    if rest.endswith("."):
        rest = rest[:-1].rstrip()
    if not rest:
        raise CodeError("empty vehicle attribute")
    out: dict[str, str] = {}
    head, _, tail = rest.partition(" ")
    if head in colors:
        out["color"], rest = head, tail.strip()
    if not rest:
        return out
    if rest in brands:
        out["brand"] = rest
        return out
    if rest in types:
        out["type"] = rest
        return out
    brand_part, _, last = rest.rpartition(" ")
    if last in types and brand_part in brands:
        out["brand"], out["type"] = brand_part, last
        return out
    raise CodeError(f"unknown vehicle attribute {text.strip()!r} (not [colour] [brand] [type] of the vocabulary)")


def values_to_vehicle_text(values: Mapping[str, str], schema: Schema) -> str:
    """Inverse of :func:`vehicle_text_to_values`: ``colour brand type.`` with absent parts left out."""
    v = schema.vehicle
    parts = []
    for name in ("color", "brand", "type"):
        if name in values:
            v.group(name).index(values[name])  # validates
            parts.append(values[name])
    if not parts:
        raise CodeError("no vehicle attribute to write")
    return " ".join(parts) + "."
