"""The caption parser on traps, fuzzy matches, negation, free-form queries and kind detection."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from rapidfuzz import fuzz

from attrret.data.track2 import read_label_file
from attrret.parser import CaptionParser, Query
from attrret.parser.fuzzy import DEFAULT_FUZZY_CUTOFF, MIN_FUZZY_LEN
from attrret.parser.grammar import track2_form
from attrret.parser.lexicon import LexiconError, load_lexicon
from attrret.schema import load_schema

#: The groups of the Track-2 code: what a Track-2 caption can state or imply (the clothing groups
#: outside it stay unknown, except "boots", which the grammar writes).
CODED = frozenset(g.name for g in load_schema().pedestrian.groups if g.bits)
T2_FEMALE = "A female pedestrian who is between 18 and 60 years old, with her body facing the camera. She is in a short sleeve shirt."


def spans_of(q: Query) -> list[tuple[str, str, str, bool]]:
    return [(s.text, s.group, s.cls, s.fuzzy) for s in q.spans]


# ------------------------------------------------------------------ traps (whole tokens)
def test_hat_never_fires_inside_that(parser):
    q = parser.parse("A man that is walking")
    assert "hat" not in q.stated
    q = parser.parse("A pedestrian who is male is an adult person aged 18-60, and is standing sideways. He is wearning a coat that is long.")
    assert q.stated["coat"] == "yes"
    assert "hat" not in q.stated and q.implied["hat"] == "no"


@pytest.mark.parametrize(
    ("caption", "gender"),
    [("a female with a bag", "female"), ("a woman crossing", "female"), ("a male walking", "male"), ("the man", "male")],
)
def test_male_and_man_never_fire_inside_female_and_woman(parser, caption, gender):
    q = parser.parse(caption)
    assert q.stated["gender"] == gender
    assert {s.cls for s in q.spans if s.group == "gender"} == {gender}


def test_not_an_adult_is_under_18_not_adult(parser):
    q = parser.parse("A walking man who is not an adult, with his body back to the camera. He is in a tee shirt with short sleeves.")
    assert q.stated["age"] == "under18"
    assert [s.text for s in q.spans if s.group == "age"] == ["not an adult"]
    assert parser.parse("an adult with a hat").stated["age"] == "18-60"


def test_longest_brand_wins_and_trailing_type_is_read(parser):
    q = parser.parse("This is a red Balong Heavy Truck Truck.")
    assert q.stated == {"color": "red", "brand": "Balong Heavy Truck", "type": "Truck"}
    q = parser.parse("This is a white Golden Dragon Bus.")
    assert q.stated == {"color": "white", "brand": "Golden Dragon", "type": "Bus"}
    assert parser.parse("An orange MORRIS-GARAGE SUV.").stated == {"color": "orange", "brand": "MORRIS-GARAGE", "type": "SUV"}


def test_track2_typos_and_no_space_after_comma(parser):
    q = parser.parse("A male pedestrian who is aged over 60, and is standing sideways. He is wearning a hat,glasses,a longcoat,boots.")
    assert q.stated == {"gender": "male", "age": "over60", "orientation": "side", "hat": "yes", "glasses": "yes", "coat": "yes",
                        "boots": "yes"}  # the grammar writes boots; the code drops them, the schema has them
    assert q.unmatched == ()  # "wearning" is a known grammar typo
    q = parser.parse("A walking woman who is a minor, with her body facing the camera and has a shoulderbag. She is wearning boots.")
    assert q.stated["bag"] == "shoulder" and q.stated["age"] == "under18"
    assert q.implied == {"handbag": "no", "hat": "no", "glasses": "no", "coat": "no"}
    assert set(q.unknown) & CODED == {"holding", "sleeve", "upper", "skirt"}


# ------------------------------------------------------------------ grammar: tri-state
def test_form_b_states_sleeve_and_implies_the_rest(parser):
    q = parser.parse(T2_FEMALE)
    assert q.stated == {"gender": "female", "age": "18-60", "orientation": "front", "sleeve": "short"}
    assert q.implied == {"handbag": "no", "bag": "none", "holding": "no", "hat": "no", "glasses": "no", "coat": "no", "upper": "none", "skirt": "no"}
    assert set(q.unknown) & CODED == set()  # every group of the code known; those outside it unknown


@pytest.mark.parametrize(
    ("carry", "stated", "implied", "unknown"),
    [
        ("clutching a handbag", {"handbag": "yes"}, {}, {"bag", "holding"}),
        ("is carrying a shoulder bag", {"bag": "shoulder"}, {"handbag": "no"}, {"holding"}),
        ("has a bag over the shoulder", {"bag": "shoulder"}, {"handbag": "no"}, {"holding"}),
        ("with a backpack", {"bag": "backpack"}, {"handbag": "no"}, {"holding"}),
        ("holds objects in front", {"holding": "yes"}, {"handbag": "no", "bag": "none"}, set()),
    ],
)
def test_carry_priority(parser, carry, stated, implied, unknown):
    q = parser.parse(f"A male pedestrian who is a minor, with his body back to the camera and {carry}. He is in a shirt with long sleeves.")
    carry_groups = {"handbag", "bag", "holding"}
    assert {g: c for g, c in q.stated.items() if g in carry_groups} == stated
    assert {g: c for g, c in q.implied.items() if g in carry_groups} == implied
    assert set(q.unknown) & CODED == unknown


def test_grammar_form_detection():
    assert track2_form(T2_FEMALE) == "B"
    assert track2_form("A walking man who is a minor, and is standing sideways. He is wearning glasses.") == "A"
    assert track2_form("woman with a backpack. She is in a hurry") is None  # no Track-2 subject phrase
    assert track2_form("A man with glasses") is None


def test_three_states_are_disjoint_and_cover_the_kind(parser):
    schema = load_schema()
    for caption in (T2_FEMALE, "woman with a backpack and a hat", "white toyota suv", "gray van"):
        q = parser.parse(caption)
        groups = schema.subject(q.kind).group_names
        assert not set(q.stated) & set(q.implied)
        assert sorted([*q.stated, *q.implied, *q.unknown]) == sorted(groups)
        assert list(q.unknown) == [g for g in groups if g in q.unknown]  # schema order


# ------------------------------------------------------------------ free-form queries
def test_free_form_pedestrian_queries(parser):
    q = parser.parse("woman with a backpack and a hat")
    assert (q.kind, q.stated, q.implied) == ("pedestrian", {"gender": "female", "bag": "backpack", "hat": "yes"}, {})
    q = parser.parse("man wearing glasses, no bag")
    assert q.stated == {"gender": "male", "glasses": "yes", "handbag": "no", "bag": "none"}
    q = parser.parse("kid in a skirt")
    assert (q.kind, q.stated) == ("pedestrian", {"age": "under18", "skirt": "yes"})
    assert "gender" in q.unknown  # a free-form query implies nothing


def test_free_form_vehicle_queries(parser):
    q = parser.parse("white toyota suv")
    assert (q.kind, q.stated, q.unknown) == ("vehicle", {"color": "white", "brand": "Toyota", "type": "SUV"}, ())
    q = parser.parse("gray van")
    assert (q.kind, q.stated, q.unknown) == ("vehicle", {"color": "grey", "type": "Minivan"}, ("brand",))
    assert parser.parse("a silver Mercedes-Benz").stated == {"color": "grey", "brand": "Benz"}
    assert parser.parse("VW sedan").stated == {"brand": "Volkswagen", "type": "Sedan"}
    assert parser.parse("a great wall pickup").stated == {"brand": "GreatWall", "type": "Truck"}
    assert parser.parse("black MG").stated == {"color": "black", "brand": "MORRIS-GARAGE"}


def test_spans_carry_character_offsets_into_the_caption(parser):
    caption = "This is a red Balong Heavy Truck Truck."
    for s in parser.parse(caption).spans:
        assert caption[s.start : s.end] == s.text


def test_words_that_match_nothing_are_reported(parser):
    q = parser.parse("woman with an umbrella and a backpack")
    assert q.unmatched == ("umbrella",)
    assert q.stated == {"gender": "female", "bag": "backpack"}
    # words of the other subject are reported too: a colour says nothing about a pedestrian here
    q = parser.parse("woman with a red umbrella")
    assert q.stated == {"gender": "female"} and q.unmatched == ("red umbrella",)
    q = parser.parse("woman in a red dress")  # a colour before a garment is that garment's colour
    assert q.stated == {"gender": "female", "skirt": "yes", "upper_color_red": "yes"} and q.unmatched == ()


# ------------------------------------------------------------------ negation
@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("man with no hat", {"gender": "male", "hat": "no"}),
        ("woman without glasses", {"gender": "female", "glasses": "no"}),
        ("a man not carrying a bag", {"gender": "male", "handbag": "no", "bag": "none"}),
        ("a woman who doesn't wear a hat", {"gender": "female", "hat": "no"}),
        ("person without hat or glasses", {"hat": "no", "glasses": "no"}),
        ("no hat and a backpack", {"hat": "no", "bag": "backpack"}),  # "and" ends the scope
        ("without a hat, glasses", {"hat": "no", "glasses": "yes"}),  # so does punctuation
        ("man with no long sleeves", {"gender": "male", "sleeve": "short"}),  # two classes: the other
        ("woman without a backpack", {"gender": "female"}),  # which bag, if any, is not said
    ],
)
def test_negation(parser, caption, expected):
    assert parser.parse(caption).stated == expected


def test_negated_span_is_reported_with_the_negated_class(parser):
    assert spans_of(parser.parse("no hat")) == [("hat", "hat", "no", False)]


# ------------------------------------------------------------------ fuzzy
@pytest.mark.parametrize(
    ("caption", "group", "cls", "text"),
    [
        ("woman with a sholder bag", "bag", "shoulder", "sholder bag"),
        ("man with a backpak", "bag", "backpack", "backpak"),
        ("a black Volkswagon", "brand", "Volkswagen", "Volkswagon"),
        ("woman wearing glases", "glasses", "yes", "glases"),
    ],
)
def test_misspelt_phrases_match_fuzzily_and_are_marked(parser, caption, group, cls, text):
    q = parser.parse(caption)
    assert q.stated[group] == cls
    assert (text, group, cls, True) in spans_of(q)
    assert q.unmatched == ()
    assert not any(s.fuzzy for s in q.spans if s.text != text)


@pytest.mark.parametrize(
    ("caption", "group"),
    [
        ("a woman in a shirt", "skirt"),  # shirt/skirt scores 80
        ("a man in long trousers", "sleeve"),  # the leftover word must itself be close: not "long sleeves"
        ("a woman in a blouse", "color"),
        ("that person", "hat"),  # short words are never fuzzed
    ],
)
def test_fuzzy_cutoff_avoids_confusable_words(parser, caption, group):
    q = parser.parse(caption)
    assert not any(s.fuzzy for s in q.spans)
    assert group not in q.stated


def test_documented_cutoff_separates_typos_from_confusables():
    assert DEFAULT_FUZZY_CUTOFF == 85.0 and MIN_FUZZY_LEN == 4
    for typo, word in [("sholder", "shoulder"), ("backpak", "backpack"), ("volkswagon", "volkswagen"), ("glases", "glasses")]:
        assert fuzz.ratio(typo, word) >= DEFAULT_FUZZY_CUTOFF, (typo, word)
    for a, b in [("shirt", "skirt"), ("shirts", "skirts"), ("plain", "plaid"), ("glass", "glasses"), ("female", "male"), ("coach", "couch")]:
        assert fuzz.ratio(a, b) < DEFAULT_FUZZY_CUTOFF, (a, b)
    assert fuzz.ratio("that", "hat") >= DEFAULT_FUZZY_CUTOFF  # why 3-letter lexicon words are never fuzzy targets


def test_a_cutoff_of_100_turns_fuzzy_matching_off():
    strict = CaptionParser(fuzzy_cutoff=100)
    q = strict.parse("man with a backpak")
    assert "bag" not in q.stated and q.unmatched == ("backpak",)
    with pytest.raises(ValueError):
        CaptionParser(fuzzy_cutoff=0)


# ------------------------------------------------------------------ kind
@pytest.mark.parametrize(
    ("caption", "kind"),
    [
        ("a pedestrian", "pedestrian"),
        ("a person", "pedestrian"),
        ("a car", "vehicle"),
        ("This is an orange SUV.", "vehicle"),
        ("man next to a van", "pedestrian"),  # a cue word outweighs one attribute
        ("person next to a red car", "vehicle"),
        ("hello world", None),
        ("", None),
    ],
)
def test_kind_detection(parser, caption, kind):
    assert parser.parse(caption).kind == kind


def test_no_kind_means_no_groups(parser):
    q = parser.parse("hello world")
    assert (q.stated, q.implied, q.unknown) == ({}, {}, ())
    assert q.unmatched == ("hello world",)  # adjacent unexplained words are one phrase
    q = parser.parse("a man in a car")  # one cue word each: a tie, so no kind, and nothing used
    assert (q.kind, q.stated, q.spans, q.unmatched) == (None, {}, (), ("man", "car"))


# ------------------------------------------------------------------ API behaviour
def test_parse_many_keeps_order_and_cached_results_cannot_be_corrupted(parser):
    caps = ["gray van", T2_FEMALE, "gray van"]
    qs = parser.parse_many(caps)
    assert [q.caption for q in qs] == caps
    qs[0].stated["color"] = "pink"  # a caller mutating its copy ...
    assert parser.parse("gray van").stated["color"] == "grey"  # ... does not touch the cache
    uncached = CaptionParser(cache_size=0)
    assert uncached.parse_many(caps) == parser.parse_many(caps)


def test_parse_rejects_non_strings(parser):
    with pytest.raises(TypeError):
        parser.parse(None)  # type: ignore[arg-type]


# ------------------------------------------------------------------ lexicon validation
def test_lexicon_is_validated_against_the_schema(tmp_path):
    schema = load_schema()
    bad_class = tmp_path / "a.toml"
    bad_class.write_text('[[pedestrian]]\nset = { hat = "maybe" }\nphrases = ["hat"]\n')
    with pytest.raises(LexiconError, match="maybe"):
        load_lexicon(schema, bad_class)
    bad_group = tmp_path / "b.toml"
    bad_group.write_text('[[vehicle]]\nset = { wheels = "4" }\nphrases = ["car"]\n')
    with pytest.raises(LexiconError, match="wheels"):
        load_lexicon(schema, bad_group)
    twice = tmp_path / "c.toml"
    twice.write_text('[[pedestrian]]\nset = { hat = "yes" }\nphrases = ["cap"]\n[[pedestrian]]\nset = { hat = "no" }\nphrases = ["Cap"]\n')
    with pytest.raises(LexiconError, match="twice"):
        load_lexicon(schema, twice)
    # vehicle class names come from the schema: a schema class clashing with a synonym is caught
    clash = tmp_path / "d.toml"
    clash.write_text('[[vehicle]]\nset = { color = "grey" }\nphrases = ["black"]\n')
    with pytest.raises(LexiconError, match="twice"):
        load_lexicon(schema, clash)


def test_every_schema_class_is_reachable_from_the_lexicon():
    schema = load_schema()
    lex = load_lexicon(schema)
    reachable = {(e.subject, g, c) for e in lex.entries for g, c in e.sets}
    for subject in (schema.pedestrian, schema.vehicle):
        for g in subject.groups:
            for c in g.classes:
                if (g.name, c) in {("bag", "none"), ("hat", "no"), ("glasses", "no"), ("handbag", "no"), ("holding", "no"), ("coat", "no"),
                                   ("skirt", "no"), ("boots", "no")}:
                    continue  # stated only by negation or implied by the grammar
                if (g.name, c) == ("lower_type", "skirt"):
                    continue  # the skirt words state the Track-2 group skirt, which says it
                if g.family:
                    assert lex.clothing is not None and g.label in lex.clothing.colours.values()  # by rule: a colour before a garment
                    continue
                assert (subject.name, g.name, c) in reachable, (subject.name, g.name, c)


# ------------------------------------------------------------------ clause-level reading (speed)
CLAUSE_EDGE_CASES = [
    "no hat, glasses",  # a negation's scope ends at the comma, so the clauses read apart
    "A woman at 9 a.m. no hat",  # "a.m." is one word, not clause punctuation: not cut there
    "a woman without a.m. hat",  # ... so the negation still reaches "hat"
    "man, no bag,  hat",  # two spaces: not cut
    "woman with no sholder bag, backpak",  # fuzzy words in two clauses
    "a red car. a woman with a hat",  # kind votes add up over clauses
    "no. hat",
    "",
]


def test_clause_by_clause_reading_equals_whole_caption_reading(parser, val_sample, pa100k_labels):
    """The parser reads cached clauses apart; that must give exactly what one pass over the
    whole caption gives (values, their order, spans, offsets, unmatched words)."""
    captions = [ln.caption for src in (val_sample, pa100k_labels) for ln in read_label_file(src)]
    captions += CLAUSE_EDGE_CASES + [T2_FEMALE, "white toyota suv, not a van", "kid in a skirt; no hat! glasses? bag"]
    from tests.parser.test_free_form import CASES

    captions += [c.query for c in CASES]  # free-form text: lists, key: value, sets, typos
    cut = 0
    for caption in dict.fromkeys(captions):
        clauses = parser.clauses(caption)
        cut += len(clauses) > 1
        whole = parser.join(caption, [(0, caption, parser.read_clause(caption))])
        got = parser.parse(caption)
        assert got == whole, caption
        assert json.dumps(got.to_json()) == json.dumps(whole.to_json()), caption  # dict order too
    assert cut > 2000  # most captions really are read clause by clause
    assert [text for _, text, _ in parser.clauses("A woman at 9 a.m. no hat, glasses.")] == ["A woman at 9 a.m. ", "no hat, glasses."]


def test_lexicon_phrases_may_not_hold_clause_punctuation(tmp_path):
    lex = tmp_path / "l.toml"
    lex.write_text('[[pedestrian]]\nset = { hat = "yes" }\nphrases = ["hat, cap"]\n')
    with pytest.raises(LexiconError, match="clause punctuation"):
        CaptionParser(lexicon=load_lexicon(load_schema(), lex))


def test_the_parser_imports_neither_spacy_nor_torch():
    """The parser tokenises by itself (speed, and a ~3 s import saved); torch still imports after."""
    code = (
        "import sys\n"
        "from attrret.parser import CaptionParser\n"
        "q = CaptionParser().parse('a woman with a backpack')\n"
        "assert 'spacy' not in sys.modules, 'spacy loaded by the parser'\n"
        "assert 'torch' not in sys.modules, 'torch loaded by the parser'\n"
        "import torch\n"
        "assert float(torch.ones(2).sum()) == 2.0\n"
        "print(sorted(q.stated.items()))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[('bag', 'backpack'), ('gender', 'female')]"


def test_query_make_is_the_same_value_as_the_constructor():
    args = ("c", "vehicle", {"color": "red"}, {}, ("type",), (), ("x",), {"brand": ("Audi", "BMW")}, {}, ())
    fast, plain = Query.make(*args), Query(*args)
    assert fast == plain and repr(fast) == repr(plain) and fast.to_json() == plain.to_json()
    with pytest.raises(AttributeError):
        fast.kind = "pedestrian"  # type: ignore[misc]  # still frozen


def test_track2_vehicle_captions_read_from_their_slots_equal_the_lexicon_reading(parser):
    """Every caption the Track-2 vehicle grammar can write (prefix x colour x brand x type, and
    the incomplete train forms) reads its values from its slots, the same as through the
    lexicon, except where the slots settle what the words alone cannot ("Mini Bus": brand
    Mini and type Bus, where free text "mini bus" is a microbus)."""
    v = load_schema().vehicle
    colors, brands, types = (v.group(g).classes for g in ("color", "brand", "type"))
    cases = []
    for c in colors:
        art = "an" if c == "orange" else "a"
        for prefix in (f"This is {art}", art.capitalize()):
            cases += [(f"{prefix} {c} {b}.", {"color": c, "brand": b}) for b in brands]
            cases += [(f"{prefix} {c} {b} {t}.", {"color": c, "brand": b, "type": t}) for b in brands for t in types]
    cases += [(f"A {t}.", {"type": t}) for t in types] + [(f"This is a {b}.", {"brand": b}) for b in brands]
    differ = set()
    for caption, values in cases:
        fast = parser.parse(caption)
        assert fast.stated == values, caption
        slow = parser.join(caption, [(0, caption, parser.read_clause(caption))])
        if fast != slow:
            differ.add(caption)
    assert differ == {caption for caption, values in cases if " Mini Bus." in caption}
    assert parser.parse("a white mini bus").stated == {"color": "white", "type": "Microbus"}


def test_every_vehicle_vocabulary_spelling_reads_in_any_case(parser):
    """Each colour, type and brand of the vocabulary (vehicle_vocab.json spellings), written
    as is, lower-cased, upper-cased or title-cased, in a free-form query."""
    import json as _json
    from pathlib import Path

    vocab_file = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "track2" / "vehicle_vocab.json"
    v = load_schema().vehicle
    if vocab_file.exists():  # the schema spells the vocabulary as the benchmark does
        vocab = _json.loads(vocab_file.read_text())
        assert sorted(map(str, [x for vals in vocab.values() for x in vals])) == sorted(
            c for g in v.groups for c in g.classes)
    for g in v.groups:
        for cls in g.classes:
            for written in {cls, cls.lower(), cls.upper(), cls.title()}:
                q = parser.parse(f"a {written} in the street")
                assert q.kind == "vehicle" and q.stated == {g.name: cls}, written
