"""``attrret parse`` end to end: formats, output contract, summary, bad input and --skip-bad."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attrret.cli import main

ATTRRET = Path(sys.executable).with_name("attrret")
KEYS = ["caption", "kind", "stated", "implied", "unknown", "spans", "unmatched", "negated", "either", "unsupported", "any_of"]
PED = "A female pedestrian who is between 18 and 60 years old, with her body facing the camera. She is in a short sleeve shirt."
PED_CODE = "1,0,1,0,1,0,0,0,0,0,0,0,0,1,0,0,0,0,0,0,0"


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return exc.value.code or 0, out, err


def records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_txt_input_gives_one_object_per_caption_in_order(tmp_path, capsys):
    src = tmp_path / "q.txt"
    src.write_text(f"gray van\n{PED}\nkid in a skirt\n")
    code, out, err = run(["parse", str(src)], capsys)
    assert code == 0
    recs = records(out)
    assert [r["caption"] for r in recs] == ["gray van", PED, "kid in a skirt"]
    assert all(list(r) == KEYS for r in recs)
    assert recs[0]["stated"] == {"color": "grey", "type": "Minivan"} and recs[0]["unknown"] == ["brand"]
    assert recs[1]["kind"] == "pedestrian" and recs[1]["implied"]["hat"] == "no"
    assert recs[0]["spans"][0] == {"text": "gray", "start": 0, "end": 4, "group": "color", "class": "grey", "fuzzy": False,
                                  "relation": "is"}
    assert "3 captions read (pedestrian 2, vehicle 1, no kind 0)" in err


def test_jsonl_input_with_caption_or_text_key(tmp_path, capsys):
    src = tmp_path / "q.jsonl"
    src.write_text(json.dumps({"caption": "white toyota suv", "id": 1}) + "\n" + json.dumps({"text": "a woman with a backpak"}) + "\n")
    code, out, err = run(["parse", str(src)], capsys)
    assert code == 0
    a, b = records(out)
    assert a["stated"] == {"color": "white", "brand": "Toyota", "type": "SUV"}
    assert b["stated"] == {"gender": "female", "bag": "backpack"}
    assert "1 fuzzy matches" in err


def test_label_file_is_auto_detected_and_code_matches_the_label(tmp_path, capsys):
    src = tmp_path / "labels.txt"
    src.write_text(f"000001.jpg${PED_CODE}${PED}\nabcdefghij.jpg$white Audi.$This is a white Audi.\n")
    code, out, _ = run(["parse", str(src), "--code"], capsys)
    assert code == 0
    ped, veh = records(out)
    assert ped["caption"] == PED  # the caption field, not the whole line
    assert ped["code21"] == PED_CODE
    assert veh["attribute"] == "white Audi."
    assert list(veh) == [*KEYS, "attribute"]


def test_code_marks_unknown_bits(tmp_path, capsys):
    src = tmp_path / "q.txt"
    src.write_text("A male pedestrian who is a minor, and is standing sideways and carrying a handbag. He is wearning glasses.\n")
    _, out, _ = run(["parse", str(src), "--code"], capsys)
    #              gender age   orient hat gl hb bag  hold sleeve upper     coat skirt
    assert records(out)[0]["code21"] == "0,0,0,1,0,1,0,0,1,1,?,?,?,?,?,?,?,?,?,0,?"


def test_output_file_is_written_and_stdout_stays_empty(tmp_path, capsys):
    src, dst = tmp_path / "q.txt", tmp_path / "out" / "q.jsonl"
    src.write_text("gray van\n")
    code, out, err = run(["parse", str(src), "-o", str(dst)], capsys)
    assert code == 0 and out == ""
    assert records(dst.read_text())[0]["stated"]["type"] == "Minivan"
    assert [p.name for p in dst.parent.iterdir()] == ["q.jsonl"]  # no temporary left behind


def test_real_val_sample_through_the_cli(val_sample, capsys):
    code, out, err = run(["parse", str(val_sample), "--code"], capsys)
    assert code == 0
    recs = records(out)
    assert len(recs) == 2000
    assert "pedestrian 1300, vehicle 700, no kind 0); 0 with unmatched words; 0 fuzzy matches" in err
    attrs = [line.split("$")[1] for line in val_sample.read_text().splitlines()]
    for rec, attr in zip(recs, attrs):
        got = rec.get("code21", rec.get("attribute"))
        if "?" not in got:
            assert got == attr


def test_stdin_through_the_console_script(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(ATTRRET), "parse", "-"], input="gray van\nman wearing glasses, no bag\n".encode(), capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    recs = records(proc.stdout.decode())
    assert [r["kind"] for r in recs] == ["vehicle", "pedestrian"]
    assert recs[1]["stated"] == {"gender": "male", "glasses": "yes", "handbag": "no", "bag": "none"}


def test_bad_input_is_one_clear_error_from_the_console_script(tmp_path):
    src = tmp_path / "q.txt"
    src.write_bytes(b"gray van\n\xff\xfe broken\n")
    proc = subprocess.run([str(ATTRRET), "parse", str(src)], capture_output=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == f"attrret: error: {src}:2: not valid UTF-8 (byte 0: b'\\xff')"
    assert proc.stdout == b""


BAD_CASES = {
    "empty line": ("q.txt", b"gray van\n\nwhite audi\n", 2, "empty line"),
    "whitespace line": ("q.txt", b"gray van\n   \t\nwhite audi\n", 2, "empty line"),
    "non-UTF-8": ("q.txt", b"gray van\n\xe9t\xe9\nwhite audi\n", 2, "not valid UTF-8"),
    "malformed JSON": ("q.jsonl", b'{"caption": "gray van"}\n{"caption": "red\n{"text": "white audi"}\n', 2, "not valid JSON"),
    "JSON without caption": ("q.jsonl", b'{"caption": "gray van"}\n{"id": 3}\n{"text": "white audi"}\n', 2, "no 'caption' or 'text'"),
    "JSON not an object": ("q.jsonl", b'{"caption": "gray van"}\n["red"]\n{"text": "white audi"}\n', 2, "expected a JSON object"),
    "label field count": ("l.txt", b"a.jpg$grey Audi.$gray van\nb.jpg$only two\nc.jpg$white Audi.$white audi\n", 2, "expected 3 '$'-separated fields"),
    "label code length": (
        "l.txt",
        b"a.jpg$grey Audi.$gray van\n000002.jpg$1,0,1$A man.\nc.jpg$white Audi.$white audi\n",
        2,
        "code has 3 fields, expected 21",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_line_stops_with_file_and_line(tmp_path, capsys, case):
    name, data, line, message = BAD_CASES[case]
    src = tmp_path / name
    src.write_bytes(data)
    code, out, err = run(["parse", str(src)], capsys)
    # main() turns the domain error into one line and exit 1; run() sees the SystemExit
    assert code == 1
    assert err.startswith(f"attrret: error: {src}:{line}: ") and message in err
    assert len(err.strip().splitlines()) == 1 and out == ""


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_skip_bad_warns_per_line_and_parses_the_rest(tmp_path, capsys, case):
    name, data, line, message = BAD_CASES[case]
    src = tmp_path / name
    src.write_bytes(data)
    code, out, err = run(["parse", str(src), "--skip-bad"], capsys)
    assert code == 0
    recs = records(out)
    assert [r["kind"] for r in recs] == ["vehicle", "vehicle"]
    assert recs[0]["stated"]["color"] == "grey" and recs[1]["stated"]["color"] == "white"
    warnings = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and f"{src}:{line}: " in warnings[0] and message in warnings[0]
    assert "1 bad lines skipped" in err


def test_missing_file_and_all_bad_lines_are_errors(tmp_path, capsys):
    code, _, err = run(["parse", str(tmp_path / "nope.txt")], capsys)
    assert code == 1 and "nope.txt: file not found" in err
    src = tmp_path / "q.txt"
    src.write_bytes(b"\n\n")
    code, _, err = run(["parse", str(src), "--skip-bad"], capsys)
    assert code == 1 and "no captions to parse" in err


def test_forced_format(tmp_path, capsys):
    src = tmp_path / "q.txt"
    src.write_text('{"caption": "gray van"}\n')
    _, out, _ = run(["parse", str(src), "--format", "txt"], capsys)
    assert records(out)[0]["caption"] == '{"caption": "gray van"}'
    code, _, err = run(["parse", str(src), "--format", "csv"], capsys)
    assert code == 2 and "'csv' is not one of 'auto', 'txt', 'jsonl', 'label'" in " ".join(err.replace("│", " ").split())


def test_bad_lines_of_every_kind_are_reported_in_line_order(tmp_path, capsys):
    # line 1 cannot be decoded, so the format is detected from line 2 (JSON Lines)
    src = tmp_path / "q.txt"
    src.write_bytes(b'\xff{"caption": "x"}\n{"caption": "gray van"}\n{"caption": "red\n\xe9\n\n{"text": "white audi"}\n')
    code, _, err = run(["parse", str(src)], capsys)
    assert code == 1 and f"{src}:1: not valid UTF-8" in err
    code, out, err = run(["parse", str(src), "--skip-bad"], capsys)
    assert code == 0
    assert [r["caption"] for r in records(out)] == ["gray van", "white audi"]
    warnings = [ln for ln in err.splitlines() if "warning" in ln]
    assert [w.split(f"{src}:")[1].split(":")[0] for w in warnings] == ["1", "3", "4", "5"]
    assert "not valid JSON" in warnings[1] and "not valid UTF-8" in warnings[2] and "empty line" in warnings[3]


def test_skip_bad_steps_over_undecodable_stdin_lines():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(ATTRRET), "parse", "-", "--skip-bad"], input=b"gray van\n\xff\nwhite audi\n", capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert [r["caption"] for r in records(proc.stdout.decode())] == ["gray van", "white audi"]
    assert "<stdin>:2: not valid UTF-8" in proc.stderr.decode()


def test_free_form_sets_and_unsupported_constructs_are_in_the_json_and_counted(tmp_path, capsys):
    src = tmp_path / "q.txt"
    src.write_text("black or white SUV\nman without a backpack\na man with a hat or a backpack\na man with a hat or glasses\n")
    code, out, err = run(["parse", str(src)], capsys)
    assert code == 0
    recs = records(out)
    assert recs[0]["either"] == {"color": ["black", "white"]} and recs[0]["stated"] == {"type": "SUV"}
    assert recs[1]["negated"] == {"bag": ["backpack"]} and "bag" not in recs[1]["unknown"]
    assert recs[2]["unsupported"] == ["hat or a backpack"] and recs[2]["stated"] == {"gender": "male"}
    # alternatives across yes/no groups: at least one of them is yes
    assert recs[3]["any_of"] == [["hat", "glasses"]] and recs[3]["unsupported"] == []
    assert [s["relation"] for s in recs[3]["spans"] if s["group"] != "gender"] == ["any", "any"]
    assert [s["relation"] for s in recs[0]["spans"]] == ["or", "or", "is"]
    assert "3 with set constraints; 1 with unsupported constructs" in err
