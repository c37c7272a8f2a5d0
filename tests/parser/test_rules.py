"""The parser's rules, each tested over generated inputs with gold computed from the parts.

Exclusions ("any colour except red"), ``key: value`` forms for every group, ages as numbers,
decades, comparisons and ranges, attribute names of public datasets, and the rule that nothing
is dropped or reversed silently: every content word lands in a span, the declared word lists,
``unmatched`` or ``unsupported``.
"""

from __future__ import annotations

import itertools
import re

import pytest

from attrret.parser import CaptionParser
from attrret.parser.lexicon import TOKEN, tokenize
from attrret.schema import load_schema
from tests.parser.test_free_form import read_cases

SCHEMA = load_schema()


@pytest.fixture(scope="module")
def parser() -> CaptionParser:
    return CaptionParser(grammar_table=False)


def values(q) -> tuple:
    return q.kind, q.stated, {g: frozenset(c) for g, c in q.negated.items()}, {g: frozenset(c) for g, c in q.either.items()}


# ----------------------------------------------------------------------------- exclusions
@pytest.mark.parametrize("group", ["color", "type", "brand"])
def test_every_exclusion_phrase_excludes_every_vehicle_class(parser, group):
    phrases = [" ".join(t) for t in parser.lexicon.negation_phrases]
    word = {"color": "colour", "type": "type", "brand": "brand"}[group]
    failures = []
    for phrase, cls in itertools.product(phrases, SCHEMA.vehicle.group(group).classes):
        for text in (f"a car of any {word} {phrase} {cls}", f"a car, {phrase} {cls}"):
            got = values(parser.parse(text))
            if got != ("vehicle", {}, {group: frozenset([cls])}, {}):
                failures.append(f"{text!r}: {got}")
    assert len(phrases) >= 8 and not failures, "\n".join(failures[:10])


def test_an_exclusion_in_a_two_class_group_states_the_other_class(parser):
    for phrase in (" ".join(t) for t in parser.lexicon.negation_phrases):
        for cls, other in (("male", "female"), ("female", "male")):
            q = parser.parse(f"a person of any gender {phrase} {cls}")
            assert values(q) == ("pedestrian", {"gender": other}, {}, {}), phrase


@pytest.mark.parametrize(("text", "negated"), [
    ("a sedan, not white", {"color": {"white"}}),
    ("SUV, black, not a toyota", {"brand": {"Toyota"}}),
    ("red, not a truck", {"type": {"Truck"}}),
])
def test_not_inside_a_list_excludes(parser, text, negated):
    assert values(parser.parse(text))[2] == {g: frozenset(c) for g, c in negated.items()}


# ----------------------------------------------------------------------------- key: value
def key_names(parser, subject: str, group: str) -> list[str]:
    return [" ".join(k) for k, owner in parser.lexicon.keys.items() if owner == (subject, group)]


@pytest.mark.parametrize("subject", ["pedestrian", "vehicle"])
def test_every_key_takes_every_class_with_any_separator_and_case(parser, subject):
    failures, n = [], 0
    for group in SCHEMA.subject(subject).groups:
        for key, sep, cls in itertools.product(key_names(parser, subject, group.name), (": ", " = ", "=", " "), group.classes):
            if group.name == "bag" and cls == "none":
                continue  # "bag: none" also says no handbag (the bag entry's own rule, tests/parser/free_form_queries.txt)
            for value in {cls, cls.upper(), cls.title()}:
                text = f"{key}{sep}{value}"
                got = values(parser.parse(text))
                n += 1
                if got != (subject, {group.name: cls}, {}, {}):
                    failures.append(f"{text!r}: {got}")
    assert n > 200 and not failures, "\n".join(failures[:10])


@pytest.mark.parametrize(("text", "stated"), [
    ("Gender: M", {"gender": "male"}), ("gender=f", {"gender": "female"}), ("sex: F", {"gender": "female"}),
    ("glasses: y", {"glasses": "yes"}), ("hat: n", {"hat": "no"}), ("glasses no", {"glasses": "no"}),
    ("hat no, backpack yes", {"hat": "no", "bag": "backpack"}), ("holding: no", {"holding": "no"}),
    ("sleeves: long", {"sleeve": "long"}), ("make: honda", {"brand": "Honda"}), ("colour: white", {"color": "white"}),
    ("orientation: back", {"orientation": "back"}), ("coat = no", {"coat": "no"}), ("skirt yes", {"skirt": "yes"}),
])
def test_short_forms_and_yes_no_values(parser, text, stated):
    assert parser.parse(text).stated == stated


def test_a_value_without_separator_must_end_the_phrase(parser):
    q = parser.parse("a man with a hat no glasses")  # "no" negates glasses: it is no value of "hat"
    assert q.stated == {"gender": "male", "hat": "yes", "glasses": "no"}


# ----------------------------------------------------------------------------- ages
def age_gold(lo: int, hi: int) -> tuple[dict, dict]:
    """The classes of years lo..hi: one class is stated, several are an either set (docs: 0-17, 18-60, 61+)."""
    bounds = {"under18": (0, 17), "18-60": (18, 60), "over60": (61, 200)}
    hit = [c for c, (a, b) in bounds.items() if a <= hi and lo <= b]
    if len(hit) == len(bounds):
        return {}, {}  # every class allowed: the query says nothing of the age
    return ({"age": hit[0]}, {}) if len(hit) == 1 else ({}, {"age": frozenset(hit)})


def test_single_ages_with_approximation_words(parser):
    failures = []
    for n, form in itertools.product(range(1, 100), ("around {}", "about {}", "approximately {}", "aged {}", "roughly {}",
                                                     "{} years old", "a man of {}")):
        text = form.format(n)
        stated, either = age_gold(n, n)
        if "man" in text:
            stated = {"gender": "male", **stated}
        got = values(parser.parse(text))
        if got != ("pedestrian", stated, {}, either):
            failures.append(f"{text!r}: {got}")
    assert not failures, "\n".join(failures[:10])


def test_ranges_map_onto_the_classes_and_straddle_as_either(parser):
    failures = []
    for lo, hi in itertools.combinations(range(5, 96, 7), 2):
        for form in ("aged {}-{}", "aged {} to {}", "between {} and {}", "{}-{} years old"):
            text = form.format(lo, hi)
            stated, either = age_gold(lo, hi)
            got = values(parser.parse(text))
            if got != ("pedestrian", stated, {}, either):
                failures.append(f"{text!r}: {got}")
    assert not failures, "\n".join(failures[:10])


@pytest.mark.parametrize(("text", "lo", "hi"), [
    ("in his teens", 13, 17), ("in her twenties", 20, 29), ("in his thirties", 30, 39), ("in her forties", 40, 49),
    ("in his fifties", 50, 59), ("in her sixties", 60, 69), ("in his seventies", 70, 79), ("in her eighties", 80, 89),
    ("in his 40s", 40, 49), ("in her late fifties", 57, 59), ("in his early sixties", 60, 63), ("under 30", 0, 29),
    ("older than 45", 46, 200), ("over 70", 71, 200), ("younger than 12", 0, 11),
])
def test_decades_and_comparisons(parser, text, lo, hi):
    stated, either = age_gold(lo, hi)
    pronoun = {"his": {"gender": "male"}, "her": {"gender": "female"}}.get(text.split()[1] if text.startswith("in ") else "", {})
    assert values(parser.parse(text)) == ("pedestrian", {**pronoun, **stated}, {}, either)


def test_a_bare_number_is_no_age(parser):
    assert "age" not in parser.parse("a man with 2 bags").stated
    assert parser.parse("a man with 2 bags").either == {}


# ----------------------------------------------------------------------------- dataset attribute names
#: PA-100K's attribute names (Liu et al., "HydraPlus-Net", ICCV 2017: the dataset's annotation.mat
#: ``attributes``), camel case split into words, and what each must read as. Front / Side / Back
#: are left out: alone they are position words ("in front"), read as orientation after a key.
PA100K = {
    "Female": {"gender": "female"}, "AgeOver60": {"age": "over60"}, "Age18-60": {"age": "18-60"}, "AgeLess18": {"age": "under18"},
    "Hat": {"hat": "yes"}, "Glasses": {"glasses": "yes"}, "HandBag": {"handbag": "yes"}, "ShoulderBag": {"bag": "shoulder"},
    "Backpack": {"bag": "backpack"}, "HoldObjectsInFront": {"holding": "yes"}, "ShortSleeve": {"sleeve": "short"},
    "LongSleeve": {"sleeve": "long"}, "UpperLogo": {"upper": "logo"}, "UpperPlaid": {"upper": "plaid"},
    "UpperSplice": {"upper": "splice"}, "LongCoat": {"coat": "yes"}, "Skirt&Dress": {"skirt": "yes"},
}
#: PETA's attribute names (Deng et al., ACM MM 2014: the dataset's Label.txt vocabulary) that the schema has.
PETA = {
    "personalMale": {"gender": "male"}, "personalFemale": {"gender": "female"}, "personalLess15": {"age": "under18"},
    "personalLarger60": {"age": "over60"}, "accessoryHat": {"hat": "yes"}, "accessorySunglasses": {"glasses": "yes"},
    "carryingBackpack": {"bag": "backpack"}, "carryingMessengerBag": {"bag": "shoulder"}, "upperBodyLongSleeve": {"sleeve": "long"},
    "upperBodyShortSleeve": {"sleeve": "short"}, "upperBodyLogo": {"upper": "logo"}, "upperBodyPlaid": {"upper": "plaid"},
    "upperBodyThinStripes": {"upper": "stripe"}, "lowerBodyLongSkirt": {"skirt": "yes"}, "lowerBodyShortSkirt": {"skirt": "yes"},
    "accessoryHeadphone": {}, "upperBodyJacket": {},
}


def camel_words(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Za-z])(?=[0-9])", " ", name).replace("&", " or ")


@pytest.mark.parametrize(("name", "stated"), [*PA100K.items(), *PETA.items()])
def test_public_dataset_attribute_names(parser, name, stated):
    q = parser.parse(camel_words(name))
    assert q.stated == stated, (camel_words(name), q.stated, q.unmatched)


def test_compound_hyphen_and_space_variants_come_by_rule(parser):
    for a, b, want in (("back", "pack", {"bag": "backpack"}), ("hand", "bag", {"handbag": "yes"}), ("sun", "glasses", {"glasses": "yes"}),
                       ("shoulder", "bag", {"bag": "shoulder"}), ("rain", "coat", {"coat": "yes"})):
        for form in (f"{a}{b}", f"{a} {b}", f"{a}-{b}"):
            assert parser.parse(f"a person with a {form}").stated == want, form


# ----------------------------------------------------------------------------- never silent
def declared_words(parser: CaptionParser) -> set[str]:
    """Words the lexicon declares as carrying no attribute by themselves: stop and ignored words,
    the rules' own words, and the words of phrases that state nothing ("bag", kind cues)."""
    lex = parser.lexicon
    out = set(lex.stop_words | lex.ignore | lex.joiners | lex.negation_cues | lex.negation_breaks | lex.negation_openers
              | lex.or_words | lex.yes_words | lex.no_words)
    out |= {t for toks in lex.negation_phrases for t in toks} | {t for k in lex.keys for t in k}
    if lex.ages is not None:
        out |= lex.ages.approximately | lex.ages.units | lex.ages.below | lex.ages.above | lex.ages.range_words | {"than"}
    out |= {t for e in lex.entries if not e.sets for p in e.phrases for t in tokenize(p)}
    return out


def silent_words(parser: CaptionParser, text: str, declared: set[str]) -> list[str]:
    """Content words of ``text`` that are in no span, no declared list, not unmatched and not unsupported."""
    q = parser.parse(text)
    covered = [False] * len(text)
    for s in q.spans:
        covered[s.start : s.end] = [True] * (s.end - s.start)
    for phrase in (*q.unmatched, *q.unsupported):
        at = text.find(phrase)
        if at >= 0:
            covered[at : at + len(phrase)] = [True] * len(phrase)
    out = []
    for m in TOKEN.finditer(text):
        w = m.group().lower().replace("’", "'")
        if not w[0].isalnum() or any(covered[m.start() : m.end()]) or w in declared or w.isdigit():
            continue
        if parser.parse(w).kind is None:  # alone it is no kind cue either ("pedestrain" is one, misspelt)
            out.append(w)
    return out


def generated_queries(parser: CaptionParser) -> list[str]:
    from tests.parser.test_negation_scope import COMPANIONS, CONNECTIVES, NEGATIONS

    phrases = [p for p, _ in COMPANIONS.values()]
    out = []
    for neg, conn, (a, b) in itertools.product(NEGATIONS, CONNECTIVES, itertools.permutations(phrases, 2)):
        out.append("a person " + neg.format(a) + conn.format(b))
    return out


def test_no_word_is_dropped_silently(parser):
    """Over every written free-form query and every generated one."""
    declared = declared_words(parser)
    written = [c.query for c in read_cases()]
    failures = []
    for text in [*written, *generated_queries(parser)]:
        silent = silent_words(parser, text, declared)
        if silent:
            failures.append(f"{text!r}: {silent}")
    assert not failures, "\n".join(failures[:15])


def test_a_query_with_no_kind_says_so(tmp_path):
    from attrret.search import Searcher
    from tests.retrieval.conftest import make_index

    make_index(tmp_path / "index", {"a.jpg": {}})
    result = Searcher.open(tmp_path / "index").search("hello world", k=1)
    assert result.query["kind"] is None and len(result) == 0
    assert any("no pedestrian or vehicle words" in w for w in result.warnings)


def test_parsing_is_linear_in_the_caption_length(parser):
    """A 600 kB caption once took minutes: a per-group check scanned every value stated so far.
    Counted in Python function calls, not seconds: four times the text costs about four times the
    calls (a quadratic step costs sixteen)."""
    import sys

    def calls(text: str) -> int:
        n = 0

        def count(frame, event, arg):
            nonlocal n
            n += event == "call"

        fresh = CaptionParser(grammar_table=False, cache_size=0, clause_cache_size=0)
        sys.setprofile(count)
        try:
            fresh.parse(text)
        finally:
            sys.setprofile(None)
        return n

    clause = "a woman with a hat and no glasses carrying a red bag "
    small, large = calls(clause * 300), calls(clause * 1200)
    assert large < 6 * small, (small, large)
