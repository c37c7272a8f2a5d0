"""A tampered index or shard is refused with one error before any ranking (issue 29's silent wrong
answers and tracebacks): model entries without the fields staleness checks read, probabilities
that are not finite or not in [0, 1], repeated or malformed names, bad shard counts.

Each case drives the real CLI (``rank``, ``search``, ``attributes``, ``index merge``): one
``attrret: error:`` line, exit code 1, nothing written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.bad_input.conftest import attrret, error_line


@pytest.fixture()
def captions(tmp_path: Path) -> Path:
    q = tmp_path / "q.txt"
    q.write_text("A female pedestrian.\nA male pedestrian.\n", encoding="utf-8")
    return q


def copy_index(reference: Path, to: Path) -> Path:
    shutil.copytree(reference, to)
    return to


def header_of(index: Path) -> dict:
    return json.loads((index / "header.json").read_text())


def edit_probs(index: Path, fn) -> None:
    pf = index / header_of(index)["probs_file"]
    probs = np.load(pf)
    fn(probs)
    np.save(pf, probs)


def edit_names(index: Path, fn) -> None:
    nf = index / header_of(index)["names_file"]
    meta = json.loads(nf.read_text())
    fn(meta)
    nf.write_text(json.dumps(meta))


MODEL_ENTRIES = {
    "model entry without path": lambda m: m.pop("path"),
    "model entry with a numeric path": lambda m: m.update(path=5),  # not listed in the issue: same class
    "model entry without sha256": lambda m: m.pop("sha256"),
}


@pytest.mark.parametrize("case", list(MODEL_ENTRIES))
def test_model_entries_without_what_staleness_reads_are_refused(tiny, tmp_path, captions, case):
    index = copy_index(tiny[2], tmp_path / "index")
    header = header_of(index)
    MODEL_ENTRIES[case](header["models"][0])
    (index / "header.json").write_text(json.dumps(header))
    out = tmp_path / "s.json"
    error_line(attrret("rank", "--queries", captions, "-o", out, "--index", index), "damaged index header: models[0].")
    assert not out.exists()


PROBS = {
    "all NaN": lambda p: p.fill(np.nan),
    "one -inf": lambda p: p.__setitem__((1, 0), -np.inf),
    "one NaN": lambda p: p.__setitem__((0, 1), np.nan),  # not listed: same class
    "out of range": lambda p: p.__setitem__((2, 0), 1.7),
    "negative": lambda p: p.__setitem__((3, 1), -0.3),
}


@pytest.mark.parametrize("case", list(PROBS))
def test_probabilities_that_are_not_probabilities_are_refused(tiny, tmp_path, captions, case):
    index = copy_index(tiny[2], tmp_path / "index")
    edit_probs(index, PROBS[case])
    out = tmp_path / "s.json"
    line = error_line(attrret("rank", "--queries", captions, "-o", out, "--index", index), "damaged index")
    assert "not finite" in line or "outside [0, 1]" in line
    assert not out.exists()
    error_line(attrret("search", "a woman", "--index", index), "damaged index")


NAMES = {
    "duplicate name": lambda m: m["names"].__setitem__(1, m["names"][0]),
    "a name that is a number": lambda m: m["names"].__setitem__(0, 7),
    "an empty name": lambda m: m["names"].__setitem__(2, ""),  # not listed: same class
    "files not a list": lambda m: m.update(files={"a": 1}),
    "a file record that is a string": lambda m: m["files"].__setitem__(0, "x.jpg"),
}


@pytest.mark.parametrize("case", list(NAMES))
@pytest.mark.parametrize("command", ["rank", "search", "attributes"])
def test_malformed_names_files_are_refused(tiny, tmp_path, captions, case, command):
    index = copy_index(tiny[2], tmp_path / "index")
    edit_names(index, NAMES[case])
    args = {"rank": ("rank", "--queries", captions, "-o", tmp_path / "s.json", "--index", index),
            "search": ("search", "a woman", "--index", index), "attributes": ("attributes", "--index", index)}[command]
    error_line(attrret(*args), "damaged index")


@pytest.mark.parametrize("case", ["one NaN", "out of range"])
def test_merge_refuses_shards_with_bad_probabilities(tiny, tmp_path, case):
    data, work, _ = tiny
    out = tmp_path / "index"
    for i in range(2):
        proc = attrret("predict", "--images", data, "--workdir", work, "-o", out, "--shard", f"{i}/2", "--quiet")
        assert proc.returncode == 0, proc.stderr
    shard = tmp_path / "index.shard-1-of-2"
    meta = json.loads((shard / "shard.json").read_text())
    probs = np.load(shard / meta["probs_file"])
    PROBS[case](probs)
    np.save(shard / meta["probs_file"], probs)
    error_line(attrret("index", "merge", "-o", out), "damaged shard")
    assert not out.exists()


@pytest.mark.parametrize("spec", ["0/1000000000", "3/20000", "0/99999999999999999999999"])
def test_absurd_shard_counts_are_refused(tiny, tmp_path, spec):
    data, work, _ = tiny
    proc = attrret("predict", "--images", data, "--workdir", work, "-o", tmp_path / "index", "--shard", spec, "--quiet")
    assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr and "at most 10,000 shards" in proc.stderr, proc.stderr
    assert not (tmp_path / "index").exists() and not list(tmp_path.glob("index.shard-*"))


SHARD_FIELDS = {
    "names as a number": ("names", 5),
    "files as a string": ("files", "x.jpg"),
    "shard index as text": ("shard", "zero"),
    "count as a list": ("of", [2]),
    "predicted as null": ("predicted", None),
    "header as a list": ("header", []),  # not listed in the issue: same class
}


@pytest.mark.parametrize("case", list(SHARD_FIELDS))
def test_shard_manifests_with_fields_of_the_wrong_kind_are_one_error(tiny, tmp_path, case):
    data, work, _ = tiny
    out = tmp_path / "index"
    for i in range(2):
        assert attrret("predict", "--images", data, "--workdir", work, "-o", out, "--shard", f"{i}/2", "--quiet").returncode == 0
    sp = tmp_path / "index.shard-0-of-2" / "shard.json"
    meta = json.loads(sp.read_text())
    key, value = SHARD_FIELDS[case]
    meta[key] = value
    sp.write_text(json.dumps(meta))
    error_line(attrret("index", "merge", "-o", out), "shard")
    assert not out.exists()
