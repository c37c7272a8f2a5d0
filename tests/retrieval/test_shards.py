"""Sharded predict: ``--shard i/N`` + ``attrret index merge``, and ``torchrun``, write the index a
single run writes, byte for byte; a merge refuses shards that do not make one run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attrret.errors import OptionError
from attrret.retrieval.shards import ShardSpec, batch_slice, find_shards, parse_shard, shard_path
from tests.bad_input.conftest import attrret, error_line, make_folder

BATCH = ("--batch-size", "4")  # 18 images: 5 batches, so 2 or 3 shards cut between batches


@pytest.fixture(scope="module")
def tiny_work(tmp_path_factory) -> tuple[Path, Path]:
    """``(gallery, workdir)``: router + pedestrian.gender trained (1 epoch, 32 px) on a tiny folder;
    the gallery has a subfolder, so its listing order is not its name order."""
    from attrret.classifiers.train import TrainConfig, train_tasks

    root = tmp_path_factory.mktemp("shards")
    data = make_folder(root / "data")
    work = root / "w"
    for task in ("router", "pedestrian.gender"):
        train_tasks(TrainConfig(task=task, data=str(data), workdir=str(work), backbone="timm:test_vit", pretrained=False,
                                img_size=32, epochs=1, batch_size=8), progress=False)
    gallery = root / "gallery"
    shutil.copytree(data / "images", gallery)
    (gallery / "sub").mkdir()
    for p in sorted(gallery.glob("00000*.jpg"))[:4]:
        p.rename(gallery / "sub" / p.name)
    return gallery, work


def _files(index: Path) -> dict[str, bytes]:
    """Every file of an index but its locks, by name."""
    return {p.name: p.read_bytes() for p in sorted(index.iterdir()) if not p.name.startswith(".")}


def _predict(gallery: Path, out: Path, work: Path, *extra: str):
    proc = attrret("predict", "--images", gallery, "-o", out, "--workdir", work, "-q", *BATCH, *extra)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_parse_shard_and_paths(tmp_path):
    assert parse_shard("1/4") == ShardSpec(1, 4) and str(ShardSpec(1, 4)) == "1/4"
    for bad in ("4/4", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(OptionError, match="--shard"):
            parse_shard(bad)
    assert shard_path(tmp_path / "idx", ShardSpec(2, 3)) == tmp_path / "idx.shard-2-of-3"
    for p in ("idx.shard-1-of-2", "idx.shard-0-of-2", "other.shard-0-of-2", "idx.shard-0-of-2.txt"):
        (tmp_path / p).mkdir()
    assert [p.name for p in find_shards(tmp_path / "idx")] == ["idx.shard-0-of-2", "idx.shard-1-of-2"]


@pytest.mark.parametrize("n,batch,count", [(18, 4, 2), (18, 4, 3), (18, 4, 8), (0, 4, 2), (7, 64, 3), (64, 8, 8)])
def test_batch_slices_cover_the_images_in_whole_batches(n, batch, count):
    slices = [batch_slice(n, batch, ShardSpec(i, count)) for i in range(count)]
    assert [i for s in slices for i in s] == list(range(n))  # in order, each once
    for s in slices:
        assert s.start % batch == 0 and (s.stop % batch == 0 or s.stop == n)  # a single run's batches
    sizes = [len(s) for s in slices]
    assert max(sizes) - min(sizes) <= batch  # as even as whole batches allow


@pytest.mark.parametrize("count", [2, 3])
def test_shards_merged_equal_a_single_run_byte_for_byte(tiny_work, tmp_path, count):
    gallery, work = tiny_work
    _predict(gallery, tmp_path / "single" / "index", work)
    out = tmp_path / "sharded" / "index"
    for i in range(count):
        proc = _predict(gallery, out, work, "--shard", f"{i}/{count}")
        assert f"shard {i}/{count}" in proc.stdout
    assert not out.exists()  # shards only; the merge writes the index
    shards = find_shards(out)
    assert [p.name for p in shards] == [f"index.shard-{i}-of-{count}" for i in range(count)]
    proc = attrret("index", "merge", *reversed(shards), "-o", out)  # any order
    assert proc.returncode == 0, proc.stderr
    assert "18 images (18 predicted, 0 reused, 0 removed)" in proc.stdout
    assert _files(out) == _files(tmp_path / "single" / "index")
    # the shards beside OUT by default; the merge is repeatable and may remove them (only what attrret wrote)
    (shards[0] / "notes.txt").write_text("keep me")
    proc = attrret("index", "merge", "-o", out, "--remove-shards")
    assert proc.returncode == 0, proc.stderr
    assert _files(out) == _files(tmp_path / "single" / "index")
    assert find_shards(out) == shards[:1] and [p.name for p in shards[0].iterdir()] == ["notes.txt"]


def test_incremental_sharded_run_equals_an_incremental_single_run(tiny_work, tmp_path):
    gallery, work = tiny_work
    part = tmp_path / "part"
    shutil.copytree(gallery, part)
    held = sorted(part.glob("*.jpg"))[:5]
    for p in held:
        p.rename(tmp_path / p.name)
    _predict(part, tmp_path / "a" / "index", work)
    shutil.copytree(tmp_path / "a" / "index", tmp_path / "b" / "index")
    for p in held:
        (tmp_path / p.name).rename(p)
    single = _predict(part, tmp_path / "a" / "index", work)
    assert "(5 predicted, 13 reused" in single.stdout
    out = tmp_path / "b" / "index"
    _predict(part, out, work, "--shard", "1/2", "--shard-out", tmp_path / "s1")
    _predict(part, out, work, "--shard", "0/2", "--shard-out", tmp_path / "s0")
    proc = attrret("index", "merge", tmp_path / "s0", tmp_path / "s1", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "(5 predicted, 13 reused, 0 removed)" in proc.stdout
    assert _files(out) == _files(tmp_path / "a" / "index")


def test_merge_refuses_what_is_not_one_run(tiny_work, tmp_path):
    gallery, work = tiny_work
    out = tmp_path / "index"
    for i in range(3):
        _predict(gallery, out, work, "--shard", f"{i}/3")
    s0, s1, s2 = find_shards(out)
    merge = lambda *shards: attrret("index", "merge", *shards, "-o", out)  # noqa: E731
    error_line(merge(s0, s2), "missing shard(s) 1 of 3")
    error_line(merge(s0, s1, s1, s2), "shard 1/3 given twice")
    _predict(gallery, out, work, "--shard", "1/2")
    error_line(merge(s0, s1, s2, shard_path(out, ShardSpec(1, 2))), "shards of different runs")
    _predict(gallery, out, work, "--shard", "1/3", "--tta", "flip", "--shard-out", tmp_path / "flipped")
    error_line(merge(s0, tmp_path / "flipped", s2), "other models or settings")
    attrret("predict", "--images", gallery, "-o", out, "--workdir", work, "-q", "--batch-size", "8", "--shard", "1/3",
            "--shard-out", tmp_path / "b8")
    error_line(merge(s0, tmp_path / "b8", s2), "--batch-size 8")
    changed = tmp_path / "changed"
    shutil.copytree(gallery, changed)
    _predict(changed, out, work, "--shard", "1/3", "--shard-out", tmp_path / "other")
    error_line(merge(s0, tmp_path / "other", s2), "planned another run")
    error_line(merge(s0, gallery, s2), f"{gallery}: not an attrret index shard")
    error_line(attrret("index", "merge", "-o", tmp_path / "nothing"), "no shards given")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    error_line(attrret("index", "merge", s0, s1, s2, "-o", foreign), "not an attrret index")
    error_line(attrret("predict", "--images", gallery, "-o", out, "--workdir", work, "--shard", "0/3",
                       "--shard-out", foreign), "not an attrret index shard")
    assert (foreign / "notes.txt").read_text() == "keep me" and sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    error_line(attrret("predict", "--images", gallery, "-o", out, "--workdir", work, "--shard", "3/3"), "--shard 3/3")
    assert not out.exists()  # nothing merged by any failed run
    # a shard from a machine with other threads: merged, with a warning (the last bits may differ)
    meta = json.loads((s1 / "shard.json").read_text())
    (s1 / "shard.json").write_text(json.dumps({**meta, "threads": meta["threads"] + 7}))
    proc = merge(s2, s0, s1)
    assert proc.returncode == 0, proc.stderr
    assert "warning: the shards were predicted with" in proc.stderr


def _torchrun_predict(gallery: Path, out: Path, work: Path, nproc: int, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           "-m", "attrret", "predict", "--images", str(gallery), "-o", str(out), "--workdir", str(work),
                           "--device", "cpu", "-q", *BATCH],
                          capture_output=True, text=True, env=env, timeout=300)


#: Three real processes (a torchrun launcher and two ranks) paying the torch import each.
@pytest.mark.slow
def test_torchrun_two_cpu_ranks_equal_a_single_run(tiny_work, tmp_path):
    gallery, work = tiny_work
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    single = subprocess.run([sys.executable, "-m", "attrret", "predict", "--images", str(gallery), "-o",
                             str(tmp_path / "single" / "index"), "--workdir", str(work), "--device", "cpu", "-q", *BATCH],
                            capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr
    out = tmp_path / "ddp" / "index"
    r = _torchrun_predict(gallery, out, work, 2, env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("18 images (18 predicted, 0 reused, 0 removed)") == 1  # rank 0 reports, once
    assert _files(out) == _files(tmp_path / "single" / "index")
    # a second run reuses every row and rewrites the very same bytes
    r = _torchrun_predict(gallery, out, work, 2, env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "(0 predicted, 18 reused, 0 removed)" in r.stdout
    assert _files(out) == _files(tmp_path / "single" / "index")


#: A failing rank under torchrun: every rank stops, the error names the image, nothing is written.
@pytest.mark.slow
def test_torchrun_a_failing_rank_stops_every_rank(tiny_work, tmp_path):
    src, work = tiny_work
    gallery = tmp_path / "gallery"
    shutil.copytree(src, gallery)
    broken = sorted(gallery.glob("*.jpg"))[-1]
    broken.write_bytes(b"not a jpeg")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "ddp" / "index"
    r = _torchrun_predict(gallery, out, work, 2, env)
    assert r.returncode != 0
    assert "cannot decode image" in r.stderr and broken.name in r.stderr
    assert "terminate called" not in r.stderr, r.stderr[-3000:]
    assert not out.exists() or not any(p.name == "header.json" for p in out.iterdir())
