"""Faults that used to give a traceback, a hang or a silently wrong result (issue 16).

Every case drives the real CLI: one ``attrret: error:`` line and exit code 1, or a warning and a
correct result, and nothing half-written left behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from tests.bad_input.conftest import TINY_TRAIN, attrret, error_line, leftovers, make_folder


@pytest.fixture()
def captions(tmp_path: Path) -> Path:
    q = tmp_path / "q.txt"
    q.write_text("A female pedestrian.\nA male pedestrian.\n", encoding="utf-8")
    return q


@pytest.mark.parametrize("option", [("--lr", "inf"), ("--lr", "nan"), ("--lr", "0"), ("--img-size", "-4"),
                                    ("--label-smoothing", "nan"), ("--cache-budget-gb", "inf")])
def test_train_options_out_of_range_are_one_error(tmp_path: Path, option: tuple[str, str]) -> None:
    data = make_folder(tmp_path / "data", n_ped=4, n_veh=0)
    proc = attrret("train", "--task", "pedestrian.gender", "--data", data, "--workdir", tmp_path / "w", *TINY_TRAIN, *option)
    assert proc.returncode in (1, 2), proc.stderr  # 2: typer's own range check, 1: attrret's
    assert "Traceback" not in proc.stderr
    if proc.returncode == 1:
        error_line(proc)
    assert not (tmp_path / "w" / "models" / "pedestrian.gender" / "model.pt").exists()


def test_a_diverging_training_is_an_error_not_a_model(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data", n_ped=8, n_veh=0)
    proc = attrret("train", "--task", "pedestrian.gender", "--data", data, "--workdir", tmp_path / "w", *TINY_TRAIN,
                   "--lr", "1e30", "--epochs", "2")
    error_line(proc, "lower --lr")
    assert not (tmp_path / "w" / "models" / "pedestrian.gender" / "model.pt").exists()


def test_non_finite_kind_penalty_is_refused(tiny, tmp_path: Path, captions: Path) -> None:
    _, _, index = tiny
    proc = attrret("rank", "--queries", captions, "-o", tmp_path / "s.json", "--index", index,
                   "--kind-gate", "soft", "--kind-penalty", "inf")
    assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr, proc.stderr
    assert "penalty" in proc.stderr
    assert not (tmp_path / "s.json").exists()


def test_huge_k_is_clamped_to_the_gallery(tiny, tmp_path: Path, captions: Path) -> None:
    _, _, index = tiny
    out = tmp_path / "s.json"
    proc = attrret("rank", "--queries", captions, "-o", out, "--index", index, "-k", "1000000000")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())["results"]
    n_gallery = 18  # make_folder's 12 pedestrians + 6 vehicles
    for r in results:
        names = r["image_names"]
        assert names and len(names) == len(set(names)) <= n_gallery  # each image at most once


@pytest.mark.parametrize("target", ["directory", "/dev/full"])
def test_unwritable_outputs_are_one_error(tmp_path: Path, captions: Path, target: str) -> None:
    if target == "directory":
        out = tmp_path / "outdir"
        out.mkdir()
    else:
        out = Path(target)
        if not out.exists() or out.is_file():
            pytest.skip("no /dev/full here")
    error_line(attrret("parse", captions, "-o", out))
    assert leftovers(tmp_path) == [] and leftovers(out.parent if target == "directory" else tmp_path) == []
    if target == "/dev/full":
        assert not out.is_file()  # the device node is still a device, never replaced by a file


def test_predict_one_image_file(tiny, tmp_path: Path) -> None:
    data, work, _ = tiny
    image = sorted((data / "images").iterdir())[0]
    proc = attrret("predict", "--images", image, "-o", tmp_path / "index", "--workdir", work, "-q")
    assert proc.returncode == 0, proc.stderr
    assert "1 images" in proc.stdout


def test_gallery_with_a_fifo_and_a_non_utf8_name_warns_and_indexes_the_rest(tiny, tmp_path: Path) -> None:
    data, work, _ = tiny
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for p in sorted((data / "images").iterdir())[:3]:
        shutil.copy(p, gallery / p.name)
    os.mkfifo(gallery / "pipe.jpg")
    bad = os.fsencode(gallery) + b"/caf\xe9.jpg"
    shutil.copy(sorted((data / "images").iterdir())[0], bad)
    proc = attrret("predict", "--images", gallery, "-o", tmp_path / "index", "--workdir", work, "-q", timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "3 images" in proc.stdout
    assert "pipe.jpg: not a regular file" in proc.stderr
    assert "not valid UTF-8" in proc.stderr


def test_a_torn_last_checkpoint_does_not_block_resume(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data", n_ped=8, n_veh=0)
    work = tmp_path / "w"
    task_dir = work / "models" / "pedestrian.gender"
    task_dir.mkdir(parents=True)
    (task_dir / "last.pt").write_bytes(b"PK\x03\x04 torn")
    proc = attrret("train", "--task", "pedestrian.gender", "--data", data, "--workdir", work, *TINY_TRAIN[:-1],
                   "--epochs", "1", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "damaged" in proc.stderr
    state = torch.load(task_dir / "model.pt", map_location="cpu", weights_only=False)
    assert state is not None


def test_an_orphan_of_a_failed_first_write_does_not_block_predict(tiny, tmp_path: Path) -> None:
    """An orphan attrret can prove it made (its pending list names it) is removed; a file of the
    same kind of name that nothing names is not attrret's to remove, and stays."""
    data, work, _ = tiny
    index = tmp_path / "index"
    index.mkdir()
    (index / "probs-0123456789ab.npy").write_bytes(b"\x93NUMPY half")  # a first write that died before its header
    (index / ".attrret-pending.json").write_text('{"files": ["probs-0123456789ab.npy"]}')
    (index / "probs-ffffffffffff.npy").write_bytes(b"a user's file with an index-like name")
    proc = attrret("predict", "--images", data, "-o", index, "--workdir", work, "-q")
    assert proc.returncode == 0, proc.stderr
    assert not (index / "probs-0123456789ab.npy").exists() and not (index / ".attrret-pending.json").exists()
    assert (index / "probs-ffffffffffff.npy").read_bytes() == b"a user's file with an index-like name"


@pytest.mark.parametrize("damage", ["zero-byte probs", "names without names"])
def test_a_damaged_index_is_one_error_for_rank_and_rebuilt_by_predict(tiny, tmp_path: Path, captions: Path,
                                                                       damage: str) -> None:
    data, work, reference = tiny
    index = tmp_path / "index"
    shutil.copytree(reference, index)
    header = json.loads((index / "header.json").read_text())
    if damage == "zero-byte probs":
        (index / header["probs_file"]).write_bytes(b"")
    else:
        (index / header["names_file"]).write_text('{"files": []}', encoding="utf-8")
    error_line(attrret("rank", "--queries", captions, "-o", tmp_path / "s.json", "--index", index), "damaged index")
    proc = attrret("predict", "--images", data, "-o", index, "--workdir", work, "-q")
    assert proc.returncode == 0, proc.stderr
    assert "rebuilding" in proc.stderr
    assert attrret("rank", "--queries", captions, "-o", tmp_path / "s.json", "--index", index).returncode == 0


def test_a_deflate_bomb_checkpoint_is_refused_before_inflating(tiny, tmp_path: Path, captions: Path) -> None:
    import zipfile

    data, work, _ = tiny
    bomb_dir = tmp_path / "models" / "pedestrian.gender"
    bomb_dir.mkdir(parents=True)
    with zipfile.ZipFile(bomb_dir / "model.pt", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("archive/data.pkl", "w") as f:
            block = bytes(2**20)
            for _ in range(300):  # 300 MiB of zeros in well under 1 MiB
                f.write(block)
    assert (bomb_dir / "model.pt").stat().st_size < 2**20
    error_line(attrret("predict", "--images", data, "-o", tmp_path / "index", "--models", bomb_dir, "-q"),
               "refusing to load it")


def test_device_cuda_without_cuda_is_one_error(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    data = make_folder(tmp_path / "data", n_ped=4, n_veh=0)
    error_line(attrret("train", "--task", "pedestrian.gender", "--data", data, "--workdir", tmp_path / "w", *TINY_TRAIN,
                       "--device", "cuda"), "no CUDA device")


def test_json_nested_100000_deep_is_one_error(tmp_path: Path) -> None:
    src = tmp_path / "captions.jsonl"
    src.write_text("[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    proc = attrret("parse", src)
    error_line(proc)


def test_temp_files_of_killed_writers_are_cleaned_up_and_live_ones_kept(tmp_path: Path, captions: Path) -> None:
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # that process has exited: its temp files can never be renamed into place
    stale = tmp_path / f".out.jsonl.attrret-{dead_pid}-abc123.tmp"
    stale.write_text("half", encoding="utf-8")
    live = tmp_path / f".out.jsonl.attrret-{os.getpid()}-def456.tmp"  # this test process is alive
    live.write_text("in progress", encoding="utf-8")
    mine = tmp_path / ".notes.tmp"  # not attrret's naming
    mine.write_text("user", encoding="utf-8")
    assert attrret("parse", captions, "-o", tmp_path / "out.jsonl").returncode == 0
    assert not stale.exists() and live.exists() and mine.exists()


def test_a_truncated_trunk_cache_is_rebuilt_with_a_warning(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data", n_ped=8, n_veh=0)
    work = tmp_path / "w"
    train = ("train", "--task", "pedestrian.gender", "--data", data, "--workdir", work, *TINY_TRAIN[:-1], "--epochs", "1")
    assert attrret(*train).returncode == 0
    caches = sorted((work / "cache").rglob("*.npy"))
    assert caches
    for c in caches:
        c.write_bytes(c.read_bytes()[: c.stat().st_size // 2])
    proc = attrret(*train)
    assert proc.returncode == 0, proc.stderr
    assert "trunk cache damaged" in proc.stderr


@pytest.mark.parametrize("tamper", ["narrowed column", "unknown task", "data file outside the index"])
def test_an_index_header_that_contradicts_the_schema_is_refused(tiny, tmp_path: Path, captions: Path, tamper: str) -> None:
    _, _, reference = tiny
    index = tmp_path / "index"
    shutil.copytree(reference, index)
    header = json.loads((index / "header.json").read_text())
    if tamper == "narrowed column":
        start, stop = header["columns"]["pedestrian.gender"]
        header["columns"]["pedestrian.gender"] = [start, stop - 1]
    elif tamper == "unknown task":
        header["columns"]["pedestrian.umbrella"] = header["columns"].pop("pedestrian.gender")
    else:
        header["probs_file"] = "../probs-0123456789ab.npy"
    (index / "header.json").write_text(json.dumps(header), encoding="utf-8")
    error_line(attrret("rank", "--queries", captions, "-o", tmp_path / "s.json", "--index", index), "damaged index header")
