"""The Searcher: parse + exact top-K + explain over a real small index, thread-safe, micro-batched,
reopening an index that attrret predict replaced."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attrret.attributes import image_record
from attrret.parser import CaptionParser
from attrret.parser.export import query_record
from attrret.retrieval.index import IndexHeader, open_index, write_index
from attrret.retrieval.indexer import task_columns
from attrret.retrieval.ranker import RankOptions, explain, rank
from attrret.schema import load_schema
from attrret.search import MAX_K, MAX_QUERY_CHARS, Searcher, UnknownImage, _Combiner, _Request

SCHEMA = load_schema()


def one_hot(task: str, cls: str) -> list[float]:
    g = SCHEMA.task(task)
    p = [0.05 / (g.size - 1)] * g.size
    p[g.index(cls)] = 0.95
    return p


def write_gallery(path: Path, images: Path, seed: int = 0, n: int = 40) -> Path:
    """A real index over ``n`` drawn images: random peaky probabilities, a router column, and two
    images with known attributes (``woman_backpack.jpg``, ``red_geely_suv.jpg``)."""
    rng = np.random.default_rng(seed)
    columns = task_columns(None, SCHEMA)
    at = max(stop for _, stop in columns.values())
    names = [f"img_{i:03d}.jpg" for i in range(n)] + ["woman_backpack.jpg", "red_geely_suv.jpg"]
    probs = np.zeros((len(names), at), np.float32)
    for i in range(len(names)):
        for g in SCHEMA.tasks:
            p = rng.random(g.size) ** 3
            probs[i, slice(*columns[g.task])] = p / p.sum()
        probs[i, slice(*columns["router"])] = [0.9, 0.1] if i % 2 else [0.1, 0.9]
    known = {
        "woman_backpack.jpg": {"router": one_hot("router", "pedestrian"), "pedestrian.gender": one_hot("pedestrian.gender", "female"),
                               "pedestrian.bag": one_hot("pedestrian.bag", "backpack")},
        "red_geely_suv.jpg": {"router": one_hot("router", "vehicle"), "vehicle.color": one_hot("vehicle.color", "red"),
                              "vehicle.brand": one_hot("vehicle.brand", "Geely"), "vehicle.type": one_hot("vehicle.type", "SUV")},
    }
    for name, values in known.items():
        for task, p in values.items():
            probs[names.index(name), slice(*columns[task])] = p
    images.mkdir(parents=True, exist_ok=True)
    files = []
    for i, name in enumerate(names):
        Image.new("RGB", (24, 48), (i * 5 % 255, 90, 120)).save(images / name)
        files.append({"path": str((images / name).resolve()), "size": 0, "mtime_ns": 0})
    header = IndexHeader(schema=SCHEMA.fingerprint, count=len(names), columns=columns, models=(), img_sizes=(32,),
                         tta="flip", weights=(1.0,))
    write_index(path, probs, names, files, header)
    return path


@pytest.fixture
def gallery(tmp_path: Path) -> Path:
    return write_gallery(tmp_path / "index", tmp_path / "images")


def test_search_finds_the_matching_image_and_explains_it(gallery: Path):
    s = Searcher.open(gallery)
    r = s.search("a woman with a backpack", k=5)
    assert r.hits[0].name == "woman_backpack.jpg" and r[0] is r.hits[0] and len(r) == 5
    top = r.hits[0]
    assert top.matched == ("gender", "bag") and top.conflicted == ()
    assert top.predicted == {"gender": "female", "bag": "backpack"}
    assert Path(top.path) == gallery.parent / "images" / "woman_backpack.jpg"
    assert [h.rank for h in r] == [1, 2, 3, 4, 5]
    assert all(a.score <= b.score for a, b in zip(r.hits, r.hits[1:]))
    kinds = open_index(gallery).router_kinds(SCHEMA)
    rows = {n: i for i, n in enumerate(s.names)}
    assert all(kinds[rows[h.name]] == 0 for h in r)  # pedestrians only
    v = s.search("red Geely SUV", k=3)
    assert v.hits[0].name == "red_geely_suv.jpg" and set(v.hits[0].matched) == {"color", "brand", "type"}


def test_results_equal_the_rank_command_and_the_json_shape(gallery: Path):
    texts = ["a woman with a backpack", "black or white SUV, not a Toyota", "man with glasses, no hat"]
    s = Searcher.open(gallery)
    results = s.search_many(texts, k=7)
    index = open_index(gallery)
    queries = CaptionParser().parse_many(texts)
    ranking = rank(index, queries, RankOptions(k=7))
    reference = explain(index, ranking, texts)
    for r, ref, q in zip(results, reference, queries):
        assert [h.name for h in r] == [x["image"] for x in ref["results"]]
        assert [h.score for h in r] == [x["distance"] for x in ref["results"]]
        assert [list(h.matched) for h in r] == [x["matched"] for x in ref["results"]]
        assert r.query == query_record(q, SCHEMA) == s.parse(q.caption)
        js = r.to_json()
        assert set(js) == {"query", "results", "warnings"}
        assert set(js["results"][0]) >= {"rank", "image", "score", "matched", "conflicted", "predicted"}
    assert [[h.name for h in r] for r in results] == [[h.name for h in s.search(t, k=7)] for t in texts]


def test_warnings_say_what_a_query_could_not_use(gallery: Path):
    s = Searcher.open(gallery)
    r = s.search("a guy with an umbrella")
    assert any("ignored 'umbrella'" in w for w in r.warnings) and len(r) > 0
    none = s.search("qwzx plorg")
    assert len(none) == 0 and any("no pedestrian or vehicle words" in w for w in none.warnings)


def test_kind_keeps_only_queries_of_that_kind(gallery: Path):
    s = Searcher.open(gallery)
    assert len(s.search("a woman with a backpack", kind="pedestrian")) == 10
    other = s.search("a woman with a backpack", kind="vehicle")
    assert len(other) == 0 and "reads as pedestrian, not vehicle" in other.warnings[0]


@pytest.mark.parametrize("text,k,kind", [("x" * (MAX_QUERY_CHARS + 1), 10, None), ("woman", 0, None),
                                         ("woman", MAX_K + 1, None), ("woman", 10, "bicycle"), ("woman", True, None)])
def test_bounds_are_refused(gallery: Path, text, k, kind):
    s = Searcher.open(gallery)
    with pytest.raises(ValueError):
        s.search(text, k=k, kind=kind)


def test_attributes_and_paths_come_from_the_index(gallery: Path):
    s = Searcher.open(gallery)
    rec = s.attributes("woman_backpack.jpg")
    assert rec == image_record(open_index(gallery), s.names.index("woman_backpack.jpg"), SCHEMA)
    assert rec["kind"] == "pedestrian" and rec["kind_prob"] == pytest.approx(0.95)
    assert rec["groups"]["pedestrian.bag"]["class"] == "backpack"
    assert set(rec["groups"]) == {g.task for g in SCHEMA.pedestrian.groups}
    assert s.image_path("red_geely_suv.jpg").is_file()
    for bad in ("nope.jpg", "../woman_backpack.jpg", "/etc/passwd"):
        with pytest.raises(UnknownImage):
            s.image_path(bad)
        with pytest.raises(KeyError):
            s.attributes(bad)


def test_an_index_replaced_by_predict_is_reopened(tmp_path: Path):
    index = write_gallery(tmp_path / "index", tmp_path / "images", seed=0)
    s = Searcher.open(index, log=lambda _: None)
    before = [h.name for h in s.search("a man with a hat", k=5)]
    write_gallery(index, tmp_path / "images", seed=1, n=60)  # the atomic header swap of attrret predict
    after = s.search("a man with a hat", k=5)
    fresh = Searcher.open(index)
    assert len(s) == len(fresh) == 62
    assert [h.name for h in after] == [h.name for h in fresh.search("a man with a hat", k=5)] != before
    assert not s.refresh()  # nothing changed since


def test_concurrent_searches_from_threads_equal_sequential_ones(gallery: Path):
    s = Searcher.open(gallery)
    texts = ["a woman with a backpack", "red Geely SUV", "man with glasses, no hat", "a kid", "white bus"] * 8
    expected = [[(h.name, h.score) for h in s.search(t, k=6)] for t in texts]
    got: list = [None] * len(texts)

    def work(j: int) -> None:
        got[j] = [(h.name, h.score) for h in s.search(texts[j], k=6)]

    threads = [threading.Thread(target=work, args=(j,)) for j in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == expected


def wait_until(condition, deadline_s: float = 120.0) -> None:
    """Poll ``condition``; the deadline only turns a hang into a failure (nothing is timed)."""
    import time

    end = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end, "condition never became true"
        time.sleep(0.001)


def test_waiting_callers_are_ranked_together_in_one_batch():
    """While one batch runs, callers queue; the next leader ranks all of them at once."""
    batches: list[list[str]] = []
    gate = threading.Event()

    def work(requests):
        batches.append([r.text for r in requests])
        if len(batches) == 1:
            assert gate.wait(60)
        return [r.text.upper() for r in requests]

    c = _Combiner(work)
    answers: dict[str, str] = {}

    def call(text: str) -> None:
        answers[text] = c.submit(_Request(text, 1, None))

    def queued() -> int:
        with c._lock:
            return len(c._waiting)

    first = threading.Thread(target=call, args=("a",))
    first.start()
    wait_until(lambda: bool(batches))  # the first batch is running (blocked on the gate)
    rest = [threading.Thread(target=call, args=(t,)) for t in "bcde"]
    for t in rest:
        t.start()
    wait_until(lambda: queued() == 4)  # all four queued behind it
    gate.set()
    for t in [first, *rest]:
        t.join()
    assert batches[0] == ["a"] and sorted(batches[1]) == list("bcde") and len(batches) == 2
    assert answers == {t: t.upper() for t in "abcde"}


def test_an_error_reaches_every_caller_of_the_batch():
    def work(requests):
        raise RuntimeError("boom")

    c = _Combiner(work)
    with pytest.raises(RuntimeError, match="boom"):
        c.submit(_Request("x", 1, None))
    with pytest.raises(RuntimeError, match="boom"):  # and the combiner is free again
        c.submit(_Request("y", 1, None))


def test_the_readme_import_works_and_stays_lazy():
    import subprocess
    import sys

    import attrret

    assert attrret.Searcher is Searcher
    code = "import sys, attrret; assert 'attrret.search' not in sys.modules and 'numpy' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
