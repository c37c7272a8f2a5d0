"""``kill -9`` in the middle of ``attrret train`` and ``attrret predict``, then run again.

train: the last finished epoch is on disk (``last.pt``, written atomically); ``--resume``
continues from it and ends with the same metrics as a run that was never interrupted.
predict: the previous index stays byte-identical; the rerun completes, reusing its rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from .conftest import attrret, leftovers, make_folder

#: Real processes killed at fault points (about a minute in all): ``make test-all`` and CI run them.
pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and FIFOs are POSIX"), pytest.mark.slow]

@pytest.fixture(autouse=True)
def _real_processes(monkeypatch):
    """Every run here is a process of its own: a resumed run must match the killed one's thread
    count (``OMP_NUM_THREADS=1``, see conftest.attrret) for its weights to agree bit for bit."""
    monkeypatch.setenv("ATTRRET_TEST_SUBPROCESS", "1")


TASK = "pedestrian.gender"
#: --no-cache: every step decodes its images and runs the whole backbone (the full input path).
TRAIN = ("train", "--task", TASK, "--backbone", "timm:test_vit", "--random-init", "--img-size", "48", "--epochs", "5",
         "--batch-size", "2", "--no-cache", "--seed", "3")


def _popen(*args, **extra_env: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra_env}
    return subprocess.Popen([sys.executable, "-m", "attrret", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(cond, proc: subprocess.Popen, what: str, timeout: float = 240.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def _tensor_sha256(path: Path) -> str:
    """sha256 over a model.pt's tensors (names, dtypes, shapes and raw bytes), in name order."""
    sd = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    h = hashlib.sha256()
    for name, t in sorted(sd.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def test_train_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    """Killed at a fixed point (the test-only ATTRRET_TEST_KILL_AT_EPOCH hook in classifiers/train.py:
    SIGKILL right after epoch 2's first optimiser step, epoch 1's last.pt on disk), then resumed: the
    final weights are bit-identical to an uninterrupted run's."""
    data = make_folder(tmp_path / "data", n_ped=40, n_veh=0)
    work = tmp_path / "w"
    model_dir = work / "models" / TASK

    proc = _popen(*TRAIN, "--data", data, "--workdir", work, ATTRRET_TEST_KILL_AT_EPOCH="2")
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == -signal.SIGKILL, err
    assert not (model_dir / "metrics.json").exists() and not (model_dir / "model.pt").exists()
    last = torch.load(model_dir / "last.pt", map_location="cpu", weights_only=True)  # complete, loadable
    assert last["epoch"] == 0  # epoch 1 saved; epoch 2's one step is lost with the process

    resumed = attrret(*TRAIN, "--data", data, "--workdir", work, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{TASK}: resumed after epoch 1" in resumed.stderr
    assert not (model_dir / "last.pt").exists() and leftovers(work) == []

    fresh = attrret(*TRAIN, "--data", data, "--workdir", tmp_path / "w2", "--quiet")
    assert fresh.returncode == 0, fresh.stderr
    fresh_dir = tmp_path / "w2" / "models" / TASK
    a = json.loads((model_dir / "metrics.json").read_text())
    b = json.loads((fresh_dir / "metrics.json").read_text())
    # Every random choice derives from (seed, task, epoch) and the optimiser/scheduler state is
    # restored, so the runs agree exactly: same weights bit for bit, same per-epoch losses and scores.
    assert _tensor_sha256(model_dir / "model.pt") == _tensor_sha256(fresh_dir / "model.pt")
    assert a["weights_sha256"] == b["weights_sha256"]
    assert len(a["history"]) == len(b["history"]) == 5 and a["best_epoch"] == b["best_epoch"]
    drop = lambda h: {k: v for k, v in h.items() if k != "seconds"}  # noqa: E731 - wall time differs
    assert [drop(h) for h in a["history"]] == [drop(h) for h in b["history"]]


def _jpeg(path: Path, value: int) -> None:
    Image.fromarray(np.full((48, 24, 3), value, np.uint8)).save(path)


def test_predict_killed_mid_run_keeps_the_previous_index_and_reruns(tiny, tmp_path):
    """predict is killed at a well-defined point mid-run (ATTRRET_TEST_KILL_BEFORE_WRITE: every
    new image predicted, the new index not yet written): no timing, no race."""
    _, work, _ = tiny
    gallery, idx = tmp_path / "gallery", tmp_path / "idx"
    make_folder(gallery, n_ped=4, n_veh=2)
    images = gallery / "images"
    first = attrret("predict", "--images", images, "--workdir", work, "-o", idx, "--quiet")
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in idx.iterdir()}

    for i in range(3):
        _jpeg(images / f"new{i}.jpg", 40 * i)
    _jpeg(images / "zzz.jpg", 200)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "ATTRRET_TEST_KILL_BEFORE_WRITE": "1"}
    proc = subprocess.run([sys.executable, "-m", "attrret", "predict", "--images", str(images), "--workdir", str(work),
                           "-o", str(idx), "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert {p.name: p.read_bytes() for p in idx.iterdir()} == before  # header, probs, names, locks: untouched

    again = attrret("predict", "--images", images, "--workdir", work, "-o", idx, "--quiet")
    assert again.returncode == 0, again.stderr
    assert "10 images (4 predicted, 6 reused, 0 removed)" in again.stdout
    from attrret.retrieval.index import open_index

    new, old_names = open_index(idx), json.loads(next(n for k, n in before.items() if k.startswith("names-")))["names"]
    assert len(new) == 10 and set(old_names) < set(new.names) and leftovers(idx) == []
    shutil.rmtree(gallery)


def _interrupted(proc: subprocess.CompletedProcess) -> None:
    """Ctrl-C the documented way: exit 130, one last line ``attrret: interrupted``, no traceback."""
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "Aborted" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "attrret: interrupted", proc.stderr


def test_ctrl_c_in_train_says_interrupted_and_resume_continues(tmp_path):
    """SIGINT (what Ctrl-C sends) at a fixed point mid-epoch 2 (ATTRRET_TEST_SIGNAL=INT on the
    same fault point as the kill test): epoch 1's last.pt is intact and nothing half-written."""
    data = make_folder(tmp_path / "data", n_ped=12, n_veh=0)
    work = tmp_path / "w"
    proc = attrret(*TRAIN, "--data", data, "--workdir", work, "--quiet",
                   env={"ATTRRET_TEST_KILL_AT_EPOCH": "2", "ATTRRET_TEST_SIGNAL": "INT"})
    _interrupted(proc)
    model_dir = work / "models" / TASK
    assert torch.load(model_dir / "last.pt", map_location="cpu", weights_only=True)["epoch"] == 0
    assert not (model_dir / "model.pt").exists() and leftovers(work) == []
    resumed = attrret(*TRAIN, "--data", data, "--workdir", work, "--resume")
    assert resumed.returncode == 0 and f"{TASK}: resumed after epoch 1" in resumed.stderr, resumed.stderr


def test_ctrl_c_in_predict_says_interrupted_and_keeps_the_index(tiny, tmp_path):
    data, work, reference = tiny
    idx = tmp_path / "idx"
    shutil.copytree(reference, idx)
    (data_copy := tmp_path / "gallery").mkdir()
    for p in sorted((data / "images").iterdir()):
        shutil.copy(p, data_copy / p.name)
    _jpeg(data_copy / "new.jpg", 120)
    before = {p.name: p.read_bytes() for p in idx.iterdir()}
    proc = attrret("predict", "--images", data_copy, "--workdir", work, "-o", idx, "--quiet",
                   env={"ATTRRET_TEST_KILL_BEFORE_WRITE": "1", "ATTRRET_TEST_SIGNAL": "INT"})
    _interrupted(proc)
    assert {p.name: p.read_bytes() for p in idx.iterdir()} == before and leftovers(idx) == []
