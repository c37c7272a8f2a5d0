"""Concurrent writers and readers of one index (issue 16, "Concurrency").

Four ``predict`` runs write one index while a reader loops ``rank``: the runs queue on the
index's write lock, the reader sees the old index or the new one, and the final index equals
a single run's. Real processes, no sleeps: the reader stops when every writer has exited.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.bad_input.conftest import attrret

#: Several real processes on one index (about half a minute): ``make test-all`` and CI run them.
pytestmark = pytest.mark.slow


def _content(index: Path) -> tuple[list[str], str]:
    header = json.loads((index / "header.json").read_text())
    names = json.loads((index / header["names_file"]).read_text())["names"]
    probs = np.load(index / header["probs_file"])
    return names, hashlib.sha256(probs.tobytes()).hexdigest()


def test_four_predicts_and_a_reader_on_one_index(tiny, tmp_path: Path) -> None:
    data, work, reference = tiny
    index = tmp_path / "index"
    first = attrret("predict", "--images", data, "-o", index, "--workdir", work, "-q", "--tta", "none")
    assert first.returncode == 0, first.stderr
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    # The index holds other settings (no TTA): the first writer to get the lock recomputes every
    # image while the others wait, then they reuse its predictions and rewrite the index.
    writers = [subprocess.Popen([sys.executable, "-m", "attrret", "predict", "--images", str(data), "-o", str(index),
                                 "--workdir", str(work), "-q"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for _ in range(4)]
    q = tmp_path / "q.txt"
    q.write_text("A female pedestrian.\nThis is a white Audi.\n", encoding="utf-8")
    reads = 0
    while any(w.poll() is None for w in writers) or reads == 0:
        proc = attrret("rank", "--queries", q, "-o", tmp_path / f"s{reads % 2}.json", "--index", index)
        assert proc.returncode == 0, proc.stderr
        reads += 1
    for w in writers:
        out, err = w.communicate()
        assert w.returncode == 0, err
    assert sorted(p.name for p in index.iterdir() if not p.name.startswith(".")) == sorted(
        ["header.json", json.loads((index / "header.json").read_text())["probs_file"],
         json.loads((index / "header.json").read_text())["names_file"]])
    # Flip TTA, like the session's index built in one run: same content, byte for byte.
    assert _content(index) == _content(reference)


def test_two_trainings_of_one_task_queue_and_both_succeed(tmp_path: Path) -> None:
    from tests.bad_input.conftest import TINY_TRAIN, make_folder

    data = make_folder(tmp_path / "data", n_ped=8, n_veh=0)
    work = tmp_path / "w"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "attrret", "train", "--task", "pedestrian.gender", "--data", str(data),
           "--workdir", str(work), *TINY_TRAIN, "--epochs", "2"]
    runs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    for r in runs:
        _, err = r.communicate()
        assert r.returncode == 0, err
        assert "Traceback" not in err
    task_dir = work / "models" / "pedestrian.gender"
    assert (task_dir / "model.pt").is_file()
    assert not [p.name for p in task_dir.iterdir() if p.name.endswith(".tmp") or p.name == "last.pt"]
