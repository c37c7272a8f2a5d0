"""The report in a real headless Chromium: thumbnails decode, metrics equal `attrret evaluate`'s,
pagination renders, nothing is fetched from outside the file, and a screenshot is written."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from attrret.report import build_report

from .cdp import Browser, require_chromium
from .conftest import Track2Set
from .pagedata import page_data

PAGE_SIZE = 4  # 10 queries -> pages of 4, 4 and 2


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_chromium()


def evaluate_json(track2_set: Track2Set) -> dict:
    """`attrret evaluate --json` run as a user would, in a separate process."""
    cmd = [sys.executable, "-m", "attrret", "evaluate", "--submission", str(track2_set.submission), "--labels", str(track2_set.labels), "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


READY = "window.attrretReport.ready"
IMAGES = """(() => { const imgs = Array.from(document.querySelectorAll('#queries img'));
  return {total: imgs.length, decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
          queries: Array.from(document.querySelectorAll('#queries section.query')).map(s => +s.dataset.query),
          right: document.querySelectorAll('#queries .res.right').length,
          wrong: document.querySelectorAll('#queries .res.wrong').length}; })()"""
METRICS = """Array.from(document.querySelectorAll('[data-metric]')).map(e =>
  ({kind: e.dataset.kind, metric: e.dataset.metric, value: e.dataset.value, text: e.textContent}))"""


def test_report_in_headless_chromium(chromium: str, track2_set: Track2Set, tmp_path: Path):
    out = tmp_path / "report.html"
    summary = build_report(track2_set.submission, out, labels=track2_set.labels, page_size=PAGE_SIZE)
    data = page_data(out)
    shot = tmp_path / "report.png"

    with Browser(chromium) as browser:
        browser.open(out)
        status = browser.evaluate(READY)
        first = browser.evaluate(IMAGES)
        shown = browser.evaluate(METRICS)
        browser.screenshot(shot)
        last = browser.evaluate("window.attrretReport.show(2)")
        last_page = browser.evaluate(IMAGES)
        requests = [e["params"]["request"]["url"] for e in browser.events("Network.requestWillBeSent")]
        status_attrs = browser.evaluate("Object.assign({}, document.getElementById('status').dataset)")

    # Every thumbnail of the page decoded: 4 queries x 10 results, then the last page's 2 x 10.
    assert first == {**first, "total": 40, "decoded": 40, "queries": [0, 1, 2, 3]}
    assert status == {"images": 40, "decoded": 40, "page": 0}
    assert last == {"images": 20, "decoded": 20, "page": 2}
    assert last_page["total"] == last_page["decoded"] == 20 and last_page["queries"] == [8, 9]
    assert status_attrs["state"] == "ready" and status_attrs["decoded"] == "20"

    # Right/wrong frames match the relevance in the data.
    rels = [r[3] for j in (8, 9) for r in data["queries"][j]["r"]]
    assert (last_page["right"], last_page["wrong"]) == (rels.count(1), rels.count(0))
    assert last_page["right"] > 0 and last_page["wrong"] > 0

    # The metrics shown are `attrret evaluate`'s, to the last bit, and displayed rounded.
    expected = evaluate_json(track2_set)
    shown_values = {(m["kind"], m["metric"]): m for m in shown}
    assert summary.metrics is not None
    for kind, scores in expected.items():
        for metric, value in scores.items():
            cell = shown_values.pop((kind, metric))
            assert float(cell["value"]) == value, (kind, metric)
            assert cell["text"] == (str(value) if metric == "n" else f"{value:.4f}")
    assert not shown_values, f"page shows metrics evaluate does not: {sorted(shown_values)}"

    # Self-contained: the file itself and data: URIs only.
    assert requests and all(u == out.resolve().as_uri() or u.startswith("data:") for u in requests), requests

    # A real screenshot: a PNG of the viewport with more than one colour in it.
    png = Image.open(io.BytesIO(shot.read_bytes()))
    assert png.format == "PNG" and png.size == (1280, 900)
    assert len(png.convert("RGB").getcolors(maxcolors=1 << 20) or ()) > 50
