"""Negation scope as a rule, tested as a property over generated sentences.

Every single-meaning attribute phrase of the lexicon (hat, glasses, handbag, bag, sleeve, upper,
coat, skirt) x every negation form x its position among two or three attributes (first, middle,
last) x every connective that opens the next phrase. The gold is computed from the parts: a
negated phrase states the other class of a two-class group or excludes its class from a larger
one; every other phrase states its class. Nothing here is a hand-typed expectation.
"""

from __future__ import annotations

import itertools

import pytest

from attrret.parser import CaptionParser
from attrret.parser.lexicon import tokenize

GROUPS = ("hat", "glasses", "handbag", "bag", "sleeve", "upper", "coat", "skirt")
#: Negation forms: how a sentence negates the phrase P.
NEGATIONS = ("without {}", "with no {}", "no {}", "not wearing {}", "not carrying {}", "who doesn't have {}",
             "who never has {}", "who isn't wearing {}", "lacking {}")
#: Connectives that open the next attribute phrase (the negation must stop before them).
CONNECTIVES = (", with {}", " and {}", " but with {}", " with {}", " carrying {}", " wearing {}", ", {}", " and has {}",
               "; {}", " who has {}")
#: One plain phrase per group for the other attributes of a sentence.
COMPANIONS = {"hat": ("a cap", "yes"), "glasses": ("sunglasses", "yes"), "handbag": ("a purse", "yes"), "bag": ("a rucksack", "backpack"),
              "sleeve": ("short sleeves", "short"), "upper": ("stripes", "stripe"), "coat": ("a coat", "yes"), "skirt": ("a skirt", "yes")}


@pytest.fixture(scope="module")
def parser() -> CaptionParser:
    return CaptionParser(grammar_table=False)


def attribute_phrases(parser: CaptionParser) -> list[tuple[str, str, str]]:
    """``(phrase, group, class)`` for every pedestrian phrase that states one class of GROUPS and
    negates by the default rule, leaving out phrases that hold a rule word of their own
    (a negation cue, a scope word, "or", a value word): those are read by their own rules."""
    lex = parser.lexicon
    rule_words = (lex.negation_cues | lex.negation_breaks | lex.negation_openers | lex.or_words | lex.yes_words | lex.no_words
                  | {t for toks in lex.negation_phrases for t in toks})
    out = []
    for e in lex.entries:
        if e.subject != "pedestrian" or len(e.sets) != 1 or e.negated is not None or e.cue or e.yields_to:
            continue
        group, cls = e.sets[0]
        if group not in GROUPS:
            continue
        for p in e.phrases:
            if not rule_words.intersection(tokenize(p)):
                out.append((p, group, cls))
    return out


def negated_gold(parser: CaptionParser, group: str, cls: str) -> tuple[dict, dict]:
    classes = parser.schema.pedestrian.group(group).classes
    if len(classes) == 2:
        return {group: classes[1 - classes.index(cls)]}, {}
    return {}, {group: frozenset([cls])}


def companions(group: str, k: int, count: int) -> list[tuple[str, str, str]]:
    """``count`` companion phrases of groups other than ``group`` (rotating with ``k``)."""
    others = [g for g in GROUPS if g != group]
    return [(COMPANIONS[g][0], g, COMPANIONS[g][1]) for g in (others[(k + j) % len(others)] for j in range(count))]


def check(parser, sentence: str, stated: dict, negated: dict, failures: list) -> None:
    q = parser.parse(sentence)
    got = (q.kind, q.stated, {g: frozenset(c) for g, c in q.negated.items()})
    want = ("pedestrian", stated, negated)
    if got != want and len(failures) < 15:
        failures.append(f"{sentence!r}: got {got}, want {want}")


def test_the_generated_set_is_large(parser):
    phrases = attribute_phrases(parser)
    assert len(phrases) >= 100 and {g for _, g, _ in phrases} == set(GROUPS)


@pytest.mark.parametrize("negation", NEGATIONS)
def test_a_negation_covers_its_phrase_and_no_other(parser, negation):
    """Every phrase x this negation form x every position (first, middle, last of 2 or 3) x every connective."""
    failures: list[str] = []
    n = 0
    for k, (phrase, group, cls) in enumerate(attribute_phrases(parser)):
        neg_stated, neg_negated = negated_gold(parser, group, cls)
        for size, connective in itertools.product((2, 3), CONNECTIVES):
            others = companions(group, k, size - 1)
            for at in range(size):
                items = [*others[:at], None, *others[at:]]
                parts, stated, negated = [], dict(neg_stated), dict(neg_negated)
                for j, item in enumerate(items):
                    text = negation.format(phrase) if item is None else ("with {}" if j == 0 else "{}").format(item[0])
                    parts.append(text if j == 0 else connective.format(text))
                    if item is not None:
                        stated[item[1]] = item[2]
                sentence = "a person " + "".join(parts)
                check(parser, sentence, stated, negated, failures)
                n += 1
    assert n >= 5000
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("form", ["no {} or {}", "without {} or {}", "neither {} nor {}", "with no {} or {}", "not wearing {} or {}"])
def test_a_negation_covers_phrases_coordinated_with_it(parser, form):
    """"no hat or glasses": both negated, for every pair of companion groups."""
    failures: list[str] = []
    for a, b in itertools.permutations(GROUPS, 2):
        if {a, b} == {"handbag", "bag"}:
            continue  # "no purse or rucksack" is fine, but keep the pairs of unrelated groups
        pa, ca = COMPANIONS[a]
        pb, cb = COMPANIONS[b]
        stated: dict = {}
        negated: dict = {}
        for g, c in ((a, ca), (b, cb)):
            s, nset = negated_gold(parser, g, c)
            stated.update(s)
            negated.update(nset)
        check(parser, "a person " + form.format(pa, pb), stated, negated, failures)
        check(parser, "a person " + form.format(pa, pb) + " holding a bottle", {**stated, "holding": "yes"}, negated, failures)
    assert not failures, "\n".join(failures)


def test_the_rule_is_documented_in_the_module():
    from attrret.parser import caption

    doc = caption.__doc__ or ""
    assert "opens a new phrase" in doc and "coordinated" in doc
