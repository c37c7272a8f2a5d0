"""attrret removes only what it can prove it wrote (issue 29, data loss): files a user keeps in an
index or shard folder survive every rewrite, and a write that fails (a full disk) leaves the old
index whole, with nothing of its own beside it."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest

from attrret.retrieval import index as index_mod
from attrret.retrieval.index import open_index
from tests.bad_input.conftest import attrret

USER_FILES = {"probs-mine.npy": b"user probabilities", "names-mine.json": b'{"mine": true}',
              "probs-0123456789ab.npy": b"a user's file with an index-like name", "notes-probs.txt": b"notes"}


def plant(folder: Path) -> None:
    for name, body in USER_FILES.items():
        (folder / name).write_bytes(body)


def assert_planted(folder: Path) -> None:
    for name, body in USER_FILES.items():
        assert (folder / name).read_bytes() == body, name


@pytest.mark.parametrize("rebuild", [False, True])
def test_predict_keeps_a_users_files_in_its_index_folder(tiny, tmp_path, rebuild):
    data, work, reference = tiny
    index = tmp_path / "index"
    assert attrret("predict", "--images", data, "-o", index, "--workdir", work, "-q").returncode == 0
    plant(index)
    args = ["predict", "--images", data, "-o", index, "--workdir", work, "-q"]
    if rebuild:  # other settings: every row recomputed, new data files, the old ones removed
        args += ["--tta", "none"]
    proc = attrret(*args)
    assert proc.returncode == 0, proc.stderr
    assert_planted(index)
    ix = open_index(index)
    data_files = {p.name for p in index.iterdir() if p.name.startswith(("probs-", "names-"))}
    assert data_files == {ix.header.probs_file, ix.header.names_file} | {n for n in USER_FILES if n.startswith(("probs-", "names-"))}


def test_shard_out_keeps_a_users_files(tiny, tmp_path):
    data, work, _ = tiny
    shard = tmp_path / "s"
    args = ["predict", "--images", data, "--workdir", work, "-o", tmp_path / "index", "--shard", "0/2", "--shard-out", shard, "-q"]
    assert attrret(*args).returncode == 0
    plant(shard)
    assert attrret(*args[:-1], "--tta", "none", "-q").returncode == 0  # rewritten with other rows
    assert_planted(shard)


def test_a_full_disk_while_updating_leaves_the_old_index_alone(tiny, tmp_path, monkeypatch):
    """The old index stays whole and nothing new is left beside it (its new data file was)."""
    from attrret.classifiers.engine import Ensemble
    from attrret.retrieval.indexer import build_index, find_members

    data, work, reference = tiny
    index = tmp_path / "index"
    import shutil

    shutil.copytree(reference, index)
    before = sorted(p.name for p in index.iterdir())
    old = open_index(index)
    real_write = index_mod.atomic_write_text

    def full_disk(path, text, *a, **k):  # the probabilities are written; the disk fills on the names file
        if Path(path).name.startswith("names-"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, text, *a, **k)

    monkeypatch.setattr(index_mod, "atomic_write_text", full_disk)
    with pytest.raises(OSError, match="No space left"):
        build_index(data, index, Ensemble.open(find_members(work), tta="none"), progress=False, log=lambda s: None)
    monkeypatch.undo()
    after = sorted(p.name for p in index.iterdir() if not p.name.startswith(".attrret-"))
    assert after == sorted(n for n in before if not n.startswith(".attrret-"))
    assert not (index / ".attrret-pending.json").exists()
    again = open_index(index)
    assert again.header.to_json() == old.header.to_json() and np.array_equal(again.probs, old.probs)


def test_merge_remove_shards_keeps_a_users_files(tiny, tmp_path):
    data, work, _ = tiny
    out = tmp_path / "index"
    for i in range(2):
        assert attrret("predict", "--images", data, "--workdir", work, "-o", out, "--shard", f"{i}/2", "-q").returncode == 0
    shard = tmp_path / "index.shard-0-of-2"
    plant(shard)
    proc = attrret("index", "merge", "-o", out, "--remove-shards")
    assert proc.returncode == 0, proc.stderr
    assert_planted(shard)
    assert sorted(p.name for p in shard.iterdir()) == sorted(USER_FILES)  # attrret's own files are gone
    assert not (tmp_path / "index.shard-1-of-2").exists()


def test_a_users_folder_with_a_header_json_is_not_an_index(tiny, tmp_path):
    """A folder is an index when its header says so (its format), not because a file is named header.json."""
    data, work, _ = tiny
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "header.json").write_text('{"title": "my project"}')
    (mine / "probs-0123456789ab.npy").write_bytes(b"mine")
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    proc = attrret("predict", "--images", data, "--workdir", work, "-o", mine, "-q")
    assert proc.returncode == 1 and "is not an attrret index" in proc.stderr, proc.stderr
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before
