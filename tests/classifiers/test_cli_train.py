"""``attrret train``: table on stdout, files under the workdir, clear one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from attrret.cli import main


def test_train_command_writes_models_and_prints_the_table(tiny_folder, tmp_path, capsys):
    w = tmp_path / "w"
    with pytest.raises(SystemExit) as done:
        main(["train", "--task", "router", "--data", str(tiny_folder), "--workdir", str(w), "--backbone", "timm:test_vit",
              "--random-init", "--img-size", "32", "--epochs", "1", "--batch-size", "8", "--holdout", "6", "--quiet"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("| task |") and "| router |" in out
    assert {p.name for p in (w / "models" / "router").iterdir()} == {"model.pt", "metrics.json", "config.json"}


def test_bad_task_is_one_line_exit_1(tiny_folder, tmp_path):
    r = subprocess.run([sys.executable, "-m", "attrret", "train", "--task", "pedestrian.nose", "--data", str(tiny_folder),
                        "--workdir", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "unknown task 'pedestrian.nose'" in r.stderr and "Traceback" not in r.stderr


def test_unknown_crop_is_a_usage_error_naming_the_choices(tiny_folder, tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["train", "--task", "pedestrian.hat", "--data", str(tiny_folder), "--workdir", str(tmp_path / "w"),
              "--crop", "head", "--quiet"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "'head' is not one of 'full', 'top', 'upper', 'bottom'" in " ".join(err.replace("│", " ").split())
    assert "Traceback" not in err and not (tmp_path / "w" / "models").exists()


def test_img_size_takes_height_x_width(tiny_folder, tmp_path, capsys):
    from attrret.classifiers.checkpoint import load_checkpoint

    w = tmp_path / "w"
    with pytest.raises(SystemExit) as done:
        main(["train", "--task", "router", "--data", str(tiny_folder), "--workdir", str(w), "--backbone", "timm:test_efficientnet",
              "--random-init", "--img-size", "48x24", "--epochs", "1", "--batch-size", "8", "--quiet"])
    assert done.value.code == 0
    assert load_checkpoint(w / "models" / "router").preprocess.hw == (48, 24)


@pytest.mark.parametrize("value", ["48x", "48x24x3", "big", "0", "-4", "48,24"])
def test_a_bad_img_size_is_a_usage_error_saying_what_is_accepted(tiny_folder, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as done:
        main(["train", "--task", "router", "--data", str(tiny_folder), "--workdir", str(tmp_path / "w"), "--img-size", value, "--quiet"])
    err = " ".join(capsys.readouterr().err.replace("│", " ").split())
    assert done.value.code == 2 and "Invalid value for --img-size:" in err, err
    assert "expected HxW (height x width, e.g. 256x128) or N" in err or "must be positive" in err
    assert "Traceback" not in err and not (tmp_path / "w" / "models").exists()
