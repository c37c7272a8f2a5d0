"""The clothing colour rule (lexicon ``[clothing]``), checked over every colour word and every
garment word it declares, in each form: stated, negated, two colours, alternatives, colour alone."""

from __future__ import annotations

import itertools

import pytest

from attrret.parser import CaptionParser
from attrret.parser.lexicon import load_lexicon
from attrret.schema import load_schema

SCHEMA = load_schema()
CLOTHING = load_lexicon(SCHEMA).clothing
COLOURS = sorted(CLOTHING.colours)  # class names, spellings and synonyms
GARMENTS = sorted(CLOTHING.garments)


@pytest.fixture(scope="module")
def parser() -> CaptionParser:
    return CaptionParser(SCHEMA, grammar_table=False)


def group(garment: str, colour: str) -> str:
    return f"{CLOTHING.garments[garment]}_{CLOTHING.colours[colour]}"


@pytest.mark.parametrize("garment", GARMENTS)
def test_a_colour_before_a_garment_is_that_garment_colour(parser, garment):
    for colour in COLOURS:
        g = group(garment, colour)
        q = parser.parse(f"a person in a {colour} {garment}")
        assert q.kind == "pedestrian" and q.stated.get(g) == "yes", (colour, garment, q.stated)
        assert not [x for x in q.stated if x.endswith(tuple(f"_{c}" for c in CLOTHING.colours.values())) and x != g]
        assert not q.unmatched and not q.unsupported, (colour, garment)
        q = parser.parse(f"a woman not wearing a {colour} {garment}")
        assert q.stated.get(g) == "no", (colour, garment)


@pytest.mark.parametrize("garment", ["top", "jacket", "trousers", "skirt"])
def test_two_colours_both_and_either(parser, garment):
    classes = sorted(set(CLOTHING.colours.values()))
    for a, b in itertools.combinations(classes, 2):
        ga, gb = group(garment, a), group(garment, b)
        for joined in (f"{a} and {b}", f"{a}-and-{b}", f"{a} & {b}"):
            q = parser.parse(f"a man in a {joined} {garment}")
            assert q.stated.get(ga) == q.stated.get(gb) == "yes", (joined, garment)  # a two-colour garment
        q = parser.parse(f"a man in a {a} or {b} {garment}")
        assert q.any_of == ((ga, gb),) and ga not in q.stated and gb not in q.stated, (a, b, garment)
        assert ga not in q.unknown and gb not in q.unknown


def test_a_colour_alone_after_in_or_wearing_is_a_top_or_a_bottom(parser):
    for colour in COLOURS:
        cls = CLOTHING.colours[colour]
        for text in (f"a man dressed in {colour}", f"a woman all in {colour}", f"someone wearing {colour}, with a backpack"):
            q = parser.parse(text)
            assert q.any_of == ((f"upper_color_{cls}", f"lower_color_{cls}"),), (text, q.any_of)
        q = parser.parse(f"a man not dressed in {colour}")
        assert q.stated.get(f"upper_color_{cls}") == q.stated.get(f"lower_color_{cls}") == "no", colour


def test_a_colour_without_a_garment_keeps_its_vehicle_meaning(parser):
    for colour in sorted(set(CLOTHING.colours) & set(SCHEMA.vehicle.group("color").classes)):
        q = parser.parse(f"a {colour} car")
        assert q.kind == "vehicle" and q.stated == {"color": colour}
