"""The ranker on small real indexes: scoring, implied values, hidden priors, kind gating, explain."""

import numpy as np
import pytest

from attrret.parser.query import Query
from attrret.retrieval.priors import HiddenPriors
from attrret.retrieval.ranker import RankOptions, explain, rank
from attrret.schema import load_schema

PED = {"router": [0.95, 0.05]}
VEH = {"router": [0.1, 0.9]}


def ped(**kw):
    return {**PED, **{f"pedestrian.{k}": v for k, v in kw.items()}}


def q_ped(stated, implied=None, unknown=()):
    return Query("caption", "pedestrian", dict(stated), dict(implied or {}), tuple(unknown))


def names(index, ranking, j=0):
    return [index.names[r] for r in ranking.rows[j]]


def test_keyword_euclidean_prefers_matching_images(index_factory):
    idx = index_factory({
        "a.jpg": ped(gender=[0.9, 0.1], hat=[0.1, 0.9]),
        "b.jpg": ped(gender=[0.8, 0.2], hat=[0.9, 0.1]),
        "c.jpg": ped(gender=[0.1, 0.9], hat=[0.9, 0.1]),
    })
    r = rank(idx, [q_ped({"gender": "female", "hat": "yes"})], RankOptions(k=3))
    assert names(idx, r) == ["b.jpg", "a.jpg", "c.jpg"]
    # d(b) = (1-.8)^2 + .2^2 + (1-.9)^2 + .1^2
    assert r.dist[0][0] == pytest.approx(0.04 + 0.04 + 0.01 + 0.01)


def test_use_implied_enforces_grammar_negatives(index_factory):
    idx = index_factory({
        "a.jpg": ped(gender=[0.95, 0.05], hat=[0.9, 0.1]),
        "b.jpg": ped(gender=[0.7, 0.3], hat=[0.05, 0.95]),
    })
    q = q_ped({"gender": "female"}, implied={"hat": "no"})
    assert names(idx, rank(idx, [q], RankOptions(k=2))) == ["a.jpg", "b.jpg"]
    assert names(idx, rank(idx, [q], RankOptions(k=2, use_implied=True))) == ["b.jpg", "a.jpg"]


def test_hidden_priors_pull_unknown_groups(index_factory):
    s = load_schema()
    idx = index_factory({"a.jpg": ped(sleeve=[0.1, 0.9]), "b.jpg": ped(sleeve=[0.9, 0.1])})
    train = [{"gender": "female", "sleeve": "short"}] * 40 + [{"gender": "female", "sleeve": "long"}] * 5 + \
            [{"gender": "male", "sleeve": "long"}] * 40
    priors = HiddenPriors.from_values(train, s.pedestrian)
    t, used = priors.target("sleeve", {"gender": "female"})
    assert used == (("gender", "female"),) and t[0] == pytest.approx(41 / 47)
    q = q_ped({"gender": "female"}, unknown=("sleeve",))
    assert names(idx, rank(idx, [q], RankOptions(k=2))) == ["a.jpg", "b.jpg"]  # tie: name order
    r = rank(idx, [q], RankOptions(k=2), priors)
    assert names(idx, r) == ["b.jpg", "a.jpg"]
    assert r.plans[0].priors["sleeve"][0] == pytest.approx(41 / 47)
    # a group no training label knows (hair, in Track-2 data) gets no prior: uniform is no knowledge
    idx = index_factory({"a.jpg": ped(sleeve=[0.1, 0.9], hair=[0.8, 0.1, 0.1]), "b.jpg": ped(sleeve=[0.9, 0.1], hair=[0.3, 0.4, 0.3])})
    r = rank(idx, [q_ped({"gender": "female"}, unknown=("sleeve", "hair"))], RankOptions(k=2), priors)
    assert set(r.plans[0].priors) == {"sleeve"} and "hair" not in priors.known


def test_priors_back_off_when_support_is_small():
    s = load_schema()
    train = [{"gender": "female", "coat": "yes", "sleeve": "long"}] * 3 + [{"gender": "female", "coat": "no", "sleeve": "short"}] * 50
    priors = HiddenPriors.from_values(train, s.pedestrian, min_support=10)
    _, used = priors.target("sleeve", {"gender": "female", "coat": "yes"})
    assert used == (("gender", "female"),)


def test_kind_gating_hard_and_soft(index_factory):
    idx = index_factory({
        "car.jpg": {**VEH, "pedestrian.gender": [1.0, 0.0]},
        "p1.jpg": ped(gender=[0.6, 0.4]),
        "v1.jpg": {**VEH, "vehicle.color": [1.0] + [0.0] * 10},
    })
    q = q_ped({"gender": "female"})
    hard = rank(idx, [q], RankOptions(k=10))
    assert names(idx, hard) == ["p1.jpg"]
    soft = rank(idx, [q], RankOptions(k=10, gate="soft", penalty=1.0))
    # car: 0 + 0.9 penalty; p1: 0.32 + 0.05
    assert names(idx, soft)[:2] == ["p1.jpg", "car.jpg"]
    soft0 = rank(idx, [q], RankOptions(k=10, gate="soft", penalty=0.0))
    assert names(idx, soft0)[0] == "car.jpg"
    color = load_schema().vehicle.group("color").classes[0]
    qv = Query("c", "vehicle", {"color": color})
    assert names(idx, rank(idx, [qv], RankOptions(k=10))) == ["car.jpg", "v1.jpg"][::-1]


def test_no_kind_and_missing_columns_warn(index_factory):
    idx = index_factory({"a.jpg": ped(gender=[0.9, 0.1])}, tasks=["pedestrian.gender"])
    r = rank(idx, [Query("???", None), q_ped({"gender": "female", "hat": "yes"})])
    assert len(r.rows[0]) == 0 and names(idx, r, 1) == ["a.jpg"]
    text = " ".join(r.warnings)
    assert "no recognised kind" in text and "hat" in text and "no router" in text


def test_backends_identical(index_factory):
    rng = np.random.default_rng(0)
    rows = {}
    for i in range(300):
        d = {"router": [0.9, 0.1]}
        for g in load_schema().pedestrian.groups:
            p = rng.random(g.size)
            d[g.task] = list(p / p.sum())
        rows[f"{i:04d}.jpg"] = d
    idx = index_factory(rows)
    qs = [q_ped({"gender": "female", "age": "18-60"}), q_ped({"gender": "male", "hat": "yes", "bag": "none"})]
    a = rank(idx, qs, RankOptions(k=10))
    for backend in ("torch", "numpy"):
        b = rank(idx, qs, RankOptions(k=10, backend=backend))
        assert all((x == y).all() for x, y in zip(a.rows, b.rows)), backend
    lin = rank(idx, qs, RankOptions(k=10, scoring="linear"))
    assert any((x != y).any() for x, y in zip(a.rows, lin.rows))
    import gc

    assert gc.isenabled()  # rank pauses the cycle collector only while it runs


def test_explain_matched_conflicted_unknown(index_factory):
    idx = index_factory({"a.jpg": ped(gender=[0.9, 0.1], hat=[0.2, 0.8])})
    q = q_ped({"gender": "female", "hat": "yes"}, unknown=("sleeve",))
    out = explain(idx, rank(idx, [q]), ["caption"])
    res = out[0]["results"][0]
    assert res["image"] == "a.jpg" and res["matched"] == ["gender"] and res["conflicted"] == ["hat"]
    assert res["unknown"] == ["sleeve"]


def test_bad_options_rejected():
    with pytest.raises(ValueError):
        RankOptions(scoring="cosine")
    with pytest.raises(ValueError):
        RankOptions(backend="annoy")


def test_loglik_charges_a_confident_mistake_more_than_euclidean(index_factory):
    """Euclidean saturates at 2 per group; minus the log-likelihood does not (ranker module doc)."""
    hat = load_schema().pedestrian.group("hat").classes
    no = [1.0 if c == "no" else 0.0 for c in hat]
    mix = lambda p_no: [p_no * x + (1 - p_no) * (1 - x) for x in no]  # noqa: E731
    idx = index_factory({
        "a.jpg": ped(gender=[1.0, 0.0], hat=mix(0.05)),  # sure female, wrongly sure of a hat
        "b.jpg": ped(gender=[0.3, 0.7], hat=mix(0.3)),  # unsure of both
    })
    q = q_ped({"gender": "female", "hat": "no"})
    assert names(idx, rank(idx, [q], RankOptions(k=2))) == ["a.jpg", "b.jpg"]  # 1.805 < 1.96
    ll = rank(idx, [q], RankOptions(k=2, scoring="loglik"))
    assert names(idx, ll) == ["b.jpg", "a.jpg"]
    assert ll.dist[0] == pytest.approx([-2 * np.log(0.3), -np.log(1 - 1e-6) - np.log(0.05)], rel=1e-6)


def test_loglik_soft_gate_adds_minus_log_kind(index_factory):
    idx = index_factory({"car.jpg": {**VEH, "pedestrian.gender": [1.0, 0.0]}, "p1.jpg": ped(gender=[0.6, 0.4])})
    soft = rank(idx, [q_ped({"gender": "female"})], RankOptions(k=2, gate="soft", penalty=1.0, scoring="loglik"))
    assert names(idx, soft) == ["p1.jpg", "car.jpg"]
    assert soft.dist[0] == pytest.approx([-np.log(0.6) - np.log(0.95), -np.log(1 - 1e-6) - np.log(0.1)], rel=1e-6)


def test_loglik_with_a_rank_cache_is_the_same_ranking(index_factory):
    from attrret.retrieval.ranker import RankCache

    rng = np.random.default_rng(1)
    rows = {}
    for i in range(200):
        d = {"router": [0.9, 0.1] if i % 4 else [0.1, 0.9]}
        for g in load_schema().pedestrian.groups:
            p = rng.random(g.size) ** 3
            d[g.task] = list(p / p.sum())
        rows[f"{i:04d}.jpg"] = d
    idx = index_factory(rows)
    qs = [q_ped({"gender": "female", "age": "18-60"}), q_ped({"gender": "male", "hat": "yes", "bag": "none"})]
    cache = RankCache(idx, load_schema())
    for scoring in ("euclidean", "loglik", "euclidean"):  # both layouts in one cache, neither disturbing the other
        opts = RankOptions(k=10, scoring=scoring)
        a, b = rank(idx, qs, opts), rank(idx, qs, opts, cache=cache)
        assert all((x == y).all() for x, y in zip(a.rows, b.rows)) and all(np.array_equal(x, y) for x, y in zip(a.dist, b.dist))
