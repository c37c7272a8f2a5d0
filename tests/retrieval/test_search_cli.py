"""`attrret search` and `attrret attributes` as a user runs them, on models trained through the CLI."""

import json

import pandas as pd
import pytest

from attrret.search import Searcher

from conftest import cli


@pytest.fixture(scope="module")
def indexed(trained, tmp_path_factory):
    data, work = trained
    index = tmp_path_factory.mktemp("search") / "index"
    cli("predict", "--images", str(data), "--workdir", str(work), "-o", str(index), "--quiet")
    return data, work, index


def test_search_prints_the_api_json_and_a_table(indexed, tmp_path):
    data, work, index = indexed
    queries = ["a woman with a backpack", "This is a red Geely SUV.", "a guy with an umbrella"]
    out = cli("search", *queries, "--index", str(index), "-k", "4", "--json")
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    expected = Searcher.open(index).search_many(queries, k=4)
    assert lines == [json.loads(json.dumps(r.to_json())) for r in expected]
    assert "ignored 'umbrella'" in out.stderr  # warnings on stderr, one per such query

    table = cli("search", "-", "--index", str(index), "-k", "3", input="a woman with a backpack\n\nwhite bus\n")
    text = table.stdout
    assert text.count("query: ") == 2 and "stated: gender=female, bag=backpack" in text
    assert "rank" in text and "matched" in text and expected[0].hits[0].name in text

    vehicle_only = cli("search", "a woman with a backpack", "--index", str(index), "--kind", "vehicle", "--json")
    assert json.loads(vehicle_only.stdout)["results"] == [] and "not vehicle" in vehicle_only.stderr


def test_search_errors_are_one_line(indexed, tmp_path):
    bad = cli("search", "a woman", "--index", str(tmp_path / "nope"), check=False)
    assert bad.returncode == 1 and "not an attrret index" in bad.stderr and "Traceback" not in bad.stderr
    data, work, index = indexed
    too_long = cli("search", "w" * 2001, "--index", str(index), check=False)
    assert too_long.returncode == 2 and "at most 2,000" in too_long.stderr


def test_attributes_from_the_index_and_from_images_agree(indexed, tmp_path):
    data, work, index = indexed
    searcher = Searcher.open(index)
    from_index = [json.loads(x) for x in cli("attributes", "--index", str(index)).stdout.splitlines()]
    assert [r["name"] for r in from_index] == list(searcher.names)
    assert from_index[0] == searcher.attributes(searcher.names[0])
    for r in from_index:
        assert r["kind"] in ("pedestrian", "vehicle") and 0.5 <= r["kind_prob"] <= 1.0
        assert all(t.startswith(r["kind"] + ".") for t in r["groups"])
        g = next(iter(r["groups"].values()))
        assert g["probs"][g["class"]] == g["prob"] == max(g["probs"].values())

    images = data / "test" / "test_images"
    direct = [json.loads(x) for x in cli("attributes", str(images), "--workdir", str(work), "-q").stdout.splitlines()]
    assert [r["name"] for r in direct] == [r["name"] for r in from_index]
    for a, b in zip(direct, from_index):
        assert a["kind"] == b["kind"] and a["groups"].keys() == b["groups"].keys()
        for t in a["groups"]:
            assert a["groups"][t]["prob"] == pytest.approx(b["groups"][t]["prob"], abs=1e-5)

    for suffix in (".jsonl", ".csv", ".parquet"):
        out = tmp_path / f"attrs{suffix}"
        res = cli("attributes", "--index", str(index), "-o", str(out))
        assert f"{len(from_index)} image records" in res.stderr
        if suffix == ".jsonl":
            assert [json.loads(x) for x in out.read_text().splitlines()] == from_index
            continue
        frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
        assert list(frame["name"]) == [r["name"] for r in from_index] and len(frame) == len(from_index)
        assert {"kind", "kind_prob", "pedestrian.gender", "pedestrian.gender.prob", "vehicle.color.p.red"} <= set(frame.columns)
        first = from_index[0]
        task = next(iter(first["groups"]))
        assert frame.loc[0, task] == first["groups"][task]["class"]
    bad = cli("attributes", "--index", str(index), "-o", str(tmp_path / "x.xlsx"), check=False)
    assert bad.returncode == 2 and ".parquet" in bad.stderr
