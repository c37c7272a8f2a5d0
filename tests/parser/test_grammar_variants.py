"""Every phrasing variant of the Track-2 pedestrian grammar (docs/track2.md), written here from codes.

The real lines do not use every variant (few people over 60, few "holds objects"), so this
writes captions with each variant from random values, by the grammar's own rules, and
checks the parser reads back exactly what the grammar lets a caption say.
"""

from __future__ import annotations

import random

from attrret.schema import load_schema

SUBJ = {
    "female": ["A female pedestrian is someone who walks on foot, is", "A female pedestrian who is", "A pedestrian who is female is", "A walking woman who is"],
    "male": ["A male pedestrian is someone who walks on foot, is", "A male pedestrian who is", "A pedestrian who is male is", "A walking man who is"],
}
AGE = {
    "18-60": ["between 18 and 60 years old", "an adult person aged 18-60"],
    "under18": ["age 18 or younger", "less than 18 years old", "not an adult", "a minor"],
    "over60": ["an elderly person over 60 years old", "aged 60 or older", "at least 60 years old", "aged over 60"],
}
ORIENT = {"front": "with {p} body facing the camera", "side": "and is standing sideways", "back": "with {p} body back to the camera"}
CARRY = {
    "handbag": ["with a handbag", "carrying a handbag", "holding a handbag", "clutching a handbag"],
    "shoulder": ["with a shoulderbag", "is carrying a shoulder bag", "has a shoulderbag", "has a bag over the shoulder"],
    "backpack": ["with a backpack", "carrying a backpack"],
    "holding": ["holds objects in front"],
}
SLEEVE = {
    "short": ["a short sleeve shirt", "a tee shirt with short sleeves", "a shirt with short sleeves"],
    "long": ["a long sleeve shirt", "a tee shirt with long sleeves", "a shirt with long sleeves"],
}
UPPER = {
    "stripe": ["an upper stripe"],
    "logo": ["a logo on the upper", "an upper logo"],
    "plaid": ["an upper plaid", "a plaid on the upper"],
    "splice": ["an upper splice", "a splice on the upper"],
}
SKIRT = ["in a skirt or dress", "wearing skirt or dress"]


def write_caption(v: dict[str, str], boots: bool, rng: random.Random) -> tuple[str, dict[str, str]]:
    """A caption for values ``v`` and the values it lets a reader know (the oracle)."""
    he, his = ("She", "her") if v["gender"] == "female" else ("He", "his")
    first = f"{rng.choice(SUBJ[v['gender']])} {rng.choice(AGE[v['age']])}, {ORIENT[v['orientation']].format(p=his)}"
    known = {g: v[g] for g in ("gender", "age", "orientation")}
    if v["handbag"] == "yes":
        carry, known["handbag"] = "handbag", "yes"
    elif v["bag"] != "none":
        carry = v["bag"]
        known.update(handbag="no", bag=v["bag"])
    elif v["holding"] == "yes":
        carry = "holding"
        known.update(handbag="no", bag="none", holding="yes")
    else:
        carry = None
        known.update(handbag="no", bag="none", holding="no")
    if carry:
        first += f" and {rng.choice(CARRY[carry])}"
    items = [it for it, on in (("a hat", v["hat"] == "yes"), ("glasses", v["glasses"] == "yes"),
                               (rng.choice(["a longcoat", "a coat that is long"]), v["coat"] == "yes"), ("boots", boots)) if on]
    known.update({g: v[g] for g in ("hat", "glasses", "coat")})
    if items:  # form A
        second = "wearning " + ",".join(items)
    else:  # form B
        second = "in " + rng.choice(SLEEVE[v["sleeve"]])
        if v["upper"] != "none":
            second += " with " + rng.choice(UPPER[v["upper"]])
        if v["skirt"] == "yes":
            second += " and " + rng.choice(SKIRT)
        known.update({g: v[g] for g in ("sleeve", "upper", "skirt")})
    return f"{first}. {he} is {second}.", known


def test_every_grammar_variant_reads_back(parser):
    ped = load_schema().pedestrian
    rng = random.Random(0)
    bad = []
    for i in range(3000):
        v = {g.name: rng.choice(g.classes) for g in ped.groups if g.bits}  # the code's groups: what the grammar writes
        if i % 2:  # make the common case common: no extras, so form B and "no carry" get exercised
            v.update(hat="no", glasses="no", coat="no", handbag="no", bag=rng.choice(["none", v["bag"]]))
        boots = rng.random() < 0.2
        caption, known = write_caption(v, boots=boots, rng=rng)
        if boots:  # the code drops boots; the schema's boots group reads them
            known["boots"] = "yes"
        q = parser.parse(caption)
        got = q.known(use_implied=True)
        if q.kind != "pedestrian" or got != known or set(q.unknown) != set(ped.group_names) - set(known) or q.unmatched:
            bad.append((caption, got, known, q.unmatched))
    assert bad == []
