"""The ownership rule as a property: random user files placed in every output folder attrret
writes survive every command, with ``--force`` and without (issue 29).

For each writer (predict, predict --meta, predict --shard-out, index merge, data import, data
synth, data crops, export onnx, attributes, report, demo): make its output once, place seeded-random user files in that folder
and its subfolders (plain names, and names like attrret's own: ``probs-<hex>.npy``,
``names-<hex>.json``, ``meta-<hex>.parquet``, ``.<name>.tmp``), run the command again, then check every user file is
byte for byte what was placed, whether the command succeeded or refused.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.bad_input.conftest import attrret
from tests.bad_input.test_data_loss import SYNTH
from tests.bad_input.test_set_ownership import csv_source

TEMPLATES = ("notes-{h}.txt", "probs-{h}.npy", "names-{h}.json", ".{h}.tmp", "mine-{h}.jpg", "probs-{h}{h}.npy",
             "train_label-{h}.txt", "{h}.onnx", "index-{h}.json", "meta-{h}.parquet", "meta.csv.{h}", "cam_{h}.jpg")


def plant(folder: Path, seed: int, count: int = 12) -> dict[Path, bytes]:
    """``count`` user files at random places under ``folder`` (never over an existing file)."""
    rng = np.random.default_rng(seed)
    dirs = [folder, *[Path(d) for d, _, _ in os.walk(folder) if Path(d) != folder]]
    placed: dict[Path, bytes] = {}
    while len(placed) < count:
        where = dirs[int(rng.integers(len(dirs)))]
        if rng.random() < 0.2:
            where = where / f"mine-{int(rng.integers(1e6)):06d}"
        name = TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(h=f"{int(rng.integers(16**12)):012x}")
        path = where / name
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        body = rng.bytes(int(rng.integers(1, 64)))
        path.write_bytes(body)
        placed[path] = body
    return placed


@pytest.fixture(scope="module")
def setup(tiny, tmp_path_factory):
    """What the writers read: the tiny models and gallery, an index, a submission and its labels."""
    data, work, index = tiny
    root = tmp_path_factory.mktemp("own")
    labels = root / "labels.txt"  # the pedestrians of the tiny set (its vehicles' labels are partial)
    labels.write_text("".join(ln for ln in (data / "labels.txt").read_text().splitlines(keepends=True) if "pedestrian" in ln.lower()))
    sub = root / "sub.json"
    proc = attrret("rank", "--queries", labels, "--index", index, "-o", sub)
    assert proc.returncode == 0, proc.stderr
    meta = root / "meta.csv"  # every image of the tiny gallery with a camera and a time
    names = [p.name for p in sorted((data / "images").iterdir())]
    meta.write_text("image,camera,time\n" + "".join(f"{n},{i % 2},2026-12-01T08:00:{i:02d}\n" for i, n in enumerate(names)))
    frames = root / "frames"  # two video frames and a detection in each
    frames.mkdir()
    for i, n in enumerate(names[:2], 1):
        (frames / f"{i:06d}.jpg").write_bytes((data / "images" / n).read_bytes())
    det = root / "det.txt"
    det.write_text("1,1,2,2,12,20,0.9\n2,1,3,3,12,20,0.8\n")
    return {"data": data, "work": work, "index": index, "sub": sub, "labels": labels, "csv": csv_source(root / "csv"), "root": root,
            "meta": meta, "frames": frames, "det": det}


def command(name: str, s: dict, out: Path, force: bool) -> list:
    f = ["--force"] if force else []
    return {
        "predict": ["predict", "--images", s["data"], "--workdir", s["work"], "-o", out, "-q"],
        "predict-meta": ["predict", "--images", s["data"], "--workdir", s["work"], "-o", out, "--meta", s["meta"], "-q"],
        "crops": ["data", "crops", "--frames", s["frames"], "--detections", s["det"], "--out", out, *f],
        "shard-out": ["predict", "--images", s["data"], "--workdir", s["work"], "-o", s["root"] / "x-index", "--shard", "0/2",
                      "--shard-out", out, "-q"],
        "merge": ["index", "merge", s["root"] / "m.shard-0-of-2", s["root"] / "m.shard-1-of-2", "-o", out],
        "import": ["data", "import", "csv", s["csv"], "--out", out, *f],
        "synth": ["data", "synth", "--out", out, *SYNTH, *f],
        "export": ["export", "onnx", "--workdir", s["work"], "-o", out / "m.onnx", "-q", *f],
        "attributes": ["attributes", "--index", s["index"], "-o", out / "a.csv"],
        "report": ["report", "--submission", s["sub"], "--labels", s["labels"], "-o", out / "r.html"],
    }[name]


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("name", ["predict", "predict-meta", "shard-out", "merge", "import", "synth", "crops", "export",
                                  "attributes", "report"])
def test_user_files_survive_every_writer(setup, tmp_path, name, force):
    if name == "merge":
        for i in range(2):
            args = ["predict", "--images", setup["data"], "--workdir", setup["work"], "-o", setup["root"] / "m", "--shard",
                    f"{i}/2", "--shard-out", setup["root"] / f"m.shard-{i}-of-2", "-q"]
            assert attrret(*args).returncode == 0
    out = tmp_path / "out"
    if name in ("export", "attributes", "report"):  # they write a file into a folder that exists
        out.mkdir()
    first = attrret(*command(name, setup, out, False))
    assert first.returncode == 0, first.stderr
    placed = plant(out, seed=zlib.crc32(f"{name}-{force}".encode()))  # the same files every run (str hash is salted)
    attrret(*command(name, setup, out, force))  # may succeed or refuse: either way the user's files stay
    for path, body in placed.items():
        assert path.is_file() and path.read_bytes() == body, f"{name}: {path.relative_to(out)} was lost or changed"


@pytest.mark.slow
def test_user_files_survive_the_demo(setup, tmp_path):
    """``attrret demo --fast --data D --workdir W`` twice, user files placed in W between the runs."""
    data = setup["root"] / "demo-data"
    if not data.exists():
        assert attrret("data", "synth", "--out", data, *SYNTH).returncode == 0
    work = tmp_path / "w"
    assert attrret("demo", "--fast", "--data", data, "--workdir", work, timeout=900).returncode == 0
    placed = plant(work, seed=7, count=20)
    attrret("demo", "--fast", "--data", data, "--workdir", work, timeout=900)
    for path, body in placed.items():
        assert path.is_file() and path.read_bytes() == body, f"demo: {path.relative_to(work)} was lost or changed"
    assert json.loads((work / "demo.json").read_text())
