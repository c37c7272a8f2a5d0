"""``attrret rank`` says what each query ignored: one warning per such query, file:line first."""

from __future__ import annotations

import json

from tests.retrieval.conftest import cli


def test_rank_warns_once_per_query_that_ignored_words(index_factory, tmp_path):
    idx = index_factory({
        "a.jpg": {"router": [0.9, 0.1], "pedestrian.gender": [0.1, 0.9]},
        "b.jpg": {"router": [0.1, 0.9], "vehicle.color": [1.0] + [0.0] * 10},
    })
    queries = tmp_path / "q.txt"
    queries.write_text("a woman with a backpack\nblack or white SUV\nguy with an umbrella\n"
                       "a man with a hat or a backpack\na white Tesla with a roof rack\n")
    out = tmp_path / "sub.json"
    r = cli("rank", "--queries", str(queries), "--out", str(out), "--index", str(idx.path))
    warned = [ln for ln in r.stderr.splitlines() if ": ignored " in ln]
    assert warned == [
        f"attrret: warning: {queries}:3: 'guy with an umbrella': ignored 'umbrella' (no attribute for it)",
        f"attrret: warning: {queries}:4: 'a man with a hat or a backpack': ignored 'hat or a backpack' (not supported: "
        "alternatives across groups, a negation of several groups or a second value for a group)",
        f"attrret: warning: {queries}:5: 'a white Tesla with a roof rack': ignored 'Tesla' (no attribute for it), "
        "'roof rack' (no attribute for it)",
    ]
    results = json.loads(out.read_text())["results"]
    assert [x["image_names"] for x in results[:3]] == [["a.jpg"], ["b.jpg"], ["a.jpg"]]  # sets rank too
