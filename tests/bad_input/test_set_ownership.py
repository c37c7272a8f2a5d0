"""``data import --force`` and ``data synth --force`` replace only a set every file of which
attrret wrote (its marker lists them), publish atomically against a folder that appears at the
output path meanwhile, and leave nothing behind when they fail (issue 29, data loss)."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest

from attrret.errors import InputError
from tests.bad_input.conftest import attrret, error_line
from tests.bad_input.test_data_loss import SYNTH, snapshot
from tests.data.import_fixtures import tiny_image

CSV = "image,kind,gender,hat\np1.png,pedestrian,female,no\np2.png,pedestrian,male,yes\np3.png,pedestrian,male,no\n"


def csv_source(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in (1, 2, 3):
        tiny_image(root / f"p{i}.png", i)
    (root / "labels.csv").write_text(CSV)
    return root / "labels.csv"


def imported(tmp_path: Path) -> tuple[Path, Path]:
    src, out = csv_source(tmp_path / "src"), tmp_path / "set"
    proc = attrret("data", "import", "csv", src, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return src, out


@pytest.mark.parametrize("where", ["train/train_images/mine.jpg", "train/deep/er/notes.txt", "val/mine.txt"])
def test_import_force_keeps_files_a_user_added_in_subfolders(tmp_path, where):
    src, out = imported(tmp_path)
    target = out / where
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"mine")
    before = snapshot(out)
    error_line(attrret("data", "import", "csv", src, "--out", out, "--force"), "a file attrret did not write", where)
    assert snapshot(out) == before


def test_import_force_keeps_a_file_a_user_changed(tmp_path):
    src, out = imported(tmp_path)
    label = next(out.glob("*/*_label.txt"))
    label.write_text(label.read_text() + "# my note\n")
    before = snapshot(out)
    error_line(attrret("data", "import", "csv", src, "--out", out, "--force"), "a file changed since attrret wrote it")
    assert snapshot(out) == before


def test_a_folder_that_merely_holds_an_import_json_is_not_attrrets(tmp_path):
    src = csv_source(tmp_path / "src")
    mine = tmp_path / "mine"
    (mine / "train").mkdir(parents=True)
    (mine / "train" / "my_labels.txt").write_text("mine")
    (mine / "import.json").write_text(json.dumps({"format": "csv"}))
    before = snapshot(mine)
    error_line(attrret("data", "import", "csv", src, "--out", mine, "--force"), "does not list the files attrret wrote")
    assert snapshot(mine) == before


def test_synth_force_keeps_files_a_user_added_in_subfolders(tmp_path):
    out = tmp_path / "synth"
    assert attrret("data", "synth", "--out", out, *SYNTH).returncode == 0
    (out / "test" / "test_images" / "mine.jpg").write_bytes(b"mine")
    before = snapshot(out)
    error_line(attrret("data", "synth", "--out", out, "--force", *SYNTH), "a file attrret did not write")
    assert snapshot(out) == before


def test_force_still_replaces_attrrets_own_set(tmp_path):
    src, out = imported(tmp_path)
    proc = attrret("data", "import", "csv", src, "--out", out, "--force", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    assert not list(tmp_path.glob(".set*"))


@pytest.mark.parametrize("command", ["import", "synth"])
def test_a_folder_created_at_the_output_meanwhile_is_refused_and_kept(tmp_path, monkeypatch, command):
    """The output path was free when checked; a folder with a user's file appears there before publishing."""
    from attrret.data import layout

    out = tmp_path / "out"
    real = layout.os.rename

    def someone_else_writes_first(a, b):
        if Path(b) == out and not out.exists():
            out.mkdir()
            (out / "theirs.txt").write_text("not attrret's")
        return real(a, b)

    monkeypatch.setattr(layout.os, "rename", someone_else_writes_first)
    with pytest.raises(InputError, match="something was written at the output path"):
        if command == "import":
            from attrret.data.importers.build import import_dataset
            from attrret.data.importers.source import ImportOptions

            import_dataset("csv", csv_source(tmp_path / "src"), out, ImportOptions(kind=None))
        else:
            from attrret.data.synth import SynthConfig, generate

            generate(out, SynthConfig(pedestrians=3, vehicles=3, workers=1))
    assert (out / "theirs.txt").read_text() == "not attrret's" and sorted(p.name for p in out.iterdir()) == ["theirs.txt"]
    assert not list(tmp_path.glob(".out*"))  # no hidden partial folder left


def test_a_full_disk_names_the_output_file_and_leaves_no_partial_folder(tmp_path, monkeypatch):
    from attrret.data.importers import build

    src = csv_source(tmp_path / "src")
    calls = []

    def full(a, b, *args, **kw):
        calls.append(b)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(a))  # shutil names the source here
        return real(a, b, *args, **kw)

    real = shutil.copyfile
    monkeypatch.setattr(build.shutil, "copyfile", full)
    with pytest.raises(OSError) as info:
        build.import_dataset("csv", src, tmp_path / "set", build.ImportOptions())
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(calls[1]) and ".set.partial" in info.value.filename
    assert not (tmp_path / "set").exists() and not list(tmp_path.glob(".set*"))


def test_a_failed_synth_leaves_no_partial_folder(tmp_path, monkeypatch):
    import importlib

    from attrret.data.synth import SynthConfig, generate

    gen_mod = importlib.import_module("attrret.data.synth.generate")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gen_mod, "_run_jobs", full)
    with pytest.raises(OSError):
        generate(tmp_path / "s", SynthConfig(pedestrians=3, vehicles=3, workers=1))
    assert not list(tmp_path.iterdir())
