"""Import sources that would train wrong labels silently, or crash, get one clear error or a counted skip.

PA-100K labels that are not 0 or 1 (NaN, -1, 0.4) or not numbers, a damaged ``.mat``; PETA keys that
are not image keys and identities with two different lines; CSV headers with a repeated column and
cells beyond the csv module's field limit (issue 29).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from import_fixtures import error_line, run, tiny_image
from test_import_pa100k import pa100k, save_annotation  # noqa: F401 - the fixture
from test_import_peta import make_peta


def write_labels(mat: Path, labels: np.ndarray, names: list[str]) -> None:
    from attrret.data.importers.pa100k import PA100K_ATTRIBUTES

    doc = {"attributes": np.array([[a] for a in PA100K_ATTRIBUTES], dtype=object),
           "train_images_name": np.array([[n] for n in names], dtype=object), "train_label": labels}
    scipy.io.savemat(str(mat), doc)


@pytest.mark.parametrize(("value", "shown"), [(np.nan, "nan"), (-1.0, "-1.0"), (0.4, "0.4"), (2.0, "2.0")])
def test_pa100k_labels_that_are_not_0_or_1_are_refused(pa100k, tmp_path, capsys, value, shown):
    names = ["000001.jpg", "000002.jpg"]
    labels = np.zeros((2, 26), np.float64)
    labels[1, 3] = value
    write_labels(pa100k / "annotation.mat", labels, names)
    line = error_line(*run("data", "import", "pa100k", pa100k, "--out", tmp_path / "o", capsys=capsys)[:3:2])
    assert "train_label row 1 ('000002.jpg'), attribute AgeLess18" in line and shown in line and "is not 0 or 1" in line
    assert not (tmp_path / "o").exists()


def test_pa100k_labels_stored_as_text_are_refused(pa100k, tmp_path, capsys):
    names = ["000001.jpg"]
    write_labels(pa100k / "annotation.mat", np.array([["yes"] * 26], dtype=object), names)
    line = error_line(*run("data", "import", "pa100k", pa100k, "--out", tmp_path / "o", capsys=capsys)[:3:2])
    assert "train_label must hold the numbers 0 and 1" in line


@pytest.mark.parametrize("damage", ["zlib", "truncated"])
def test_a_damaged_mat_file_is_one_error(pa100k, tmp_path, capsys, damage):
    mat = pa100k / "annotation.mat"
    blob = mat.read_bytes()
    if damage == "zlib":  # a compressed MATLAB 5 element whose stream is garbage
        scipy.io.savemat(str(mat), {"attributes": np.array([["Female"]], dtype=object)}, do_compression=True)
        blob = mat.read_bytes()
        blob = blob[:140] + bytes(b ^ 0x5A for b in blob[140:])
        assert zlib  # the error class scipy raises here
    else:
        blob = blob[: len(blob) // 2]
    mat.write_bytes(blob)
    line = error_line(*run("data", "import", "pa100k", pa100k, "--out", tmp_path / "o", capsys=capsys)[:3:2])
    assert "annotation.mat" in line and ("not a readable MATLAB .mat file" in line or "not a PA-100K" in line)


@pytest.mark.parametrize("key", ["0\u0661\u0662", "9" * 5000, "../x", "b\u00e9"])
def test_peta_keys_that_are_not_image_keys_are_refused(tmp_path, capsys, key):
    peta = make_peta(tmp_path / "peta")
    label = peta / "VIPeR" / "archive" / "Label.txt"
    label.write_bytes(label.read_bytes() + f"{key} personalMale\n".encode("utf-8", "surrogateescape"))
    line = error_line(*run("data", "import", "peta", peta, "--out", tmp_path / "o", capsys=capsys)[:3:2])
    assert "Label.txt:7: key: " in line and "is not a PETA image key" in line
    assert len(line) < 400  # a 5,000-digit key is cut in the message


def test_a_peta_identity_with_two_different_lines_is_skipped_and_counted(tmp_path, capsys):
    peta = make_peta(tmp_path / "peta")
    label = peta / "VIPeR" / "archive" / "Label.txt"
    label.write_bytes(label.read_bytes() + b"001 personalMale personalLess30\n" + b"002 personalMale personalLess45 "
                      b"upperBodyLongSleeve carryingBackpack accessoryHat\n")  # 001 differs, 002 repeats itself
    code, _, stderr = run("data", "import", "peta", peta, "--out", tmp_path / "o", capsys=capsys)
    assert code == 0, stderr
    assert "2 x two different Label.txt lines for the image's identity" in " ".join(stderr.split())


@pytest.mark.parametrize(("header", "column"), [("image,gender,gender", "gender"), ("image,kind,hat,kind", "kind"),
                                                ("image, gender,gender ", "gender")])
def test_a_csv_header_with_a_repeated_column_is_refused(tmp_path, capsys, header, column):
    tiny_image(tmp_path / "p.png", 0)
    (tmp_path / "labels.csv").write_text(f"{header}\np.png,female,male\n")
    line = error_line(*run("data", "import", "csv", tmp_path / "labels.csv", "--out", tmp_path / "o", "--kind", "pedestrian",
                           capsys=capsys)[:3:2])
    assert f"column {column!r} appears twice in the header" in line


@pytest.mark.parametrize("where", ["cell", "header"])
def test_a_csv_cell_beyond_the_field_limit_is_one_error(tmp_path, capsys, where):
    tiny_image(tmp_path / "p.png", 0)
    big = '"' + "x" * (200 * 1024) + '"'
    text = f"image,gender\np.png,{big}\n" if where == "cell" else f"image,{big}\np.png,male\n"
    (tmp_path / "labels.csv").write_text(text)
    line = error_line(*run("data", "import", "csv", tmp_path / "labels.csv", "--out", tmp_path / "o", "--kind", "pedestrian",
                           capsys=capsys)[:3:2])
    assert "labels.csv" in line and ("not readable as CSV" in line or "not a readable CSV header" in line) and len(line) < 400
