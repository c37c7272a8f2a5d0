"""The Track-2 pedestrian caption grammar: what a caption implies beyond its words.

Track-2 captions are generated from the 21-bit code by a fixed grammar (docs/track2.md):

    <SUBJ> <AGE>, <ORIENT>[ and <CARRY>]. <He|She> is <SECOND>.

The grammar writes at most one carry clause (priority handbag > shoulder bag > backpack >
holds objects) and one of two second sentences: form A ("wearning" + hat, glasses, coat,
boots) or form B ("in" + sleeve [+ upper pattern] [+ skirt]). So a caption fixes more than
its words: what a higher-priority carry clause would have said, and the items its form
lists exhaustively. These rules only hold for captions written by the grammar; free-form
user queries ("woman with a backpack") get no implied values, since a user who leaves out
the hat has not said there is none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

__all__ = ["track2_form", "sentence_form", "implied_values", "track2_clauses", "track2_vehicle_pattern"]

Form = Literal["A", "B"]

# The four subject phrasings of the grammar (male and female forms), at the very start.
_SUBJECT = re.compile(r"An? (?:(?:fe)?male pedestrian|pedestrian who is (?:fe)?male|walking (?:wo)?man)\b", re.IGNORECASE)
# The second sentence: "He is wearning ..." (form A) or "She is in ..." (form B).
_SECOND = re.compile(r"\.\s*(?:he|she) is (wearning|in) ", re.IGNORECASE)


def sentence_form(sentence: str) -> Form | None:
    """The form of a second sentence of the grammar on its own ("She is in ..." -> ``"B"``):
    the form :func:`track2_form` finds for a caption whose first sentence is the grammar's."""
    m = _SECOND.match(". " + sentence)
    return None if m is None else "A" if m.group(1).lower() == "wearning" else "B"


def track2_form(caption: str) -> Form | None:
    """``"A"`` or ``"B"`` for a caption written by the Track-2 grammar, ``None`` for free text."""
    if not _SUBJECT.match(caption):
        return None
    m = _SECOND.search(caption)
    if m is None:
        return None
    return "A" if m.group(1).lower() == "wearning" else "B"


def implied_values(stated: Mapping[str, str], form: Form) -> dict[str, str]:
    """Values the grammar fixes for a caption of ``form`` that ``stated`` does not already give.

    Carry: "handbag" says nothing of the bag or holding; "shoulder bag" and "backpack" imply
    no handbag; "holds objects" implies no handbag and no bag; no carry clause implies none
    of the four. Form A: unlisted hat / glasses / coat are absent (sleeve, upper, skirt stay
    unknown). Form B: hat = glasses = coat = no; no pattern = upper none; no skirt = no.
    """
    if stated.get("handbag") == "yes":
        carry = 0
    elif stated.get("bag") in ("shoulder", "backpack"):
        carry = 1
    elif stated.get("holding") == "yes":
        carry = 2
    else:
        carry = 3
    return {g: c for g, c in _IMPLIED[form, carry] if g not in stated}


def _implied_table() -> dict[tuple[str, int], tuple[tuple[str, str], ...]]:
    """(form, carry case) -> every value the grammar implies, before removing stated groups
    (built once: a caption then costs one look-up and one filter, bench/parse.py)."""
    carry = [{}, {"handbag": "no"}, {"handbag": "no", "bag": "none"}, {"handbag": "no", "bag": "none", "holding": "no"}]
    out = {}
    for form in ("A", "B"):
        for i, c in enumerate(carry):
            values = {**c, "hat": "no", "glasses": "no", "coat": "no"}
            if form == "B":
                values.update(upper="none", skirt="no")
            out[form, i] = tuple(values.items())
    return out


_IMPLIED = _implied_table()  # immutable table derived from the grammar, not state


# The grammar's phrasings (docs/track2.md), for :func:`track2_clauses`.
_SUBJECTS = {
    "female": ("A female pedestrian who is", "A pedestrian who is female is", "A walking woman who is"),
    "male": ("A male pedestrian who is", "A pedestrian who is male is", "A walking man who is"),
}
_AGES = (
    "between 18 and 60 years old", "an adult person aged 18-60", "age 18 or younger", "less than 18 years old",
    "not an adult", "a minor", "an elderly person over 60 years old", "aged 60 or older", "at least 60 years old",
    "aged over 60",
)
_ORIENTS = ("with {p} body facing the camera", "and is standing sideways", "with {p} body back to the camera")
_CARRIES = (
    "with a handbag", "carrying a handbag", "holding a handbag", "clutching a handbag", "with a shoulderbag",
    "is carrying a shoulder bag", "has a shoulderbag", "has a bag over the shoulder", "with a backpack",
    "carrying a backpack", "holds objects in front",
)
_SLEEVES = tuple(f"{s.format(x)}" for x in ("short", "long") for s in (
    "a {} sleeve shirt", "a tee shirt with {} sleeves", "a shirt with {} sleeves"))
_UPPERS = ("an upper stripe", "a logo on the upper", "an upper logo", "an upper plaid", "a plaid on the upper",
           "an upper splice", "a splice on the upper")
_SKIRTS = ("in a skirt or dress", "wearing skirt or dress")
_WORN = (("a hat",), ("glasses",), ("a longcoat", "a coat that is long"), ("boots",))


def track2_clauses() -> list[str]:
    """Every clause (as :class:`~attrret.parser.caption.CaptionParser` cuts captions: one per
    sentence) that the Track-2 grammar writes for a pedestrian: about 3,400 strings.

    Why: the parser reads these once when it is built (about 0.1 s), so a Track-2 caption it
    has never seen costs only the joining of known clauses (bench/parse.py's cold row). A
    clause the grammar does not write (or written some other way) is read as usual: results
    never depend on it.
    """
    out: list[str] = []
    for gender, pronoun in (("female", "her"), ("male", "his")):
        subjects = [f"{s} {a}, " for s in _SUBJECTS[gender] for a in _AGES]
        subjects += [f"A {gender} pedestrian is someone who walks on foot, is {a}, " for a in _AGES]
        for orient in _ORIENTS:
            o = orient.format(p=pronoun)
            out += [f"{s}{o}. " for s in subjects] + [f"{s}{o} and {c}. " for s in subjects for c in _CARRIES]
    for he in ("She", "He"):
        for sleeve in _SLEEVES:
            for upper in ("", *(f" with {u}" for u in _UPPERS)):
                out += [f"{he} is in {sleeve}{upper}{skirt}." for skirt in ("", *(f" and {k}" for k in _SKIRTS))]
        worn: list[list[str]] = [[]]
        for options in _WORN:
            worn = [w + ([o] if o else []) for w in worn for o in ("", *options)]
        out += [f"{he} is wearning {','.join(w)}." for w in worn if w]
    return list(dict.fromkeys(out))


def track2_vehicle_pattern(schema) -> re.Pattern[str]:
    """The Track-2 vehicle caption, ``<This is a|A|This is an|An> [colour] [Brand] [Type].``,
    with the vocabulary's exact spellings in named groups (``color``, ``brand``, ``type``).

    Why: the parser reads a caption that matches (``fullmatch``) straight from its slots: the
    grammar writes one value per slot, so it needs no lexicon search, and the slots also
    settle what the words alone cannot: "This is a white Mini Bus." is the brand Mini and the
    type Bus, where free text "mini bus" means a microbus. Alternatives are longest first
    ("Balong Heavy Truck" before any shorter name).
    """

    def alternatives(group: str) -> str:
        names = sorted(schema.vehicle.group(group).classes, key=len, reverse=True)
        return "|".join(re.escape(c) for c in names)

    end = r"(?: |(?=\.$))"
    return re.compile(
        rf"(?:This is an?|An?) (?:(?P<color>{alternatives('color')}){end})?"
        rf"(?:(?P<brand>{alternatives('brand')}){end})?(?P<type>{alternatives('type')})?\."
    )
