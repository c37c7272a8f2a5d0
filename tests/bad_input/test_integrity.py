"""What attrret reads back is checked before use (issue 16): index headers field by field,
checkpoint metadata against itself and the schema, probabilities for finiteness, staleness by
content hash, and recorded paths that do not depend on the current directory.

Every case drives the real CLI: one ``attrret: error:`` line and exit code 1 (or a correct
result), and nothing written or replaced when it fails.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from attrret.classifiers.checkpoint import load_checkpoint, save_checkpoint
from tests.bad_input.conftest import TINY_TRAIN, attrret, error_line, leftovers, make_folder


@pytest.fixture()
def captions(tmp_path: Path) -> Path:
    q = tmp_path / "q.txt"
    q.write_text("A female pedestrian.\nA male pedestrian.\n", encoding="utf-8")
    return q


WRONG_KINDS = {
    "float count": ("count", 18.0),
    "string count": ("count", "18"),
    "negative count": ("count", -1),
    "column as a string": ("columns", {"router": "0:2"}),
    "column of floats": ("columns", {"router": [0.0, 2.0]}),
    "null weight": ("weights", [None]),
    "infinite weight": ("weights", [1e999]),
    "tta as a number": ("tta", 1),
    "unknown tta": ("tta", "mirror"),
    "boolean image size": ("img_sizes", [True]),
    "models as a string": ("models", "router"),
    "source as a number": ("source", 5),
    "missing probs file": ("probs_file", None),
}


@pytest.mark.parametrize("case", list(WRONG_KINDS))
def test_index_header_fields_of_the_wrong_kind_are_refused(tiny, tmp_path: Path, captions: Path, case: str) -> None:
    data, work, reference = tiny
    index = tmp_path / "index"
    shutil.copytree(reference, index)
    header = json.loads((index / "header.json").read_text())
    key, value = WRONG_KINDS[case]
    if value is None:
        header.pop(key)
    else:
        header[key] = value
    (index / "header.json").write_text(json.dumps(header), encoding="utf-8")
    out = tmp_path / "s.json"
    error_line(attrret("rank", "--queries", captions, "-o", out, "--index", index), f"damaged index header: {key}")
    assert not out.exists()
    # what attrret wrote and finds damaged does not block recovery: predict rebuilds it
    proc = attrret("predict", "--images", data, "--workdir", work, "-o", index, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "existing index not reusable" in proc.stderr and "(18 predicted, 0 reused" in proc.stdout
    assert attrret("rank", "--queries", captions, "-o", out, "--index", index).returncode == 0


def _tamper_checkpoint(path: Path, case: str) -> None:
    ck = load_checkpoint(path, check_schema=False)
    meta, sd = json.loads(json.dumps(ck.meta)), dict(ck.state_dict)
    if case == "class count vs head":
        meta["classes"] = [*meta["classes"], "other"]
    elif case == "classes vs schema":
        meta["classes"] = meta["classes"][::-1]
    elif case == "task not in the schema":
        meta["task"] = "pedestrian.umbrella"
    elif case == "missing preprocess":
        del meta["preprocess"]
    elif case == "image size as a string":
        meta["preprocess"]["size"] = "32"
    elif case == "zero std":
        meta["preprocess"]["std"] = [0.0, 0.0, 0.0]
    elif case == "unknown crop":
        meta["crop"] = "left"
    elif case == "negative trainable blocks":
        meta["trainable_blocks"] = -3
    elif case == "no head":
        sd.pop("head.weight")
    save_checkpoint(path, meta, sd)


@pytest.mark.parametrize("case", ["class count vs head", "classes vs schema", "task not in the schema", "missing preprocess",
                                  "image size as a string", "zero std", "unknown crop", "negative trainable blocks", "no head"])
def test_checkpoint_metadata_that_contradicts_itself_is_refused_before_use(tiny, tmp_path: Path, case: str) -> None:
    data, work, _ = tiny
    w2 = tmp_path / "w"
    shutil.copytree(work / "models", w2 / "models")
    model = w2 / "models" / "pedestrian.gender" / "model.pt"
    _tamper_checkpoint(model, case)
    out = tmp_path / "index"
    line = error_line(attrret("predict", "--images", data, "--workdir", w2, "-o", out, "--quiet"), str(model))
    assert "damaged checkpoint metadata" in line or "contradict" in line or "does not have" in line, line
    assert not out.exists() and leftovers(tmp_path) == []


def test_nan_weights_are_refused_by_predict_and_the_old_index_is_kept(tiny, tmp_path: Path) -> None:
    data, work, reference = tiny
    w2, index = tmp_path / "w", tmp_path / "index"
    shutil.copytree(work / "models", w2 / "models")
    shutil.copytree(reference, index)
    before = {p.name: p.read_bytes() for p in index.iterdir()}
    ck = load_checkpoint(w2 / "models" / "pedestrian.gender")
    save_checkpoint(ck.path, ck.meta, {k: torch.full_like(v, float("nan")) if k == "head.weight" else v
                                       for k, v in ck.state_dict.items()})
    error_line(attrret("predict", "--images", data, "--workdir", w2, "-o", index, "--quiet"),
               "pedestrian.gender give non-finite probabilities")
    assert {p.name: p.read_bytes() for p in index.iterdir()} == before


def test_trainable_blocks_beyond_the_trunk_are_refused(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data", n_ped=4, n_veh=0)
    work = tmp_path / "w"
    proc = attrret("train", "--task", "pedestrian.gender", "--data", data, "--workdir", work, *TINY_TRAIN,
                   "--trainable-blocks", "40")
    error_line(proc, "--trainable-blocks 40", "blocks")
    assert not (work / "models" / "pedestrian.gender" / "model.pt").exists()


def test_a_copied_workdir_judges_staleness_by_content(tiny, tmp_path: Path, captions: Path) -> None:
    """The copy's index is checked against the copy's models (by sha256), not against the
    originals at the absolute paths it was built from; and an unchanged copy reuses every row."""
    data, work, reference = tiny
    copy = tmp_path / "copy"
    shutil.copytree(work, copy / work.name)
    shutil.copytree(reference, copy / reference.name)
    index = copy / reference.name
    out = tmp_path / "s.json"
    assert attrret("rank", "--queries", captions, "-o", out, "--index", index).returncode == 0
    proc = attrret("predict", "--images", data, "--workdir", copy / work.name, "-o", index, "--quiet")
    assert proc.returncode == 0 and "(0 predicted, 18 reused" in proc.stdout, (proc.stdout, proc.stderr)

    ck = load_checkpoint(copy / work.name / "models" / "router")  # "retrained" in the copy only
    save_checkpoint(ck.path, ck.meta, {k: v + 0.01 if v.is_floating_point() else v for k, v in ck.state_dict.items()})
    error_line(attrret("rank", "--queries", captions, "-o", tmp_path / "t.json", "--index", index),
               f"stale index: router model {ck.path.resolve()} changed")
    assert not (tmp_path / "t.json").exists()


def test_hidden_priors_do_not_depend_on_the_current_directory(tmp_path: Path, captions: Path) -> None:
    """Trained with a relative --data: the checkpoint records the resolved path, so rank
    --hidden-priors gives the same ranking from any directory (it used to resolve it against cwd)."""
    make_folder(tmp_path / "proj" / "data", n_ped=12, n_veh=2)
    proj = tmp_path / "proj"
    for task in ("router", "pedestrian.gender"):
        proc = attrret("train", "--task", task, "--data", "data", "--workdir", "w", *TINY_TRAIN, "--epochs", "1", cwd=proj)
        assert proc.returncode == 0, proc.stderr
    assert attrret("predict", "--images", "data", "--workdir", "w", "-o", "index", "--quiet", cwd=proj).returncode == 0
    header = json.loads((proj / "index" / "header.json").read_text())
    assert all(Path(m["train_data"]) == (proj / "data").resolve() for m in header["models"])

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "data").mkdir(parents=True)  # a different "data" folder where a cwd-relative lookup would land
    runs = []
    for cwd in (proj, elsewhere):
        out = tmp_path / f"s-{cwd.name}.json"
        proc = attrret("rank", "--queries", captions, "-o", out, "--index", proj / "index", "--hidden-priors", cwd=cwd)
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(out.read_text()))
    assert runs[0] == runs[1]


def _without_root_override() -> None:
    """In the child, before exec: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding
    set, so even root gets EACCES from a read-only folder (as every other user does)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def attrret_in_read_only(locked: Path, *args: object) -> subprocess.CompletedProcess:
    """Run ``attrret ARGS`` with ``locked`` made read-only for the run, as a user who cannot
    write there (root too: its override is dropped in the child); skips where that cannot be done."""
    locked.mkdir()
    locked.chmod(0o555)
    try:
        return attrret(*args, preexec_fn=_without_root_override if os.geteuid() == 0 else None)
    except (OSError, subprocess.SubprocessError) as exc:  # pragma: no cover - a sandbox without CAP_SETPCAP
        pytest.skip(f"cannot drop root's override here ({exc})")
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("command", ["parse", "rank"])
def test_permission_denied_is_one_error_naming_the_output(tiny, tmp_path: Path, captions: Path, command: str) -> None:
    _, _, index = tiny
    locked = tmp_path / "locked"
    out = locked / "out.json"
    args = ("parse", captions, "-o", out) if command == "parse" else ("rank", "--queries", captions, "-o", out, "--index", index)
    proc = attrret_in_read_only(locked, *args)
    error_line(proc, str(out), "Permission denied")
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize("how", ["-o", "--shard-out"])
def test_predict_into_a_read_only_folder_names_the_real_error(tiny, tmp_path: Path, how: str) -> None:
    """The clean-up of a failed first write never hides the error that made it necessary: this said
    "No such file or directory" (the clean-up listing a folder that was never made)."""
    data, work, _ = tiny
    locked = tmp_path / "locked"
    args = ["predict", "--images", data, "--workdir", work, "--quiet"]
    args += ["-o", locked / "index"] if how == "-o" else ["-o", tmp_path / "index", "--shard", "0/2", "--shard-out", locked / "s"]
    proc = attrret_in_read_only(locked, *args)
    line = error_line(proc, "Permission denied")
    assert "No such file or directory" not in line and str(locked) in line
    assert list(locked.iterdir()) == []
