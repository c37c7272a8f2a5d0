"""Bad label files through ``attrret train`` (and ``attrret predict`` for a label-file gallery).

A bad line stops training before anything is written, with one error naming ``file:line``;
``--skip-bad`` leaves such lines out with one warning each and trains on the rest.
"""

from __future__ import annotations

import json

import pytest

from .conftest import TINY_TRAIN, VEH, attrret, error_line, leftovers, make_folder, odd_images, ped_code

GOOD_PED = f"000001.jpg${ped_code(True, 0)}$A pedestrian."

#: case -> (bad line 2, fragment of the error). Lines 1 and 3 are good.
BAD_LINES = {
    "too few fields": ("000002.jpg$white Audi.", "expected 3 '$'-separated fields (image$attribute$caption), found 2"),
    "too many fields": (f"000002.jpg$white Audi.${VEH}$extra", "found 4"),
    "code of the wrong length": ("000002.jpg$1,0,1,0,0,0,1$A pedestrian.", "code has 7 fields, expected 21"),
    "non-binary code": ("000002.jpg$" + ped_code(True, 1).replace("1", "2", 1) + "$A pedestrian.", "code field '2' is not 0 or 1"),
    "contradictory code (two ages)": ("000002.jpg$" + "1,1,1,0" + ped_code(True, 1)[7:] + "$A pedestrian.", "age: more than one of bits"),
    "unknown colour": ("000002.jpg$golden Audi.$This is a golden Audi.", "unknown vehicle attribute 'golden Audi.'"),
    "unknown brand": ("000002.jpg$white Audio.$This is a white Audio.", "unknown vehicle attribute 'white Audio.'"),
    "unknown type": ("000002.jpg$Spaceship.$This is a Spaceship.", "unknown vehicle attribute 'Spaceship.'"),
    "path traversal": (f"../../x.jpg$white Audi.${VEH}", "leaves the image folder"),
    "absolute path": (f"/etc/x.jpg$white Audi.${VEH}", "is an absolute path"),
    "empty line": ("", "empty line"),
    "empty caption": ("000002.jpg$white Audi.$   ", "empty caption"),
    "duplicate image": (f"000001.jpg$white Audi.${VEH}", "already labelled on line 1"),
}


def _labels(tmp_path, body: bytes):
    data = make_folder(tmp_path / "data", n_ped=3, n_veh=0)
    (data / "labels.txt").write_bytes(body)
    return data


#: One run each (a fresh process costs seconds); every other kind is checked through the same
#: command in test_skip_bad_trains_on_the_rest_with_one_warning_per_line.
STOP_CASES = ["too few fields", "code of the wrong length", "non-binary code", "unknown brand", "path traversal", "absolute path"]


@pytest.mark.parametrize("case", STOP_CASES)
def test_bad_label_line_stops_train_with_file_and_line(tmp_path, case):
    bad, message = BAD_LINES[case]
    good3 = f"000003.jpg${ped_code(True, 2)}$A pedestrian."
    data = _labels(tmp_path, f"{GOOD_PED}\n{bad}\n{good3}\n".encode())
    work = tmp_path / "w"
    proc = attrret("train", "--task", "router", "--data", data, "--workdir", work, "--epochs", "1", *TINY_TRAIN)
    error_line(proc, f"{data / 'labels.txt'}:2: ", message)
    assert not work.exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("case", "body", "message"),
    [
        pytest.param("non-UTF-8", GOOD_PED.encode() + b"\n000002.jpg$white Audi.$caf\xe9 racer\n", ":2: not valid UTF-8 (byte 26: b'\\xe9')", id="non-UTF-8"),
        pytest.param("empty file", b"", ": no label lines", id="empty file"),
        pytest.param("only blank lines", b"\n\r\n", ":1: empty line", id="only blank lines"),
    ],
)
def test_undecodable_or_empty_label_file(tmp_path, case, body, message):
    data = _labels(tmp_path, body)
    work = tmp_path / "w"
    proc = attrret("train", "--task", "router", "--data", data, "--workdir", work, "--epochs", "1", *TINY_TRAIN)
    error_line(proc, f"{data / 'labels.txt'}", message)
    assert not work.exists()


def test_bom_and_mixed_line_endings_are_read_exactly(tiny, tmp_path):
    """A BOM and a mix of CRLF / LF / no final newline change nothing (predict over the label file)."""
    _, work, _ = tiny
    data = make_folder(tmp_path / "data", n_ped=3, n_veh=1)
    lines = (data / "labels.txt").read_text().splitlines()
    (data / "labels.txt").write_bytes(b"\xef\xbb\xbf" + (lines[0] + "\r\n" + lines[1] + "\n" + lines[2] + "\r\n" + lines[3]).encode())
    proc = attrret("predict", "--images", data / "labels.txt", "--workdir", work, "-o", tmp_path / "idx", "--quiet")
    assert proc.returncode == 0, proc.stderr
    names = json.loads(next((tmp_path / "idx").glob("names-*.json")).read_text())["names"]
    assert names == sorted(ln.split("$")[0] for ln in lines)  # no BOM, no \r in any name


def test_skip_bad_trains_on_the_rest_with_one_warning_per_line(tmp_path):
    """Without ``--skip-bad`` the first bad line stops training; with it, every kind of bad line
    and a missing image get one warning naming file:line and reason, and are left out; grayscale,
    CMYK, alpha and 16-bit images are valid inputs and train normally."""
    data = make_folder(tmp_path / "data", n_ped=8, n_veh=0)
    odd = odd_images(data / "images")
    good = (data / "labels.txt").read_text().splitlines() + [f"{p.name}$white Audi.${VEH}" for p in odd.values()]
    bad = [(case, text.replace("000002.jpg", f"{900 + i:06d}.jpg"), msg) for i, (case, (text, msg)) in enumerate(BAD_LINES.items())]
    bad.append(("missing image", f"missing.jpg$white Audi.${VEH}", "image 'missing.jpg' not found"))
    lines, expected = [], []
    for i in range(max(len(good), len(bad))):
        if i < len(good):
            lines.append(good[i])
        if i < len(bad):
            lines.append(bad[i][1])
            expected.append((len(lines), bad[i][2]))
    (data / "labels.txt").write_text("\n".join(lines) + "\n")
    work = tmp_path / "w"
    args = ("train", "--task", "router", "--data", data, "--workdir", work, "--epochs", "1", *TINY_TRAIN)
    error_line(attrret(*args), f"{data / 'labels.txt'}:{expected[0][0]}: {expected[0][1]}")
    proc = attrret(*args, "--skip-bad")
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("attrret: warning: skipped")]
    assert len(warnings) == len(expected), proc.stderr
    for w, (line, msg) in zip(warnings, expected):
        assert f"{data / 'labels.txt'}:{line}: " in w and msg in w, (w, line, msg)
    metrics = json.loads((work / "models" / "router" / "metrics.json").read_text())
    assert metrics["n_train"] + metrics["n_val"] == len(good)  # every good line, odd modes included
    assert leftovers(work) == []
