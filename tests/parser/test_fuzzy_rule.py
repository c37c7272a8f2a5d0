"""The fuzzy rule of attrret.parser.fuzzy: the slips it catches, the real words it keeps apart."""

from __future__ import annotations

import pytest

from attrret.parser.fuzzy import DEFAULT_FUZZY_CUTOFF, MIN_FUZZY_LEN, is_slip
from attrret.parser.lexicon import load_lexicon, tokenize
from attrret.schema import load_schema

SLIPS = [  # (typo, lexicon word): transpositions, missing, extra and wrong letters
    ("womna", "woman"), ("hyundia", "hyundai"), ("blakc", "black"), ("whtie", "white"), ("skrit", "skirt"),
    ("mael", "male"), ("lday", "lady"), ("dres", "dress"), ("toyta", "toyota"), ("nisan", "nissan"),
    ("womn", "woman"), ("backpak", "backpack"), ("sholder", "shoulder"), ("volkswagon", "volkswagen"),
    ("glases", "glasses"), ("sunglases", "sunglasses"), ("pedestrain", "pedestrian"),
]

# Real words one letter from a lexicon word that the ratio rule alone keeps apart.
KEPT_BY_THE_RULE = [
    ("shirt", "skirt"), ("shirts", "skirts"), ("plain", "plaid"), ("coach", "couch"), ("glass", "glasses"),
    ("female", "male"), ("woman", "man"), ("blouse", "blue"), ("hate", "hats"), ("mole", "male"), ("cost", "coat"),
    ("boat", "coat"), ("press", "dress"), ("track", "truck"), ("crown", "brown"), ("fellow", "yellow"),
    ("china", "chana"), ("mind", "mini"), ("word", "ford"), ("keep", "jeep"), ("that", "hat"), ("chat", "hat"),
    ("cars", "car"), ("vane", "van"), ("card", "car"),
]


@pytest.mark.parametrize(("typo", "word"), SLIPS)
def test_slips_are_caught(typo, word):
    assert is_slip(typo, word) >= DEFAULT_FUZZY_CUTOFF


@pytest.mark.parametrize(("a", "b"), KEPT_BY_THE_RULE)
def test_confusable_real_words_stay_apart(a, b):
    assert not is_slip(a, b) and not is_slip(b, a)


def test_short_words_are_never_fuzzy_targets():
    assert MIN_FUZZY_LEN == 4
    assert not is_slip("hta", "hat") and not is_slip("hatt", "hat") and not is_slip("bsu", "bus")


def test_every_kept_word_is_a_real_collision_and_is_left_unmatched(parser):
    """Each word of the lexicon's ``[fuzzy] keep`` would pass the rule against some lexicon
    word (so the list holds no dead entries), and the parser reports it instead."""
    lex = load_lexicon(load_schema())
    words = {t for e in lex.entries for p in e.phrases for t in tokenize(p)}
    assert lex.fuzzy_keep
    for kept in sorted(lex.fuzzy_keep):
        assert kept not in words
        assert any(is_slip(kept, w) for w in words), kept
        q = parser.parse(f"a woman and {kept}")
        assert q.unmatched == (kept,) and q.stated == {"gender": "female"}, kept
        assert not any(s.fuzzy for s in q.spans)


def test_slips_reach_the_query_and_are_marked_fuzzy(parser):
    q = parser.parse("a womna in a dres")
    assert q.stated == {"gender": "female", "skirt": "yes"} and q.unmatched == ()
    assert [(s.text, s.fuzzy) for s in q.spans] == [("womna", True), ("dres", True)]
    q = parser.parse("white toyta, hyundia")
    assert q.stated == {"color": "white", "brand": "Toyota"} and q.unmatched == ()
    assert [s.cls for s in q.spans] == ["white", "Toyota", "Hyundai"]
