"""Never delete or overwrite what attrret did not create (issue 16, "Data loss").

Each case drives the real CLI and checks both halves of the contract: one clear error line, and
the user's files byte-for-byte as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.bad_input.conftest import attrret, error_line

SYNTH = ("--pedestrians", "3", "--vehicles", "3", "--workers", "1")


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its sha256: what must survive a refused command."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def user_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "notes.txt").write_text("my own notes\n", encoding="utf-8")
    (root / "train").mkdir(exist_ok=True)
    (root / "train" / "train_label.txt").write_text("a.jpg$1$This is a white Audi.\n", encoding="utf-8")
    return root


def test_synth_force_over_the_current_directory_is_refused(tmp_path: Path) -> None:
    home = user_folder(tmp_path / "home")
    before = snapshot(home)
    proc = subprocess.run([sys.executable, "-m", "attrret", "data", "synth", "--out", ".", "--force", *SYNTH],
                          cwd=home, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1",
                               "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")})
    error_line(proc, "current directory")
    assert snapshot(home) == before


def test_synth_force_over_a_users_folder_is_refused(tmp_path: Path) -> None:
    mine = user_folder(tmp_path / "mine")
    before = snapshot(mine)
    error_line(attrret("data", "synth", "--out", mine, "--force", *SYNTH), "not a synthetic set")
    assert snapshot(mine) == before


def test_synth_force_keeps_files_a_user_added_to_a_synthetic_set(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    assert attrret("data", "synth", "--out", out, *SYNTH).returncode == 0
    (out / "mine.txt").write_text("keep me\n", encoding="utf-8")
    before = snapshot(out)
    error_line(attrret("data", "synth", "--out", out, "--force", *SYNTH), "did not create", "mine.txt")
    assert snapshot(out) == before


def test_synth_force_replaces_its_own_earlier_output(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    assert attrret("data", "synth", "--out", out, *SYNTH).returncode == 0
    proc = attrret("data", "synth", "--out", out, "--force", "--seed", "1", *SYNTH)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "synth.json").read_text())["config"]["seed"] == 1


def test_synth_over_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "data"
    f.write_text("not a folder\n", encoding="utf-8")
    error_line(attrret("data", "synth", "--out", f, "--force", *SYNTH), "not a folder")
    assert f.read_text() == "not a folder\n"


def test_demo_never_replaces_a_users_data_folder(tmp_path: Path) -> None:
    w = tmp_path / "w"
    mine = user_folder(w / "data-fast")
    before = snapshot(mine)
    error_line(attrret("demo", "--fast", "--workdir", w), "not a synthetic set")
    assert snapshot(mine) == before


def test_rank_output_over_its_own_captions_is_refused(tmp_path: Path) -> None:
    q = tmp_path / "q.txt"
    q.write_text("This is a white Audi.\n", encoding="utf-8")
    error_line(attrret("rank", "--queries", q, "-o", q, "--index", tmp_path / "index"), "--out", "--queries")
    assert q.read_text() == "This is a white Audi.\n"


def test_rank_explain_over_the_submission_is_refused(tmp_path: Path) -> None:
    q = tmp_path / "q.txt"
    q.write_text("This is a white Audi.\n", encoding="utf-8")
    s = tmp_path / "s.json"
    error_line(attrret("rank", "--queries", q, "-o", s, "--explain", s, "--index", tmp_path / "index"), "--explain")


def test_report_output_over_its_inputs_is_refused(tmp_path: Path) -> None:
    sub = tmp_path / "s.json"
    sub.write_text('{"results": []}\n', encoding="utf-8")
    labels = tmp_path / "labels.txt"
    labels.write_text("a.jpg$1$This is a white Audi.\n", encoding="utf-8")
    for target, name in ((sub, "--submission"), (labels, "--labels")):
        before = target.read_bytes()
        error_line(attrret("report", "--submission", sub, "--labels", labels, "-o", target), "--out", name)
        assert target.read_bytes() == before


def test_parse_output_over_its_input_is_refused_even_through_a_symlink(tmp_path: Path) -> None:
    src = tmp_path / "captions.txt"
    src.write_text("This is a white Audi.\n", encoding="utf-8")
    link = tmp_path / "link.txt"
    link.symlink_to(src)
    error_line(attrret("parse", src, "-o", link), "--output", "INPUT")
    assert src.read_text() == "This is a white Audi.\n"


def test_predict_index_over_the_gallery_folder_is_refused(tmp_path: Path) -> None:
    gallery = user_folder(tmp_path / "gallery")
    before = snapshot(gallery)
    error_line(attrret("predict", "--images", gallery, "-o", gallery, "--workdir", tmp_path / "w"), "--out", "--images")
    assert snapshot(gallery) == before


def test_parse_writes_utf8_to_stdout_in_the_c_locale(tmp_path: Path) -> None:
    src = tmp_path / "captions.txt"
    src.write_text("This is a white Audi, café.\n", encoding="utf-8")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONIOENCODING": "", "PYTHONUTF8": "0", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "attrret", "parse", str(src)], capture_output=True, env=env)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.decode("utf-8"))
    assert "café" in record["caption"]
