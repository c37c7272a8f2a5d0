"""The app through FastAPI's TestClient: every route's answer is the Searcher's, the images are
the index's recorded files, bounds and names are refused with one-sentence 4xx JSON, and every
response carries the security headers."""

from __future__ import annotations

import io
import json
import re

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from attrret.search import MAX_K, MAX_QUERY_CHARS
from attrret.serve import THUMB_MAX, THUMB_MIN, create_app
from attrret.serve.app import CSP, DOCS_CSP

from .conftest import ServeSet


@pytest.fixture(scope="module")
def client(searcher) -> TestClient:
    return TestClient(create_app(searcher))


def assert_headers(resp) -> None:
    assert resp.headers["content-security-policy"] == CSP
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["referrer-policy"] == "no-referrer"


def assert_error(resp, status: int, *words: str) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    detail = resp.json()["detail"]
    assert isinstance(detail, str) and detail, detail
    for w in words:
        assert w in detail, (w, detail)
    assert_headers(resp)
    return detail


def test_healthz(client: TestClient, serve_set: ServeSet):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "images": len(serve_set.names), "meta": ["camera", "track", "time"]}
    assert_headers(r)


def test_search_is_the_searchers_answer(client: TestClient, searcher):
    q = "a woman with no backpack, with an umbrella"
    r = client.get("/api/search", params={"q": q, "k": 3})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    assert_headers(r)
    body = r.json()
    assert body == json.loads(json.dumps(searcher.search(q, k=3).to_json()))
    assert set(body) == {"query", "results", "warnings"}
    assert body["query"]["stated"]["gender"] == "female" and body["query"]["negated"] == {"bag": ["backpack"]}
    assert body["query"]["unmatched"] == ["umbrella"]
    results = body["results"]
    assert [h["rank"] for h in results] == [1, 2, 3]
    # The two women without a bag are the best answers, both matching gender and bag.
    assert {h["image"] for h in results[:2]} == {"ped_f_nobag_1.jpg", "ped_f_nobag_2.jpg"}
    for h in results:
        assert {"rank", "image", "score", "matched", "conflicted", "predicted"} <= set(h)
    assert "gender" in results[0]["matched"] and not results[0]["conflicted"]
    assert results[0]["score"] <= results[1]["score"] <= results[2]["score"]


def test_schema_names_the_multi_label_groups(client: TestClient, searcher):
    """What the page needs to show upper_color_red: yes as "upper_color: red"."""
    r = client.get("/api/schema")
    assert r.status_code == 200
    assert_headers(r)
    body = r.json()
    ped = searcher.schema.pedestrian
    assert body["pedestrian"]["groups"] == list(ped.group_names) and body["vehicle"]["families"] == {}
    assert body["pedestrian"]["families"] == {f: [g.label for g in gs] for f, gs in ped.families.items()}
    assert "red" in body["pedestrian"]["families"]["upper_color"]


def test_search_kind(client: TestClient, searcher):
    q = "a red Geely SUV"
    r = client.get("/api/search", params={"q": q, "kind": "vehicle", "k": 2}).json()
    assert r["results"][0]["image"] == "cars/red_suv.jpg"
    assert client.get("/api/search", params={"q": q, "kind": "", "k": 2}).json() == r  # empty kind = from the query
    other = client.get("/api/search", params={"q": q, "kind": "pedestrian"}).json()
    assert other == json.loads(json.dumps(searcher.search(q, kind="pedestrian").to_json()))
    assert other["results"] == [] and other["warnings"]


def test_parse(client: TestClient, searcher):
    q = "black or white SUV, not a Toyota"
    r = client.get("/api/parse", params={"q": q})
    assert r.status_code == 200
    assert_headers(r)
    assert r.json() == searcher.parse(q)
    assert r.json()["either"] == {"color": ["black", "white"]}


def test_attributes(client: TestClient, searcher):
    r = client.get("/api/images/cars/red_suv.jpg/attributes")
    assert r.status_code == 200
    record = json.loads(json.dumps(searcher.attributes("cars/red_suv.jpg")))
    assert r.json() == {k: v for k, v in record.items() if k != "path"}  # no server path (module doc)
    assert r.json()["kind"] == "vehicle" and r.json()["groups"]["vehicle.color"]["class"] == "red"
    assert_error(client.get("/api/images/nope.jpg/attributes"), 404, "nope.jpg")


def test_images_and_thumbnails(client: TestClient, serve_set: ServeSet):
    for name in ("ped_f_nobag_1.jpg", "cars/red_suv.jpg"):
        r = client.get(f"/images/{name}")
        assert r.status_code == 200, r.text
        assert r.content == serve_set.paths[name].read_bytes()
        assert r.headers["content-type"] == "image/jpeg"
        assert_headers(r)
        full = Image.open(serve_set.paths[name]).size
        for size in (THUMB_MIN, 40, THUMB_MAX):
            t = client.get(f"/images/{name}", params={"size": size})
            assert t.status_code == 200 and t.headers["content-type"] == "image/jpeg"
            im = Image.open(io.BytesIO(t.content))
            assert im.format == "JPEG"
            assert max(im.size) == min(size, max(full))  # fits size x size, never upscaled
            assert abs(im.size[0] / im.size[1] - full[0] / full[1]) < 0.15  # aspect kept
            assert_headers(t)
    # Names are URL-encoded path segments: a quoted '/' is the same name.
    assert client.get("/images/cars%2Fred_suv.jpg").content == serve_set.paths["cars/red_suv.jpg"].read_bytes()


@pytest.mark.parametrize("size", [0, THUMB_MIN - 1, THUMB_MAX + 1, "big"])
def test_thumbnail_size_bounds(client: TestClient, size):
    assert_error(client.get("/images/ped_f_nobag_1.jpg", params={"size": size}), 422, "size")


def test_image_files_missing_or_broken(client: TestClient):
    assert_error(client.get("/images/gone.jpg"), 404, "gone.jpg", "missing")
    assert_error(client.get("/images/gone.jpg?size=64"), 404, "gone.jpg")
    assert_error(client.get("/images/broken.jpg?size=64"), 422, "broken.jpg", "cannot be decoded")


REFUSED = ["/images/..%2Fx", "/images/%2Fetc%2Fpasswd", "/images/etc/passwd", "/images/nope.jpg",
           "/images/..%2Fgallery%2Fped_f_nobag_1.jpg", "/images/cars/..%2F..%2Fgallery%2Fcars%2Fred_suv.jpg",
           "/images/%2E%2E/%2E%2E/etc/passwd", "/images/ped_f_nobag_1.jpg%00", "/images/PED_F_NOBAG_1.JPG",
           "/api/images/..%2F..%2Fetc%2Fpasswd/attributes"]


@pytest.mark.parametrize("url", REFUSED)
def test_names_not_in_the_index_are_404(client: TestClient, url: str, serve_set: ServeSet):
    for u in (url, url + ("&" if "?" in url else "?") + "size=64"):
        r = client.get(u)
        assert r.status_code == 404, (u, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json")  # never a file's bytes
        assert_headers(r)
    # An absolute path of a real gallery file is a name the index does not hold either.
    real = serve_set.paths["ped_f_nobag_1.jpg"]
    assert client.get("/images/" + str(real).lstrip("/")).status_code == 404
    assert client.get("/images/%2F" + str(real).lstrip("/").replace("/", "%2F")).status_code == 404


def test_query_bounds(client: TestClient):
    ok = "a" * MAX_QUERY_CHARS
    assert client.get("/api/search", params={"q": ok}).status_code == 200
    assert client.get("/api/parse", params={"q": ok}).status_code == 200
    long = "a" * (MAX_QUERY_CHARS + 1)
    assert_error(client.get("/api/search", params={"q": long}), 422, "2,001", "2,000")
    assert_error(client.get("/api/parse", params={"q": long}), 422, "2,001", "2,000")
    assert_error(client.get("/api/search"), 422, "q")  # no query at all


@pytest.mark.parametrize("k", [0, -1, MAX_K + 1, 10**30, "ten", "1.5"])
def test_k_bounds(client: TestClient, k):
    detail = assert_error(client.get("/api/search", params={"q": "a man", "k": k}), 422, "k")
    assert "1" in detail


def test_k_limits_accepted(client: TestClient, serve_set: ServeSet):
    for k in (1, MAX_K):
        r = client.get("/api/search", params={"q": "a man", "k": k})
        assert r.status_code == 200 and 1 <= len(r.json()["results"]) <= k


@pytest.mark.parametrize("kind", ["cat", "Pedestrian", "router", "vehicle "])
def test_unknown_kind(client: TestClient, kind: str):
    assert_error(client.get("/api/search", params={"q": "a man", "kind": kind}), 422, "kind")


def test_page_static_and_docs(client: TestClient):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert_headers(page)
    html = page.text
    # Offline and CSP-clean: scripts and styles are our files, nothing inline, nothing remote.
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="static/app.js" defer>']
    assert "<style" not in html and not re.search(r"\sstyle=", html) and not re.search(r"\son[a-z]+=", html)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    for f, ctype in (("app.js", "javascript"), ("style.css", "text/css")):
        r = client.get(f"/static/{f}")
        assert r.status_code == 200 and ctype in r.headers["content-type"]
        assert_headers(r)
        assert "http://" not in r.text and "https://" not in r.text  # no CDN, no remote fonts
    assert ".innerHTML" not in client.get("/static/app.js").text
    assert client.get("/static/../app.py").status_code == 404
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    docs = client.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-security-policy"] == DOCS_CSP
    spec = client.get("/openapi.json").json()
    assert {"/api/search", "/api/parse", "/api/images/{name}/attributes", "/images/{name}", "/healthz"} <= set(spec["paths"])


def test_every_response_has_the_headers(client: TestClient):
    for url in ("/nope", "/api/nope", "/static/nope.js", "/images/nope.jpg", "/api/search?k=0&q=x"):
        r = client.get(url)
        assert r.status_code in (404, 422), (url, r.status_code)
        assert_headers(r)
    r = client.post("/api/search")
    assert r.status_code == 405
    assert_headers(r)


# -- the token ------------------------------------------------------------------------------

TOKEN = "s3cret-token_~!"


@pytest.fixture(scope="module")
def guarded(searcher) -> TestClient:
    return TestClient(create_app(searcher, token=TOKEN))


GUARDED = ["/api/search?q=a+woman", "/api/parse?q=a+woman", "/api/images/cars/red_suv.jpg/attributes",
           "/images/cars/red_suv.jpg", "/images/cars/red_suv.jpg?size=64", "/images/nope.jpg", "/anything"]


@pytest.mark.parametrize("url", GUARDED)
def test_token_required(guarded: TestClient, url: str):
    sep = "&" if "?" in url else "?"
    for headers, u in (({}, url), ({"Authorization": "Bearer wrong"}, url), ({}, url + sep + "token=wrong"),
                       ({"Authorization": "Bearer " + TOKEN[:-1]}, url), ({"Authorization": "Basic " + TOKEN}, url),
                       ({}, url + sep + "token=")):
        r = guarded.get(u, headers=headers)
        assert r.status_code == 401, (u, headers, r.status_code)
        assert r.headers["www-authenticate"] == "Bearer"
        assert_error(r, 401, "token")
    expected = 404 if "nope" in url or url == "/anything" else 200
    from urllib.parse import quote

    r = guarded.get(url, headers={"Authorization": "Bearer " + TOKEN})
    assert r.status_code == expected, (url, r.text)
    assert_headers(r)
    r = guarded.get(url + sep + "token=" + quote(TOKEN))
    assert r.status_code == expected, (url, r.text)


@pytest.mark.parametrize("bad", ["", "two words", "caf\u00e9", "tab\there"])
def test_token_must_travel_in_a_header(searcher, bad: str):
    from attrret.errors import OptionError

    with pytest.raises(OptionError, match="token"):
        create_app(searcher, token=bad)


def test_token_leaves_the_page_open(guarded: TestClient, serve_set: ServeSet):
    for url in ("/", "/static/app.js", "/static/style.css", "/healthz", "/favicon.ico", "/docs", "/openapi.json"):
        r = guarded.get(url)
        assert r.status_code == 200, url
    assert guarded.get("/healthz").json() == {"status": "ok", "images": len(serve_set.names), "meta": ["camera", "track", "time"]}


def test_page_files_are_package_data():
    """The page's files ship in a wheel, not only in a source checkout: pyproject.toml's
    package-data patterns must cover every file under src/attrret/serve/static/."""
    import tomllib
    from fnmatch import fnmatch
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["attrret"]
    static = root / "src" / "attrret" / "serve" / "static"
    files = [p.relative_to(root / "src" / "attrret").as_posix() for p in static.iterdir() if p.is_file()]
    assert {"serve/static/index.html", "serve/static/app.js", "serve/static/style.css"} <= set(files)
    missing = [f for f in files if not any(fnmatch(f, pat) for pat in patterns)]
    assert not missing, f"add e.g. \"serve/static/*\" to [tool.setuptools.package-data] attrret; not shipped: {missing}"


def test_a_replaced_index_is_served(tmp_path):
    """`attrret predict` replaces the index under a running server: the next requests see the
    new one (names, counts, results), with nothing stale kept by the app."""
    import numpy as np

    from attrret.retrieval.index import open_index, write_index
    from attrret.search import Searcher

    from .conftest import make_serve_set

    s = make_serve_set(tmp_path)
    client = TestClient(create_app(Searcher.open(s.index, log=lambda m: None)))
    assert client.get("/healthz").json()["images"] == len(s.names)
    assert client.get("/images/cars/red_suv.jpg?size=32").status_code == 200
    old = open_index(s.index)
    keep = [i for i, n in enumerate(old.names) if n != "cars/red_suv.jpg"]
    write_index(s.index, np.asarray(old.probs)[keep], [old.names[i] for i in keep], [old.files[i] for i in keep],
                old.header)
    assert client.get("/healthz").json()["images"] == len(s.names) - 1
    hits = client.get("/api/search", params={"q": "a red Geely SUV", "k": 3}).json()["results"]
    assert hits and "cars/red_suv.jpg" not in [h["image"] for h in hits]
    assert client.get("/images/cars/red_suv.jpg?size=32").status_code == 404
    assert client.get("/api/images/cars/red_suv.jpg/attributes").status_code == 404
