"""Track-2 caption WRITER: attribute values -> a caption in the organisers' grammar.

The synthetic benchmark needs captions that a model trained on real Track-2 text would
recognise, so the phrasing variants, their joiners and the real typos ("wearning",
"longcoat", "shoulderbag", no space after ",") are copied from the grammar in
``docs/track2.md`` and checked against the 1,300 real pedestrian captions of
``val_sample.txt`` (tests/data/test_captions.py). What is *written* follows the grammar's
rules, not the values: at most one carry clause (handbag > shoulder bag > backpack >
holds), and form A ("wearning ...") hides sleeve, upper pattern and skirt. "boots" is not
in attrret's schema, so it is never written.

Each caption is built as a sequence of slots with alternatives; :func:`pedestrian_caption`
picks one alternative per slot with the caller's RNG and
:func:`all_pedestrian_captions` enumerates every caption the grammar allows for the values
(used by tests to check real captions are reachable).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from attrret.schema import Schema, family_labels, load_schema, member_name
from attrret.schema.codes import values_to_vehicle_text

__all__ = ["pedestrian_caption", "known_pedestrian_caption", "all_pedestrian_captions", "clothing_sentence", "vehicle_caption",
           "vehicle_prefixes"]

_SUBJECT = {
    "female": (
        "A female pedestrian is someone who walks on foot, is",
        "A female pedestrian who is",
        "A pedestrian who is female is",
        "A walking woman who is",
    ),
    "male": (
        "A male pedestrian is someone who walks on foot, is",
        "A male pedestrian who is",
        "A pedestrian who is male is",
        "A walking man who is",
    ),
}
_AGE = {
    "18-60": ("between 18 and 60 years old", "an adult person aged 18-60"),
    "under18": ("age 18 or younger", "less than 18 years old", "not an adult", "a minor"),
    "over60": ("an elderly person over 60 years old", "aged 60 or older", "at least 60 years old", "aged over 60"),
}
_ORIENT = {
    "front": "with {pos} body facing the camera",
    "side": "and is standing sideways",
    "back": "with {pos} body back to the camera",
}
_HANDBAG = ("with a handbag", "carrying a handbag", "holding a handbag", "clutching a handbag")
_SHOULDER = ("with a shoulderbag", "is carrying a shoulder bag", "has a shoulderbag", "has a bag over the shoulder")
_BACKPACK = ("with a backpack", "carrying a backpack")
_HOLDS = ("holds objects in front",)
_SLEEVE = {
    "short": ("a short sleeve shirt", "a tee shirt with short sleeves", "a shirt with short sleeves"),
    "long": ("a long sleeve shirt", "a tee shirt with long sleeves", "a shirt with long sleeves"),
}
_UPPER = {
    "stripe": ("an upper stripe",),
    "logo": ("a logo on the upper", "an upper logo"),
    "plaid": ("an upper plaid", "a plaid on the upper"),
    "splice": ("an upper splice", "a splice on the upper"),
}
_SKIRT = ("in a skirt or dress", "wearing skirt or dress")
_COAT = ("a longcoat", "a coat that is long")


def _carry(values: Mapping[str, str]) -> tuple[str, ...] | None:
    """The one carry clause the grammar writes (priority handbag > shoulder > backpack > holds)."""
    if values["handbag"] == "yes":
        return _HANDBAG
    if values["bag"] == "shoulder":
        return _SHOULDER
    if values["bag"] == "backpack":
        return _BACKPACK
    if values["holding"] == "yes":
        return _HOLDS
    return None


def _pedestrian_slots(values: Mapping[str, str]) -> list[tuple[str, ...]]:
    """The caption as a list of slots, each a tuple of alternatives; joined they form the text."""
    missing = [g for g in _GROUPS if g not in values]
    if missing:
        raise ValueError(f"a pedestrian caption needs every group; missing: {', '.join(missing)}")
    female = values["gender"] == "female"
    pos, pron = ("her", "She") if female else ("his", "He")
    slots: list[tuple[str, ...]] = [
        _SUBJECT[values["gender"]],
        (" ",),
        _AGE[values["age"]],
        (", " + _ORIENT[values["orientation"]].format(pos=pos),),
    ]
    carry = _carry(values)
    if carry:
        slots += [(" and ",), carry]
    slots.append((f". {pron} is ",))
    worn: list[tuple[str, ...]] = []
    if values["hat"] == "yes":
        worn.append(("a hat",))
    if values["glasses"] == "yes":
        worn.append(("glasses",))
    if values["coat"] == "yes":
        worn.append(_COAT)
    if worn:  # form A: sleeve, upper and skirt are not stated
        slots.append(("wearning ",))
        for i, item in enumerate(worn):
            if i:
                slots.append((",",))
            slots.append(item)
    else:  # form B
        slots += [("in ",), _SLEEVE[values["sleeve"]]]
        if values["upper"] != "none":
            slots += [(" with ",), _UPPER[values["upper"]]]
        if values["skirt"] == "yes":
            slots += [(" and ",), _SKIRT]
    slots.append((".",))
    return slots


def pedestrian_caption(values: Mapping[str, str], rng: np.random.Generator) -> str:
    """A Track-2 pedestrian caption for complete pedestrian values, phrasing drawn with ``rng``."""
    return "".join(alts[int(rng.integers(len(alts)))] if len(alts) > 1 else alts[0] for alts in _pedestrian_slots(values))


_GROUPS = ("gender", "age", "orientation", "hat", "glasses", "handbag", "bag", "holding", "sleeve", "upper", "coat", "skirt")
_BARE_SUBJECT = {"female": ("A female pedestrian", "A walking woman"), "male": ("A male pedestrian", "A walking man")}


def _known_slots(values: Mapping[str, str]) -> list[tuple[str, ...]]:
    """Slots of a caption that states only the known groups (imported labels may lack some).

    The Track-2 grammar always states gender, age and orientation; here a clause whose group
    is unknown is left out and the sentence joined around it, and an unknown flag or carry
    group is treated as "not stated" (nothing is claimed about it).
    """
    gender = values.get("gender")
    pos, pron = {"female": ("her", "She"), "male": ("his", "He")}.get(gender, ("their", "The pedestrian"))
    slots: list[tuple[str, ...]] = []
    if "age" in values:
        slots += [_SUBJECT[gender] if gender else ("A pedestrian who is",), (" ",), _AGE[values["age"]]]
        join = " and "
    else:
        slots.append(_BARE_SUBJECT[gender] if gender else ("A pedestrian",))
        join = " "
    if "orientation" in values:
        orient = _ORIENT[values["orientation"]].format(pos=pos)
        slots.append((", " + orient,) if "age" in values else (" " + orient.removeprefix("and is "),))
        join = " and "
    carry = _carry({g: values.get(g, "") for g in ("handbag", "bag", "holding")})
    if carry:
        slots += [(join,), carry]
    worn: list[tuple[str, ...]] = []
    for group, item in (("hat", ("a hat",)), ("glasses", ("glasses",)), ("coat", _COAT)):
        if values.get(group) == "yes":
            worn.append(item)
    second: list[tuple[str, ...]] = []
    if worn:
        second.append(("wearning ",))
        for i, item in enumerate(worn):
            second += [(",",), item] if i else [item]
    else:
        if "sleeve" in values:
            second += [("in ",), _SLEEVE[values["sleeve"]]]
        if values.get("upper", "none") != "none":
            second += [(" with " if second else "with ",), _UPPER[values["upper"]]]
        if values.get("skirt") == "yes":
            second += [(" and " if second else "",), _SKIRT]
    if second:
        slots += [(f". {pron} is ",), *second]
    slots.append((".",))
    return slots


def known_pedestrian_caption(values: Mapping[str, str], rng: np.random.Generator) -> str:
    """:func:`pedestrian_caption` when every group is known; otherwise a caption stating only the
    known groups (same phrases, unknown clauses left out; see :func:`_known_slots`)."""
    if all(g in values for g in _GROUPS):
        return pedestrian_caption(values, rng)
    return "".join(alts[int(rng.integers(len(alts)))] if len(alts) > 1 else alts[0] for alts in _known_slots(values))


def all_pedestrian_captions(values: Mapping[str, str]) -> Iterator[str]:
    """Every caption the grammar allows for ``values`` (a few hundred at most)."""
    for combo in itertools.product(*_pedestrian_slots(values)):
        yield "".join(combo)


_TOP = ("top", "jacket", "shirt")
_LOWER = {"trousers": ("trousers", "pants"), "shorts": ("shorts",), "skirt": ("skirt",)}
_HAIR = {"long": ("has long hair",), "short": ("has short hair",), "bald": ("is bald",)}


def clothing_sentence(values: Mapping[str, str], rng: np.random.Generator) -> tuple[str, dict[str, str]]:
    """A sentence on some of the groups outside the Track-2 code, for synthetic captions beyond
    the grammar ("He has short hair and wears a black and white top and grey trousers."), and
    the values it states. Each part (hair; the top's colours; the lower body's colours and type)
    is said with probability 1/2, at least one; colours not named are not stated. ("", {}) when
    the values hold none of these groups. Written in words the parser reads (tests/data/test_captions.py)."""
    pron = {"female": "She", "male": "He"}.get(values.get("gender", ""), "The pedestrian")
    upper, lower = family_labels(values, "upper_color"), family_labels(values, "lower_color")
    kind = values.get("lower_type")
    parts = [part for part, present in (("hair", "hair" in values), ("upper", bool(upper)),
                                        ("lower", kind is not None or bool(lower))) if present]
    if not parts:
        return "", {}
    keep = [part for part in parts if rng.random() < 0.5] or [parts[int(rng.integers(len(parts)))]]
    said: dict[str, str] = {}
    text, worn = [], []
    if "hair" in keep:
        text.append(_HAIR[values["hair"]][0])
        said["hair"] = values["hair"]
    if "upper" in keep:
        worn.append(f"a {' and '.join(upper)} {_TOP[int(rng.integers(len(_TOP)))]}")
        said |= {member_name("upper_color", c): "yes" for c in upper}
    if "lower" in keep:
        said |= {member_name("lower_color", c): "yes" for c in lower}
        if kind is not None:
            nouns = _LOWER[kind]
            worn.append(f"{' and '.join(lower)} {nouns[int(rng.integers(len(nouns)))]}".strip())
            said["lower_type"] = kind
        else:
            worn.append(f"{' and '.join(lower)} bottoms")
    if worn:
        text.append("wears " + " and ".join(worn))
    return f"{pron} {' and '.join(text)}.", said


def vehicle_prefixes(first_word: str) -> Sequence[str]:
    """Article forms used by Track-2: "an" only before "orange"."""
    return ("This is an", "An") if first_word == "orange" else ("This is a", "A")


def vehicle_caption(values: Mapping[str, str], rng: np.random.Generator, schema: Schema | None = None) -> str:
    """``This is a red Balong Heavy Truck Truck.`` / ``A white Audi.`` / ``A SUV.`` for the given (possibly partial) values."""
    text = values_to_vehicle_text(values, schema or load_schema())
    prefixes = vehicle_prefixes(text.split(" ", 1)[0].rstrip("."))
    return f"{prefixes[int(rng.integers(len(prefixes)))]} {text}"
