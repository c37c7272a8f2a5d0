"""The search page in a real headless Chromium, served by a real ``attrret serve`` process.

Typing shows the parse as chips (before any search), Enter searches, the thumbnails decode,
the badges and attribute links are there, data is shown as text (never parsed as HTML), the
<select> submits on Enter, a token in the page URL reaches every fetch and image, and nothing
is fetched from anywhere but the server. Waits are for conditions, with generous deadlines.

The test's screenshot of the results goes to its tmp dir; docs/serve_screenshot.png is made by
``python -m tests.serve.screenshot`` (a larger drawn gallery, the same page and steps).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from urllib.parse import urlencode

import pytest
from PIL import Image

from report.cdp import Browser, require_chromium

from .conftest import Server, ServeSet, get, start_server, stop_server

QUERY = "a female pedestrian with no backpack, with an umbrella"
ODD = "odd/<b>white</b> bus #1?%&.jpg"


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_chromium()


CHIPS = """Array.from(document.querySelectorAll('#chips .chip')).map(c =>
  ({type: c.dataset.type, group: c.dataset.group || null, text: c.textContent}))"""
#: The index's two images without a picture (file gone, file not an image): the page shows
#: "no image" in their place; every other thumbnail must decode.
NO_IMAGE = {"gone.jpg", "broken.jpg"}
RESULTS = """(() => { const imgs = Array.from(document.querySelectorAll('#results li.result img'));
  const items = Array.from(document.querySelectorAll('#results li.result'));
  return {state: document.getElementById('status').dataset.state, status: document.getElementById('status').textContent,
          names: items.map(li => li.dataset.image),
          noimage: items.filter(li => li.classList.contains('noimage')).map(li => li.dataset.image),
          total: items.length, decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
          matched: Array.from(document.querySelectorAll('#results li.result:first-child .badge.matched')).map(b => b.textContent),
          links: Array.from(document.querySelectorAll('#results a.thumb')).map(a => a.href)}; })()"""


def decoded(n: int | None = None) -> str:
    """JS: the results once the search is done and every thumbnail decoded or shown as missing
    (null before)."""
    want = "r.total > 0" if n is None else f"r.total === {n}"
    settled = "r.decoded + r.noimage.length === r.total"
    return f"(() => {{ const r = {RESULTS}; return r.state === 'done' && {want} && {settled} ? r : null; }})()"


def api_search(server: Server, q: str, k: int, token: str | None = None) -> dict:
    params = {"q": q, "k": k, **({"token": token} if token else {})}
    status, _, body = get(server.url + "api/search?" + urlencode(params))
    assert status == 200, body
    return json.loads(body)


def test_page_in_headless_chromium(chromium: str, server: Server, serve_set: ServeSet, tmp_path: Path):
    shot = tmp_path / "serve.png"
    with Browser(chromium, width=1280, height=860) as b:
        b.navigate(server.url)
        b.wait_for(f"document.getElementById('health').textContent === '{len(serve_set.names)} images'")
        assert b.evaluate("document.activeElement.id") == "q"  # the box has the focus

        # Typing shows the parse as chips, before any search.
        b.insert_text("#q", QUERY)
        chips = b.wait_for(f"(() => {{ const c = {CHIPS}; return c.some(x => x.type === 'ignored') ? c : null; }})()")
        by_type = {}
        for c in chips:
            by_type.setdefault(c["type"], []).append(c)
        assert {"type": "stated", "group": "gender", "text": "gender: female"} in chips
        assert {"type": "negated", "group": "bag", "text": "bag: not backpack"} in chips
        assert [c["text"] for c in by_type["ignored"]] == ["umbrella"]
        assert by_type["kind"][0]["text"] == "pedestrian"
        assert {c["group"] for c in by_type["unknown"]} >= {"age", "hat", "orientation"}
        # a multi-label group the query leaves unknown is one chip by its name (once /api/schema is read)
        chips = b.wait_for(f"(() => {{ const c = {CHIPS}; return c.some(x => x.group === 'upper_color') ? c : null; }})()")
        assert not [c for c in chips if c["type"] == "unknown" and (c["group"] or "").startswith("upper_color_")]
        assert b.evaluate("document.querySelectorAll('#results li').length") == 0  # no search yet

        # Enter searches; every thumbnail decodes; the results are the API's.
        b.press_key("Enter")
        got = b.wait_for(decoded())
        expected = api_search(server, QUERY, 24)
        assert got["names"] == [h["image"] for h in expected["results"]]
        assert set(got["noimage"]) <= NO_IMAGE and got["decoded"] == got["total"] - len(got["noimage"]) > 0
        assert set(got["names"][:2]) == {"ped_f_nobag_1.jpg", "ped_f_nobag_2.jpg"}
        assert "\u2713 gender" in got["matched"] and "\u2713 bag" in got["matched"]
        assert b.evaluate("document.querySelectorAll('#results .badge.conflicted').length") > 0
        assert got["links"][0] == server.url + "api/images/" + got["names"][0] + "/attributes"
        assert got["status"].startswith(f"{len(got['names'])} results (pedestrian)")
        b.screenshot(shot)

        # The attribute link answers with the image's attributes; names with '/' keep their path.
        i = got["names"].index("cars/red_suv.jpg") if "cars/red_suv.jpg" in got["names"] else None
        if i is not None:
            assert got["links"][i] == server.url + "api/images/cars/red_suv.jpg/attributes"
        status, _, body = get(got["links"][0])
        assert status == 200 and json.loads(body)["name"] == got["names"][0]

        # Keyboard: k set to 2 and Enter on the kind <select> searches again.
        b.evaluate("document.getElementById('k').value = '2'")
        b.focus("#kind")
        b.press_key("Enter")
        again = b.wait_for(decoded(2))
        assert again["names"] == got["names"][:2]
        assert "k=2" in b.evaluate("location.search")

        # Data is text, never HTML: a query full of markup, an image name with markup and
        # URL-special characters; the name is shown as typed and its thumbnail decodes.
        b.evaluate("document.getElementById('q').value = ''")
        b.insert_text("#q", "<img src=x onerror=\"document.title='pwned'\"> white bus <b>bold</b>")
        b.press_key("Enter")
        odd = b.wait_for(f"(() => {{ const r = {decoded()}; return r && r.names[0] !== {json.dumps(got['names'][0])} ? r : null; }})()")
        assert odd["names"][0] == ODD and ODD not in odd["noimage"]
        assert b.evaluate("document.querySelector('#results li.result .name').textContent") == ODD
        assert b.evaluate("document.querySelectorAll('main b, main img:not(#results img)').length") == 0
        assert {"type": "ignored", "group": None, "text": "x onerror"} in b.evaluate(CHIPS)
        assert b.evaluate("document.title") == "attrret search"
        status, _, body = get(odd["links"][0])
        assert status == 200 and json.loads(body)["name"] == ODD

        # Nothing from outside the server (no CDN, no fonts); everything loaded.
        urls = [e["params"]["request"]["url"] for e in b.events("Network.requestWillBeSent")]
        failed = b.events("Network.loadingFailed")
    assert urls and all(u.startswith(server.url) or u.startswith("data:") for u in urls), urls
    assert any("/static/app.js" in u for u in urls) and any("?size=" in u for u in urls)
    assert not [f for f in failed if not f["params"].get("canceled")], failed

    png = Image.open(io.BytesIO(shot.read_bytes()))
    assert png.format == "PNG" and png.size == (1280, 860)
    assert len(png.convert("RGB").getcolors(maxcolors=1 << 20) or ()) > 50


def test_page_with_a_token(chromium: str, serve_set: ServeSet, tmp_path: Path):
    token = "page-token-0123456789"
    srv = start_server(serve_set.index, tmp_path / "serve.stderr", "--token", token)
    try:
        with Browser(chromium) as b:
            b.navigate(srv.url + "?token=" + token + "&q=a+red+SUV&k=3")  # the URL's query runs at once
            got = b.wait_for(decoded(3))
            assert got["names"][0] == "cars/red_suv.jpg"
            assert all(link.endswith("/attributes?token=" + token) for link in got["links"])
            assert b.evaluate("location.search").count("token=") == 1  # kept once in the URL
            # Without the token the page loads but the API refuses; the error is shown.
            b.navigate(srv.url + "?q=a+red+SUV")
            state = b.wait_for("(() => { const s = document.getElementById('status'); "
                               "return s.dataset.state === 'error' ? s.textContent : null; })()")
            assert "token" in state
    finally:
        assert stop_server(srv) == 0, srv.log()


def test_filters_grouping_and_similar_in_headless_chromium(chromium: str, server: Server, serve_set: ServeSet,
                                                           tmp_path: Path):
    """The camera and time controls and "one per track" send the API's filters; every result
    shows its camera and time; *similar* lists the example first. Each page answer is the API's."""
    filters = {"camera": "1,2", "after": "2026-12-01T08:01", "before": "2026-12-01T08:09"}
    with Browser(chromium, width=1280, height=860) as b:
        b.navigate(server.url)
        b.wait_for(f"document.getElementById('health').textContent === '{len(serve_set.names)} images'")
        assert b.evaluate("document.getElementById('filters').disabled") is False
        assert b.evaluate("Array.from(document.querySelectorAll('#group option')).map(o => o.value)") == ["", "track"]
        for field, value in filters.items():
            b.evaluate(f"document.getElementById('{field}').value = {json.dumps(value)}")
        b.insert_text("#q", "a woman")
        b.press_key("Enter")
        got = b.wait_for(decoded())
        params = {"q": "a woman", "k": 24, **filters}
        status, _, body = get(server.url + "api/search?" + urlencode(params))
        api = json.loads(body)["results"]
        assert got["names"] == [h["image"] for h in api] and api
        shown = b.evaluate("Array.from(document.querySelectorAll('#results li.result')).map(li => "
                           "({camera: li.querySelector('.meta .camera').textContent, time: li.querySelector('.meta .time').textContent}))")
        assert all(s["camera"] in ("cam 1", "cam 2") and "2026-12-01 08:0" in s["time"] and s["time"].endswith("UTC")
                   for s in shown)
        assert "camera=1%2C2" in b.evaluate("location.search")

        # one per track: no track twice, and the API's answer
        b.evaluate("document.getElementById('group').value = 'track'")
        b.focus("#q")
        b.press_key("Enter")
        grouped = b.wait_for(f"(() => {{ const r = {decoded()}; return r && location.search.includes('group_by=track') ? r : null; }})()")
        status, _, body = get(server.url + "api/search?" + urlencode({**params, "group_by": "track"}))
        assert grouped["names"] == [h["image"] for h in json.loads(body)["results"]]
        tracks = b.evaluate("Array.from(document.querySelectorAll('#results .meta .track')).map(t => t.textContent)")
        assert len(tracks) == len(set(tracks))

        # similar: the example first, the API's list, and back to the query
        example = grouped["names"][0]
        b.evaluate("document.querySelector('#results li.result .similar').click()")
        like = b.wait_for(f"(() => {{ const r = {decoded()}; return r && r.status.includes('like') ? r : null; }})()")
        assert like["names"][0] == example
        status, _, body = get(server.url + "api/similar?" + urlencode({"image": example, "k": 24, **filters, "group_by": "track"}))
        assert like["names"] == [h["image"] for h in json.loads(body)["results"]]
        assert b.evaluate("document.getElementById('like').hidden") is False
        b.screenshot(tmp_path / "filters.png")
        b.evaluate("document.getElementById('like-clear').click()")
        back = b.wait_for(f"(() => {{ const r = {decoded()}; return r && !r.status.includes('like') ? r : null; }})()")
        assert back["names"] == grouped["names"]
    png = Image.open(tmp_path / "filters.png")
    assert png.size == (1280, 860)
