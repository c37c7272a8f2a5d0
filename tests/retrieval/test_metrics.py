"""Metrics on hand-computed cases, including the official formula's quirks."""

import pytest

from attrret.retrieval.metrics import (
    LabelRelevance,
    SetRelevance,
    evaluate_lists,
    label_keys,
    official_ap,
    recall_at,
    sound_ap,
)
from attrret.schema import load_schema
from attrret.schema.codes import code21_to_values

REL = {"a", "b", "c"}
rel = REL.__contains__


def test_official_ap_hand_computed():
    # hits at ranks 1 and 3: (1/1 + 2/3) / 2
    assert official_ap(["a", "x", "b", "y"], rel) == pytest.approx((1 + 2 / 3) / 2)
    assert official_ap(["x", "y"], rel) == 0.0


def test_official_quirk_divides_by_hits_found():
    # one hit at rank 1 then nine misses: perfect under the official formula, not under the sound one
    names = ["a"] + [f"x{i}" for i in range(9)]
    assert official_ap(names, rel) == 1.0
    assert sound_ap(names, rel, n_relevant=3) == pytest.approx(1 / 3)


def test_official_quirk_no_dedup():
    # the same relevant name twice counts twice: (1/1 + 2/2) / 2 = 1
    assert official_ap(["a", "a", "x"], rel) == 1.0
    # sound: the repeat is a miss; hits a@1, b@4 -> (1 + 2/4) / min(10, 3)
    assert sound_ap(["a", "a", "x", "b"], rel, n_relevant=3) == pytest.approx((1 + 0.5) / 3)


def test_lists_are_cut_at_k():
    names = [f"x{i}" for i in range(10)] + ["a"]
    assert official_ap(names, rel) == 0.0
    assert official_ap(names, rel, k=11) == pytest.approx(1 / 11)
    assert recall_at(names, rel, 10) == 0.0


def test_sound_divides_by_min_k_relevant():
    many = {f"r{i}" for i in range(20)}
    names = [f"r{i}" for i in range(5)] + [f"x{i}" for i in range(5)]
    assert sound_ap(names, many.__contains__, n_relevant=20) == pytest.approx(5 / 10)


def test_recall():
    assert recall_at(["x", "a"], rel, 1) == 0.0
    assert recall_at(["x", "a"], rel, 5) == 1.0


def test_evaluate_lists_per_kind():
    r = SetRelevance.from_rows([("q1", ["a"]), ("q2", ["b", "c"])])
    out = evaluate_lists([["a"], ["x", "c"]], r, ["pedestrian", "vehicle"])
    assert out["pedestrian"].official_map == 1.0
    assert out["vehicle"].official_map == pytest.approx(0.5)
    assert out["vehicle"].sound_map == pytest.approx(0.5 / 2)
    assert out["all"].official_map == pytest.approx(0.75)
    assert out["all"].recall[1] == 0.5


def test_label_relevance_track2_rules():
    s = load_schema()
    base = "1,0,1,0,1,0,0,0,0,0,1,0,0,1,0,0,0,0,0,0,0"  # female, 18-60, front, shoulder bag, short sleeve
    superset = "1,0,1,0,0,0,1,1,0,0,1,0,0,1,0,0,0,0,0,0,0"  # + hat, other orientation bits differ
    other_gender = "0,0,1,0,1,0,0,0,0,0,1,0,0,1,0,0,0,0,0,0,0"
    missing_bag = "1,0,1,0,1,0,0,0,0,0,0,0,0,1,0,0,0,0,0,0,0"
    codes = [base, superset, other_gender, missing_bag]
    values = [code21_to_values(c, s.pedestrian) for c in codes]
    veh = [{"color": "red", "brand": "Audi", "type": "SUV"}, {"color": "red", "brand": "Audi", "type": "SUV"},
           {"color": "red", "brand": "Audi", "type": "Sedan"}]
    kinds = ["pedestrian"] * 4 + ["vehicle"] * 3
    keys = label_keys(values + veh, kinds, s)
    names = ["p0", "p1", "p2", "p3", "v0", "v1", "v2"]
    r = LabelRelevance(names, kinds, [f"c{i}" for i in range(7)], keys)
    # the query image's orientation bit (front) is a positive: p1 (back) lacks it -> not relevant
    assert [r.is_relevant(0, n) for n in names] == [True, False, False, False, False, False, False]
    assert r.n_relevant(0) == 1
    # p3's positives (female, 18-60, front, short) are all in p0: p0 is relevant to query 3
    assert r.is_relevant(3, "p0") and r.n_relevant(3) == 2
    assert r.is_relevant(4, "v1") and not r.is_relevant(4, "v2") and r.n_relevant(4) == 2
    assert not r.is_relevant(0, "unknown.jpg")


def test_partial_relevance_drops_unjudged_images_before_the_cut():
    from attrret.retrieval.metrics import PartialRelevance, evaluate_lists

    labels = {"a": {"brand": "Audi"}, "b": {"color": "red"}, "c": {"brand": "Audi", "type": "SUV"}, "d": {"brand": "BMW"}}
    rel = PartialRelevance(["an Audi", "a red Audi"], [{"brand": "Audi"}, {"brand": "Audi", "color": "red"}],
                           list(labels), list(labels.values()))
    assert [rel.is_judged(0, n) for n in "abcd"] == [True, False, True, True]
    assert rel.n_relevant(0) == 2 and rel.n_relevant(1) == 0  # no image settles both groups
    # "b" is unjudged for query 0: dropped, so "c" moves up to rank 2 inside k = 2
    got = evaluate_lists([["a", "b", "c", "d"], ["a", "b"]], rel, ["vehicle", "vehicle"], k=2)["all"]
    assert got.sound_map == pytest.approx((1.0 + 0.0) / 2) and got.official_map == pytest.approx(0.5)
    assert got.recall[1] == pytest.approx(0.5)


def test_partial_relevance_refuses_lists_cut_before_the_drop():
    """A top-2 list whose unjudged name was dropped would count the empty place as a miss:
    the ranking must go deeper than k, and evaluate_lists says so instead of scoring it."""
    from attrret.retrieval.metrics import PartialRelevance, evaluate_lists

    labels = {"a": {"brand": "Audi"}, "b": {"color": "red"}, "c": {"brand": "Audi"}}
    rel = PartialRelevance(["an Audi"], [{"brand": "Audi"}], list(labels), list(labels.values()))
    assert rel.n_judged(0) == 2
    with pytest.raises(ValueError, match="rank deeper"):
        evaluate_lists([["a", "b"]], rel, ["vehicle"], k=2)
    got = evaluate_lists([["a", "b", "c"]], rel, ["vehicle"], k=2)["all"]
    assert got.sound_map == pytest.approx(1.0)
