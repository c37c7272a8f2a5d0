"""Track-2 file I/O: label files, test_text.txt, submission JSON, ground truth; errors name file:line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from attrret.data.track2 import (
    check_image_name,
    is_label_file,
    iter_lines,
    read_gt,
    read_label_file,
    read_submission,
    read_test_text,
    write_gt,
    write_submission,
)
from attrret.errors import InputError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CODE = "1,0,1,0,0,0,1,0,0,0,1,0,0,1,0,0,0,0,0,0,0"
PED_LINE = f"000055.jpg${CODE}$A female pedestrian who is between 18 and 60 years old, with her body back to the camera and has a shoulderbag. She is in a tee shirt with short sleeves."
VEH_LINE = "kcbluaihml.jpg$white Audi.$This is a white Audi."


def write(tmp_path: Path, data: bytes | str, name: str = "train_label.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# ------------------------------------------------------------------ label files
def test_real_val_sample_reads_in_order():
    path = SHARED / "track2" / "val_sample.txt"
    if not path.exists():
        pytest.skip(f"{path} not available")
    lines = read_label_file(path)
    raw = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2000
    assert [ln.kind for ln in lines] == ["vehicle"] * 700 + ["pedestrian"] * 1300  # vehicles first
    assert [ln.line for ln in lines] == list(range(1, 2001))
    assert all(f"{ln.image}${ln.attribute}${ln.caption}" == r for ln, r in zip(lines, raw))
    assert all(len(ln.values) == 12 for ln in lines if ln.kind == "pedestrian")
    assert all(1 <= len(ln.values) <= 2 for ln in lines if ln.kind == "vehicle")  # train/val vehicles are incomplete


def test_label_lines_decode_both_kinds_with_bom_and_crlf(tmp_path):
    path = write(tmp_path, ("\ufeff" + PED_LINE + "\r\n" + VEH_LINE + "\r\n").encode("utf-8"))
    ped, veh = read_label_file(path)
    assert (ped.image, ped.kind, ped.attribute, ped.line) == ("000055.jpg", "pedestrian", CODE, 1)
    assert ped.values["bag"] == "shoulder" and ped.values["orientation"] == "back"
    assert ped.caption.endswith("short sleeves.")  # no \r left
    assert (veh.kind, veh.values, veh.caption) == ("vehicle", {"color": "white", "brand": "Audi"}, "This is a white Audi.")
    assert is_label_file(path)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("a.jpg$white Audi.", "expected 3 '$'-separated fields"),
        ("a.jpg$white Audi.$This is$extra", "found 4"),
        ("000001.jpg$1,0,1,0$A man.", "code has 4 fields, expected 21"),
        ("000001.jpg$" + CODE.replace("1", "x", 1) + "$A man.", "is not 0 or 1"),
        ("a.jpg$white Audio.$This is a white Audio.", "unknown vehicle attribute"),
        ("a.jpg$white Audi.$   ", "empty caption"),
        ("/etc/a.jpg$white Audi.$This is a white Audi.", "absolute path"),
        ("../a.jpg$white Audi.$This is a white Audi.", "leaves the image folder"),
        ("", "empty line"),
        ("kcbluaihml.jpg$white Audi.$again", "already labelled on line 1"),
    ],
)
def test_bad_label_line_names_file_and_line(tmp_path, bad, message):
    path = write(tmp_path, f"{VEH_LINE}\n{bad}\n{PED_LINE}\n")
    with pytest.raises(InputError, match=re.escape(message)) as exc:
        read_label_file(path)
    assert (exc.value.path, exc.value.line) == (str(path), 2)
    assert str(exc.value).startswith(f"{path}:2: ")
    skipped: list[InputError] = []
    lines = read_label_file(path, skip_bad=True, on_skip=skipped.append)
    assert [ln.line for ln in lines] == [1, 3]
    assert [e.line for e in skipped] == [2]


def test_non_utf8_and_missing_files(tmp_path):
    path = write(tmp_path, VEH_LINE.encode() + b"\n" + b"a.jpg$white Audi.$caf\xe9\n")
    with pytest.raises(InputError, match=r":2: not valid UTF-8"):
        read_label_file(path)
    with pytest.raises(InputError, match="file not found"):
        read_label_file(tmp_path / "nope.txt")
    with pytest.raises(InputError, match="no label lines"):
        read_label_file(write(tmp_path, ""))
    assert not is_label_file(write(tmp_path, "just a caption.\n", "t.txt"))


def test_iter_lines_keeps_text_byte_exact(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbf one \r\n\ttwo\t\nthree")
    assert list(iter_lines(path)) == [(1, " one "), (2, "\ttwo\t"), (3, "three")]


def test_iter_lines_reports_undecodable_lines_through_on_error(tmp_path):
    path = write(tmp_path, b"one\r\ncaf\xe9\n\xff\nfour\n")
    with pytest.raises(InputError, match=r":2: not valid UTF-8 \(byte 3: b'\\xe9'\)"):
        list(iter_lines(path))  # default: the first bad line stops the read
    bad: list[InputError] = []
    assert list(iter_lines(path, on_error=bad.append)) == [(1, "one"), (4, "four")]  # numbers unchanged
    assert [(e.path, e.line) for e in bad] == [(str(path), 2), (str(path), 3)]
    assert all(e.reason.startswith("not valid UTF-8") for e in bad)
    # bytes from elsewhere (stdin): the path only names the source
    assert list(iter_lines("<stdin>", data=b"\xef\xbb\xbfa\n\xffb\n", on_error=bad.append)) == [(1, "a")]
    assert str(bad[-1]) == "<stdin>:2: not valid UTF-8 (byte 0: b'\\xff')"


def test_check_image_name():
    assert check_image_name("000001.jpg") == "000001.jpg"
    assert check_image_name("sub/x.jpg") == "sub/x.jpg"
    for bad in ("", " a.jpg", "/a.jpg", "..\\a.jpg", "C:\\a.jpg", "a/../../b.jpg"):
        with pytest.raises(ValueError):
            check_image_name(bad)


# ------------------------------------------------------------------ test_text.txt
def test_read_test_text(tmp_path):
    path = write(tmp_path, "This is a red Balong Heavy Truck Truck.\r\nA walking man who is a minor.  \n", "test_text.txt")
    assert read_test_text(path) == ["This is a red Balong Heavy Truck Truck.", "A walking man who is a minor.  "]
    path = write(tmp_path, "one.\n \ntwo.\n", "test_text.txt")
    with pytest.raises(InputError, match=r"test_text.txt:2: empty caption line"):
        read_test_text(path)
    skipped: list[InputError] = []
    assert read_test_text(path, skip_bad=True, on_skip=skipped.append) == ["one.", "two."]
    assert [e.line for e in skipped] == [2]


# ------------------------------------------------------------------ submission and ground truth
def test_submission_round_trip_is_byte_exact_and_keeps_order(tmp_path):
    results = [
        ("This is a white Audi.", [f"vehicle_{i:07d}.jpg" for i in range(10)]),
        ("A walking woman who is a minor, with her body facing the camera. She is wearning a hat.", ["090001.jpg", "090001.jpg"]),
        ("An orange Ödön Bus.", []),  # order is not sorted; non-ASCII kept as is; duplicates kept
    ]
    first = tmp_path / "a.json"
    write_submission(first, results)
    assert read_submission(first) == [(t, list(n)) for t, n in results]
    doc = json.loads(first.read_text(encoding="utf-8"))
    assert list(doc) == ["results"] and list(doc["results"][0]) == ["text", "image_names"]
    assert "Ödön" in first.read_text(encoding="utf-8")
    second = tmp_path / "b.json"
    write_submission(second, read_submission(first))
    assert second.read_bytes() == first.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]  # atomic: no temporaries left


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a JSON submission"),
        ('{"items": []}', "expected"),
        ('{"results": [{"text": "a", "image_names": "x.jpg"}]}', r"results\[0\]"),
        ('{"results": [{"text": 3, "image_names": []}]}', r"results\[0\]"),
    ],
)
def test_bad_submission_is_refused_naming_the_file(tmp_path, content, message):
    path = write(tmp_path, content, "sub.json")
    with pytest.raises(InputError, match=message) as exc:
        read_submission(path)
    assert exc.value.path == str(path)


def test_ground_truth_round_trip(tmp_path):
    rows = [("This is a white Audi.", ["a.jpg", "b.jpg"]), ("A walking man.", ["000001.jpg"])]
    path = tmp_path / "test_gt.txt"
    write_gt(path, rows)
    assert path.read_text() == "This is a white Audi.$a.jpg$b.jpg\nA walking man.$000001.jpg\n"
    assert read_gt(path) == rows
    bad = write(tmp_path, "caption without images\n", "gt.txt")
    with pytest.raises(InputError, match=r"gt.txt:1: expected text\$img1"):
        read_gt(bad)
