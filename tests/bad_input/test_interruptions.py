"""``kill -9`` in the middle of ``attrret train`` and ``attrret predict``, then run again.

train: the last finished epoch is on disk (``last.pt``, written atomically); ``--resume``
continues from it and ends with the same metrics as a run that was never interrupted.
predict: the previous index stays byte-identical; the rerun completes, reusing its rows.
"""

from __future__ import annotations

import errno
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

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and FIFOs are POSIX")

TASK = "pedestrian.gender"
#: --no-cache: every step decodes its images and runs the whole backbone, so an epoch lasts long
#: enough (tenths of a second) for the kill to land inside the run rather than after it.
TRAIN = ("train", "--task", TASK, "--backbone", "timm:test_vit", "--random-init", "--img-size", "48", "--epochs", "5",
         "--batch-size", "2", "--no-cache", "--seed", "3")


def _popen(*args) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
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


def test_train_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    data = make_folder(tmp_path / "data", n_ped=40, n_veh=0)
    work = tmp_path / "w"
    model_dir = work / "models" / TASK

    proc = _popen(*TRAIN, "--data", data, "--workdir", work)
    _wait_for(lambda: (model_dir / "last.pt").is_file(), proc, "the first epoch was saved")
    proc.send_signal(signal.SIGKILL)  # now inside epoch 2 of 5
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (model_dir / "metrics.json").exists() and not (model_dir / "model.pt").exists()
    last = torch.load(model_dir / "last.pt", map_location="cpu", weights_only=True)  # complete, loadable
    assert 0 <= last["epoch"] < 4

    resumed = attrret(*TRAIN, "--data", data, "--workdir", work, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{TASK}: resumed after epoch {last['epoch'] + 1}" in resumed.stderr
    assert not (model_dir / "last.pt").exists() and leftovers(work) == []

    fresh = attrret(*TRAIN, "--data", data, "--workdir", tmp_path / "w2", "--quiet")
    assert fresh.returncode == 0, fresh.stderr
    a = json.loads((model_dir / "metrics.json").read_text())
    b = json.loads((tmp_path / "w2" / "models" / TASK / "metrics.json").read_text())
    # Every random choice derives from (seed, task, epoch) and the optimiser state is restored, so
    # the runs should agree exactly; "within noise" allows float reduction-order differences only:
    # losses to 1e-3 relative, and accuracy/mA to one validation image (1/n_val).
    assert len(a["history"]) == len(b["history"]) == 5 and a["best_epoch"] == b["best_epoch"]
    assert np.allclose([h["loss"] for h in a["history"]], [h["loss"] for h in b["history"]], rtol=1e-3)
    one = 1.0 / a["n_val"]
    for ha, hb in zip(a["history"], b["history"]):
        assert abs(ha["val"]["accuracy"] - hb["val"]["accuracy"]) <= one + 1e-9
        assert abs(ha["val"]["mA"] - hb["val"]["mA"]) <= one + 1e-9


def _jpeg(path: Path, value: int) -> None:
    Image.fromarray(np.full((48, 24, 3), value, np.uint8)).save(path)


def test_predict_killed_mid_run_keeps_the_previous_index_and_reruns(tiny, tmp_path):
    """The gallery's last image is a FIFO: predict blocks reading it, deterministically mid-run
    (models loaded, earlier images decoded), and is killed there."""
    _, work, _ = tiny
    gallery, idx = tmp_path / "gallery", tmp_path / "idx"
    make_folder(gallery, n_ped=4, n_veh=2)
    images = gallery / "images"
    first = attrret("predict", "--images", images, "--workdir", work, "-o", idx, "--quiet")
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in idx.iterdir()}

    for i in range(3):
        _jpeg(images / f"new{i}.jpg", 40 * i)
    fifo = images / "zzz.jpg"
    os.mkfifo(fifo)
    proc = _popen("predict", "--images", images, "--workdir", work, "-o", idx, "--quiet")
    fds: list[int] = []

    def reading() -> bool:  # a non-blocking open for writing succeeds once predict has the FIFO open
        try:
            fds.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            return True
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            return False

    _wait_for(reading, proc, "predict reached the last image")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    os.close(fds[0])
    assert proc.returncode == -signal.SIGKILL
    assert {p.name: p.read_bytes() for p in idx.iterdir()} == before  # header, probs, names: untouched

    fifo.unlink()
    _jpeg(fifo, 200)
    again = attrret("predict", "--images", images, "--workdir", work, "-o", idx, "--quiet")
    assert again.returncode == 0, again.stderr
    assert "10 images (4 predicted, 6 reused, 0 removed)" in again.stdout
    from attrret.retrieval.index import open_index

    new, old_names = open_index(idx), json.loads(next(n for k, n in before.items() if k.startswith("names-")))["names"]
    assert len(new) == 10 and set(old_names) < set(new.names) and leftovers(idx) == []
    shutil.rmtree(gallery)
