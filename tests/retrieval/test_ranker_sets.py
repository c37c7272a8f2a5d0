"""Set constraints in the ranker ("not X", "X or Y") and alternatives across the yes/no groups of
multi-label groups ("black or grey trousers"): the distance of the module doc, checked against
a numpy brute force on every backend and every scoring, plus what it means."""

from __future__ import annotations

import numpy as np
import pytest

from attrret.parser import CaptionParser
from attrret.parser.query import Query
from attrret.retrieval.ranker import RankOptions, explain, rank
from attrret.retrieval.topk import BACKENDS
from attrret.schema import load_schema

SCHEMA = load_schema()


def _random_rows(n: int, seed: int) -> dict[str, dict[str, list[float]]]:
    rng = np.random.default_rng(seed)
    rows = {}
    for i in range(n):
        vehicle = i % 3 == 0
        d = {"router": [0.2, 0.8] if vehicle else [0.9, 0.1]}
        for g in SCHEMA.pedestrian.groups + SCHEMA.vehicle.groups:
            p = rng.random(g.size) ** 3  # peaky, like classifier outputs
            if i % 7 == 0:
                p = np.zeros(g.size)
                p[rng.integers(g.size)] = 1.0  # sure images: set members must score exactly 0
            d[g.task] = list(p / p.sum())
        rows[f"{i:04d}.jpg"] = d
    return rows


QUERIES = [
    Query("q", "vehicle", {"type": "SUV"}, either={"color": ("black", "white")}),
    Query("q", "vehicle", {}, negated={"color": ("black",)}),
    Query("q", "vehicle", {"color": "red"}, negated={"brand": ("Audi", "BMW", "Benz")}),
    Query("q", "vehicle", {}, either={"color": ("grey",)}),  # a one-class set is the one-class distance
    Query("q", "vehicle", {}, either={"type": ("Bus", "Microbus", "Minivan")}, negated={"color": ("white", "grey")}),
    Query("q", "pedestrian", {"gender": "female"}, negated={"bag": ("backpack",)}),
    Query("q", "pedestrian", {"hat": "no"}, either={"age": ("18-60", "under18"), "upper": ("stripe", "plaid")}),
    Query("q", "pedestrian", {"gender": "male", "glasses": "yes"}),  # no sets: the old distance
    # multi-label colours: a two-colour top, a colour no, alternatives across yes/no groups
    Query("q", "pedestrian", {"upper_color_black": "yes", "upper_color_white": "yes", "lower_color_red": "no"}),
    Query("q", "pedestrian", {"gender": "female"}, any_of=(("lower_color_black", "lower_color_grey"),)),
    Query("q", "pedestrian", {"lower_type": "trousers"}, negated={"hair": ("bald",)},
          any_of=(("upper_color_red", "lower_color_red"), ("upper_color_blue", "upper_color_green", "upper_color_grey"))),
]


def _allowed(q: Query) -> dict[str, tuple[str, ...]]:
    out = {g: (c,) for g, c in q.stated.items()}
    out.update(q.either)
    for g, excluded in q.negated.items():
        out[g] = tuple(c for c in SCHEMA.subject(q.kind).group(g).classes if c not in excluded)
    return out


def brute_force(probs: dict[str, dict[str, list[float]]], q: Query, scoring: str) -> dict[str, float]:
    """The module doc's distance, written out per group in float64 (router-gated, hard)."""
    ki = 0 if q.kind == "pedestrian" else 1
    out = {}
    for name, row in probs.items():
        if int(np.argmax(row["router"])) != ki:
            continue
        d = 0.0
        for g, allowed in _allowed(q).items():
            grp = SCHEMA.subject(q.kind).group(g)
            p = np.asarray(row[grp.task], np.float32).astype(np.float64)  # the index stores float32
            inside = np.array([c in allowed for c in grp.classes])
            mass = p[inside].sum()
            if scoring == "loglik":  # the NegLogGallery columns are float32, summed in float64
                q32 = lambda x: np.float32(-np.log(np.clip(x, 1e-6, 1 - 1e-6))).astype(np.float64)  # noqa: E731
                d += float(q32(mass)) if inside.sum() == 1 else float(sum(q32(1.0 - pk) for pk in p[~inside]))
            elif scoring == "linear":
                d += 1.0 - mass
            elif inside.sum() == 1:
                d += (1.0 - mass) ** 2 + (p[~inside] ** 2).sum()
            else:
                d += (1.0 - mass) + (p[~inside] ** 2).sum()
        for alternative in q.any_of:  # at least one yes: 1 - sum of yes-probabilities; loglik log P(none)
            yes = [np.float32(row[f"pedestrian.{g}"][0]).astype(np.float64) for g in alternative]
            if scoring == "loglik":
                d -= sum(float(np.float32(-np.log(np.clip(1.0 - y, 1e-6, 1 - 1e-6)))) for y in yes)
            else:
                d += 1.0 - sum(yes)
        out[name] = d
    return out


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    from tests.retrieval.conftest import make_index

    rows = _random_rows(400, 0)
    return rows, make_index(tmp_path_factory.mktemp("sets") / "index", rows)


@pytest.mark.parametrize("scoring", ["euclidean", "linear", "loglik"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_set_distance_equals_brute_force_on_every_backend(gallery, backend, scoring):
    rows, idx = gallery
    r = rank(idx, QUERIES, RankOptions(k=15, backend=backend, scoring=scoring))
    for j, q in enumerate(QUERIES):
        ref = brute_force(rows, q, scoring)
        order = sorted(ref, key=lambda n: (round(ref[n], 9), n))[:15]
        got = [idx.names[i] for i in r.rows[j]]
        assert got == order, (backend, scoring, j)
        assert np.allclose(r.dist[j], [ref[n] for n in got], atol=1e-9), (backend, scoring, j)


def test_what_an_alternative_across_colour_groups_means(index_factory):
    """"black or grey trousers": a black pair, a grey pair and a black-and-grey pair all beat a
    blue one, the two-colour pair scoring no worse than a one-colour pair; "dressed in red":
    a red top or red trousers."""
    ped = {"router": [0.9, 0.1]}

    def colours(upper: dict, lower: dict) -> dict:
        row = dict(ped)
        for family, said in (("upper_color", upper), ("lower_color", lower)):
            for g in SCHEMA.pedestrian.families[family]:
                y = said.get(g.label, 0.02)
                row[g.task] = [y, 1.0 - y]
        return row

    idx = index_factory({
        "black.jpg": colours({}, {"black": 0.95}), "grey.jpg": colours({}, {"grey": 0.9}),
        "both.jpg": colours({}, {"black": 0.9, "grey": 0.9}), "blue.jpg": colours({}, {"blue": 0.95}),
        "red_top.jpg": colours({"red": 0.9}, {"blue": 0.9}), "red_legs.jpg": colours({"white": 0.9}, {"red": 0.9}),
    })
    parser = CaptionParser()
    q = parser.parse("a man in black or grey trousers")
    assert q.any_of == (("lower_color_black", "lower_color_grey"),) and q.stated["lower_type"] == "trousers"
    for scoring in ("euclidean", "linear", "loglik"):
        r = rank(idx, [Query("q", "pedestrian", {}, any_of=q.any_of)], RankOptions(k=6, scoring=scoring))
        names = [idx.names[i] for i in r.rows[0]]
        assert names[0] == "both.jpg" and set(names[1:3]) == {"black.jpg", "grey.jpg"}, scoring
    q = parser.parse("a woman dressed in red")
    assert q.any_of == (("upper_color_red", "lower_color_red"),)
    r = rank(idx, [q], RankOptions(k=6))
    assert {idx.names[i] for i in r.rows[0][:2]} == {"red_top.jpg", "red_legs.jpg"}
    (why,) = explain(idx, r, [q.caption])
    assert "upper_color_red or lower_color_red" in why["results"][0]["matched"]


def test_one_class_set_is_the_stated_distance(gallery):
    _, idx = gallery
    a = rank(idx, [Query("q", "vehicle", {}, either={"color": ("grey",)})], RankOptions(k=20))
    b = rank(idx, [Query("q", "vehicle", {"color": "grey"})], RankOptions(k=20))
    assert (a.rows[0] == b.rows[0]).all() and np.allclose(a.dist[0], b.dist[0])


def test_what_the_set_distance_means(index_factory):
    veh = {"router": [0.1, 0.9]}
    colors = SCHEMA.vehicle.group("color").classes

    def color(**p):
        v = np.zeros(len(colors))
        for c, x in p.items():
            v[colors.index(c)] = x
        return {**veh, "vehicle.color": list(v)}

    idx = index_factory({
        "black.jpg": color(black=1.0), "white.jpg": color(white=1.0), "red.jpg": color(red=1.0),
        "mixed.jpg": color(black=0.5, white=0.5), "grey.jpg": color(grey=0.7, black=0.3),
    })
    either = rank(idx, [Query("q", "vehicle", either={"color": ("black", "white")})], RankOptions(k=5))
    names = [idx.names[i] for i in either.rows[0]]
    assert names[:3] == ["black.jpg", "mixed.jpg", "white.jpg"]  # all three sure to be allowed: 0, by name
    assert list(either.dist[0][:3]) == [0.0, 0.0, 0.0]
    assert names[3:] == ["grey.jpg", "red.jpg"]  # grey has 0.3 black
    not_black = rank(idx, [Query("q", "vehicle", negated={"color": ("black",)})], RankOptions(k=5))
    names = [idx.names[i] for i in not_black.rows[0]]
    assert names == ["red.jpg", "white.jpg", "grey.jpg", "mixed.jpg", "black.jpg"]  # by p(black) alone
    assert not_black.dist[0][2] == pytest.approx(0.3 + 0.3**2)


def test_parsed_free_form_queries_rank_with_their_sets(index_factory):
    parser = CaptionParser()
    idx = index_factory({
        "bp.jpg": {"router": [0.9, 0.1], "pedestrian.gender": [0.9, 0.1], "pedestrian.bag": [0.05, 0.9, 0.05]},
        "sh.jpg": {"router": [0.9, 0.1], "pedestrian.gender": [0.9, 0.1], "pedestrian.bag": [0.9, 0.05, 0.05]},
    })
    q = parser.parse("a woman without a backpack")
    assert q.negated == {"bag": ("backpack",)}
    r = rank(idx, [q], RankOptions(k=2))
    assert [idx.names[i] for i in r.rows[0]] == ["sh.jpg", "bp.jpg"]
    assert r.plans[0].allowed == {"bag": ("shoulder", "none")}
    out = explain(idx, r, [q.caption])[0]
    assert out["allowed"] == {"bag": ["shoulder", "none"]} and out["enforced"] == {"gender": "female"}
    assert out["results"][0]["matched"] == ["gender", "bag"]
    assert out["results"][1]["conflicted"] == ["bag"] and out["results"][1]["predicted"]["bag"] == "backpack"


def test_a_query_with_only_a_set_is_ranked(index_factory):
    idx = index_factory({"a.jpg": {"router": [0.1, 0.9]}, "b.jpg": {"router": [0.1, 0.9]}})
    r = rank(idx, [Query("q", "vehicle", negated={"type": ("Bus",)})], RankOptions(k=2))
    assert len(r.rows[0]) == 2 and not r.warnings
