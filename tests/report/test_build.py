import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from attrret.cli import report as report_cli
from attrret.errors import InputError
from attrret.report import build_report
from attrret.report.build import default_image_folder

from .conftest import Track2Set
from .pagedata import page_data


def test_labelled_report_marks_relevance_and_agreement(track2_set: Track2Set, tmp_path: Path):
    out = tmp_path / "r" / "report.html"
    summary = build_report(track2_set.submission, out, labels=track2_set.labels)
    assert summary.out == out and summary.bytes == out.stat().st_size
    assert summary.queries == 10 and summary.images == 10 and summary.missing_images == ()
    data = page_data(out)
    assert len(data["queries"]) == 10 and len(data["images"]) == 10
    assert all(u.startswith("data:image/jpeg;base64,") for u in data["images"])
    by_name = {n: i for i, n in enumerate(data["names"])}

    # Query 0 "This is a red Geely SUV.": relevant are vehicle 1 and 3, returned at ranks 1 and 3.
    q0 = data["queries"][0]
    assert q0["k"] == "vehicle" and q0["c"] == track2_set.captions[0]
    assert [r[3] for r in q0["r"]] == [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert q0["ap"] == pytest.approx((1 + 2 / 3) / 2) and q0["nrel"] == 2
    assert q0["r"][0][1] == q0["r"][0][2] == 3  # the image agrees with colour, brand and type
    assert q0["r"][1][:3] == [by_name["vehicle_0000002.jpg"], 0, 3]
    assert set(q0["r"][1][4].split(", ")) == {"color=white", "brand=Balong Heavy Truck", "type=Truck"}
    assert q0["r"][4][1] == 0 and "is a pedestrian" in q0["r"][4][4]

    # Query 4 (090001: female, 18-60, back, shoulder bag, short sleeves): 090006 has all of that plus
    # a plaid, so it is relevant too (superset rule); the list starts at image 8.
    q4 = data["queries"][4]
    assert q4["k"] == "pedestrian"
    assert [data["names"][r[0]] for r in q4["r"]][:2] == ["090005.jpg", "090006.jpg"]
    assert [r[3] for r in q4["r"]] == [0, 1, 0, 0, 0, 0, 1, 0, 0, 0]
    own = q4["r"][6]
    assert data["names"][own[0]] == "090001.jpg" and own[1] == own[2] > 0, "a caption agrees with its own image"
    stated = {g for g, _, state in q4["a"] if state == 0}
    assert {"gender", "age", "orientation"} <= stated
    assert all(q4["c"][s:e] for s, e, _ in q4["sp"])

    html = out.read_text(encoding="utf-8")
    assert summary.metrics is not None and set(summary.metrics) == {"all", "pedestrian", "vehicle"}
    for kind, scores in summary.metrics.items():
        for key, value in scores.items():
            assert f'data-metric="{key}" data-kind="{kind}" data-value="{value!r}"' in html


def test_page_is_self_contained(track2_set: Track2Set, tmp_path: Path):
    out = tmp_path / "report.html"
    build_report(track2_set.submission, out, labels=track2_set.labels)
    html = out.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert "default-src 'none'" in html  # the page could not fetch anything even if it tried


def test_hostile_caption_cannot_break_out_of_the_data_block(track2_set: Track2Set, tmp_path: Path):
    text = 'This is a red Geely SUV.</script><script>document.title="pwned"</script><!--'
    sub, gt = tmp_path / "sub.json", tmp_path / "test_gt.txt"
    sub.write_text(json.dumps({"results": [{"text": text, "image_names": ["vehicle_0000001.jpg", "x.jpg"]}]}))
    gt.write_text(f"{text}$vehicle_0000001.jpg\n")
    out = tmp_path / "report.html"
    summary = build_report(sub, out, gt=gt, images=track2_set.images)
    html = out.read_text(encoding="utf-8")
    assert html.count("</script>") == 2 and "<!--" not in html
    q = page_data(out)["queries"][0]
    assert q["c"] == text and [r[3] for r in q["r"]] == [1, 0]
    assert summary.missing_images == ("x.jpg",) and summary.metrics["all"]["official_map@10"] == 1.0


def test_without_relevance_the_page_says_so(track2_set: Track2Set, tmp_path: Path):
    out = tmp_path / "report.html"
    summary = build_report(track2_set.submission, out, images=track2_set.images)
    html = out.read_text(encoding="utf-8")
    assert summary.metrics is None and 'id="no-metrics"' in html and 'id="no-accuracy"' in html
    assert all(r[3] is None and r[1] is None for q in page_data(out)["queries"] for r in q["r"])


def test_default_image_folder_follows_track2_layout(track2_set: Track2Set, tmp_path: Path):
    assert default_image_folder(track2_set.labels) == track2_set.images
    assert default_image_folder(track2_set.root / "test" / "test_gt.txt") == track2_set.images
    assert default_image_folder(tmp_path / "labels.txt") is None
    (tmp_path / "images").mkdir()
    assert default_image_folder(tmp_path / "labels.txt") == tmp_path / "images"


def test_bad_inputs_are_clear_errors(track2_set: Track2Set, tmp_path: Path):
    out = tmp_path / "report.html"
    other = tmp_path / "other_label.txt"
    lines = track2_set.labels.read_text().splitlines()
    other.write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    with pytest.raises(InputError, match=r"submission\.json: results\[0\]\.text .* differs from query 1"):
        build_report(track2_set.submission, out, labels=other)
    with pytest.raises(InputError, match="not both"):
        build_report(track2_set.submission, out, labels=track2_set.labels, gt=other)
    with pytest.raises(InputError, match="image folder not found"):
        build_report(track2_set.submission, out, labels=track2_set.labels, images=tmp_path / "nope")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InputError, match="bad.json"):
        build_report(bad, out)
    assert not out.exists(), "no partial report after an error"


def cli_app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)  # keep `report` a subcommand, as in the real app
    report_cli.register(app)
    return app


def test_cli_writes_the_report_and_prints_a_summary(track2_set: Track2Set, tmp_path: Path):
    out = tmp_path / "report.html"
    args = ["report", "--submission", str(track2_set.submission), "--labels", str(track2_set.labels), "-o", str(out), "--json"]
    res = CliRunner().invoke(cli_app(), args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["queries"] == 10 and summary["out"] == str(out) and out.is_file()
    assert summary["metrics"]["all"]["n"] == 10


def test_a_caption_the_parser_does_not_understand_still_gets_a_row(track2_set: Track2Set, tmp_path: Path):
    sub = tmp_path / "sub.json"
    sub.write_text(json.dumps({"results": [{"text": "Hello world.", "image_names": ["090001.jpg"]}]}))
    out = tmp_path / "report.html"
    build_report(sub, out, images=track2_set.images)
    (q,) = page_data(out)["queries"]
    assert q["k"] is None and q["a"] == [] and q["r"][0][1:4] == [None, None, None]
