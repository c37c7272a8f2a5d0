"""The Track-2 pedestrian caption grammar: what a caption implies beyond its words.

Track-2 captions are generated from the 21-bit code by a fixed grammar (docs: track2.md):

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

__all__ = ["track2_form", "implied_values"]

Form = Literal["A", "B"]

# The four subject phrasings of the grammar (male and female forms), at the very start.
_SUBJECT = re.compile(r"An? (?:(?:fe)?male pedestrian|pedestrian who is (?:fe)?male|walking (?:wo)?man)\b", re.IGNORECASE)
# The second sentence: "He is wearning ..." (form A) or "She is in ..." (form B).
_SECOND = re.compile(r"\.\s*(?:he|she) is (wearning|in) ", re.IGNORECASE)


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
    implied: dict[str, str] = {}
    if stated.get("handbag") == "yes":
        pass
    elif stated.get("bag") in ("shoulder", "backpack"):
        implied["handbag"] = "no"
    elif stated.get("holding") == "yes":
        implied.update(handbag="no", bag="none")
    else:
        implied.update(handbag="no", bag="none", holding="no")

    implied.update(hat="no", glasses="no", coat="no")
    if form == "B":
        implied.update(upper="none", skirt="no")
    return {g: c for g, c in implied.items() if g not in stated}
