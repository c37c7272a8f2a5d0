"""Bad and unusual captions through ``attrret rank``.

Unreadable caption files stop with one error naming ``file:line`` and write no submission;
captions that are readable but say nothing usable are still answered: they keep their place
in the submission (with no results, since any order would be arbitrary) and get a warning
naming ``file:line`` and the groups they leave unknown.
"""

from __future__ import annotations

import json

import pytest

from .conftest import attrret, error_line, leftovers

FEMALE = "A female pedestrian is someone who walks on foot."


@pytest.mark.parametrize(
    ("case", "body", "message"),
    [
        pytest.param("empty caption line", f"{FEMALE}\n\n{FEMALE}\n".encode(), ":2: empty caption line", id="empty caption line"),
        pytest.param("whitespace caption", f"{FEMALE}\n \t \n{FEMALE}\n".encode(), ":2: empty caption line", id="whitespace caption"),
        pytest.param("empty file", b"", ": no captions", id="empty file"),
        pytest.param("non-UTF-8 caption", FEMALE.encode() + b"\nA caf\xe9 pedestrian.\n", ":2: not valid UTF-8", id="non-UTF-8 caption"),
    ],
)
def test_unreadable_captions_stop_rank(tiny, tmp_path, case, body, message):
    _, _, index = tiny
    queries, out = tmp_path / "q.txt", tmp_path / "sub.json"
    queries.write_bytes(body)
    error_line(attrret("rank", "--queries", queries, "--index", index, "-o", out), f"{queries}{message}")
    assert not out.exists() and leftovers(tmp_path) == []


def test_usable_and_unusable_captions_are_all_answered(tiny, tmp_path):
    """One run: a 100 KB caption, a caption with no recognisable word, a caption of a kind the
    index has no models for (vehicle; the tiny index only knows the router and gender)."""
    _, _, index = tiny
    long = "A female pedestrian is someone who walks on foot, " + "and she walks " * 7500 + "on."
    assert len(long.encode()) > 100_000
    captions = [FEMALE, long, "Lorem ipsum dolor sit amet.", "This is a red Audi."]
    queries, out = tmp_path / "q.txt", tmp_path / "sub.json"
    queries.write_text("\n".join(captions) + "\n")
    proc = attrret("rank", "--queries", queries, "--index", index, "-o", out, "--k", "3")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    results = json.loads(out.read_text())["results"]
    assert [r["text"] for r in results] == captions  # every caption answered, in order, byte-exact
    assert len(results[0]["image_names"]) == 3 and len(results[1]["image_names"]) == 3
    assert results[2]["image_names"] == [] and results[3]["image_names"] == []
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"attrret: warning: {queries}:")]
    assert len(warnings) == 2, proc.stderr
    assert warnings[0].startswith(f"attrret: warning: {queries}:3: 'Lorem ipsum dolor sit amet.': "
                                  "no pedestrian or vehicle words recognised; unknown: kind and every attribute group")
    assert warnings[1].startswith(f"attrret: warning: {queries}:4: 'This is a red Audi.': nothing the index can score "
                                  "for this vehicle; unknown: type; no index column for: color, brand")


def test_a_nul_byte_does_not_hide_the_words_around_it(tmp_path) -> None:
    import json

    from tests.bad_input.conftest import attrret

    src = tmp_path / "q.txt"
    src.write_bytes(b"A female\x00pedestrian carrying a\x00backpack.\n")
    proc = attrret("parse", src)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["caption"] == "A female\x00pedestrian carrying a\x00backpack."
    assert record["kind"] == "pedestrian"
    assert record["stated"] == {"gender": "female", "bag": "backpack"}
    assert record["caption"][record["spans"][0]["start"]:record["spans"][0]["end"]] == "female"
