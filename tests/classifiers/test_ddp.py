"""``torchrun --nproc_per_node=2 -m attrret train``: two gloo CPU ranks train one model and agree."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def test_two_cpu_ranks_agree(tiny_folder, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed beside this Python")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "attrret", "train", "--task", "pedestrian.gender",
           "--data", str(tiny_folder), "--workdir", str(tmp_path / "w"), "--backbone", "timm:test_efficientnet",
           "--random-init", "--img-size", "32", "--epochs", "2", "--batch-size", "4", "--device", "cpu", "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = dict(re.findall(r"\[rank (\d)/2\] pedestrian\.gender: (.*)", r.stderr))
    assert set(lines) == {"0", "1"}, r.stderr[-3000:]
    assert lines["0"] == lines["1"]  # same weights digest, best epoch and val mA on both ranks
    assert r.stdout.count("| pedestrian.gender |") == 1  # only rank 0 prints the table
    assert (tmp_path / "w" / "models" / "pedestrian.gender" / "model.pt").is_file()
