"""``attrret serve`` as a user runs it: a real process on a free port, queried over HTTP with
urllib, stopped with SIGTERM (exit 0); the token, the loopback rule and a taken port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlencode

from .conftest import ATTRRET, Server, ServeSet, get, served_line, start_server, stop_server

QUERIES = [
    "a woman with no backpack, with an umbrella",
    "A male pedestrian who is between 18 and 60 years old, with his body back to the camera and carrying a backpack.",
    "This is a red Geely SUV.",
    "black or white SUV, not a Toyota",
    "a man with a hat or a backpack",
    "umbrella",
]


def api(server: Server, path: str, **params) -> tuple[int, dict]:
    status, headers, body = get(server.url + path + ("?" + urlencode(params) if params else ""))
    assert headers["content-security-policy"].startswith("default-src 'self'")
    return status, json.loads(body)


def same(result) -> dict:
    return json.loads(json.dumps(result.to_json()))


def test_served_over_http(server: Server, serve_set: ServeSet, searcher):
    line = served_line(server.log())
    assert line is not None, server.log()
    assert line.group(1) == str(len(serve_set.names)) and line.group(2) == str(serve_set.index)
    assert line.group(3) == server.url
    assert api(server, "healthz") == (200, {"status": "ok", "images": len(serve_set.names), "meta": ["camera", "track", "time"]})
    for q in QUERIES:
        assert api(server, "api/search", q=q, k=4) == (200, same(searcher.search(q, k=4)))
        assert api(server, "api/parse", q=q) == (200, searcher.parse(q))
    status, body = api(server, "api/search", q=QUERIES[0], k=3)
    assert {h["image"] for h in body["results"][:2]} == {"ped_f_nobag_1.jpg", "ped_f_nobag_2.jpg"}
    name = "cars/red_suv.jpg"
    status, _, data = get(server.url + "images/" + quote(name))
    assert status == 200 and data == serve_set.paths[name].read_bytes()
    status, headers, data = get(server.url + "images/" + quote(name) + "?size=48")
    assert status == 200 and headers["content-type"] == "image/jpeg" and data[:3] == b"\xff\xd8\xff"
    status, body = api(server, "api/images/" + quote(name) + "/attributes")
    assert status == 200 and body["name"] == name and body["kind"] == "vehicle"


def test_concurrent_requests_get_their_own_answers(server: Server, searcher):
    """Many clients at once (the Searcher batches them into one ranking): each gets the answer
    to its own query, as a lone in-process search gives it."""
    jobs = [(q, k) for q in QUERIES for k in (1, 3, 7)] * 3
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda job: api(server, "api/search", q=job[0], k=job[1]), jobs))
    for (q, k), (status, body) in zip(jobs, answers):
        assert status == 200 and body == same(searcher.search(q, k=k)), (q, k)


def test_bounds_and_names_over_http(server: Server):
    for path, params in (("api/search", {"q": "a" * 2001}), ("api/search", {"q": "a man", "k": 0}),
                         ("api/search", {"q": "a man", "k": 1001}), ("api/search", {"q": "a man", "kind": "cat"})):
        status, body = api(server, path, **params)
        assert status == 422 and isinstance(body["detail"], str), (params, body)
    for url in ("images/..%2Fx", "images/%2Fetc%2Fpasswd", "images/etc/passwd", "images/nope.jpg",
                "images/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd"):
        status, headers, body = get(server.url + url)
        assert status == 404 and headers["content-type"] == "application/json", url
        assert b"root:" not in body


def test_token(serve_set: ServeSet, tmp_path: Path):
    token = "tok-" + "x" * 20
    srv = start_server(serve_set.index, tmp_path / "serve.stderr", env={"ATTRRET_TOKEN": token})
    try:
        url = srv.url + "api/search?" + urlencode({"q": "a red SUV"})
        assert get(url)[0] == 401
        assert get(url, headers={"Authorization": "Bearer nope"})[0] == 401
        assert get(url + "&token=nope")[0] == 401
        assert get(url, headers={"Authorization": f"Bearer {token}"})[0] == 200
        assert get(url + "&token=" + token)[0] == 200
        assert get(srv.url + "images/cars/red_suv.jpg?size=32")[0] == 401
        assert get(srv.url + "images/cars/red_suv.jpg?size=32&token=" + token)[0] == 200
        assert get(srv.url + "healthz")[0] == 200 and get(srv.url)[0] == 200
        assert token not in srv.log()  # the token is never echoed
    finally:
        assert stop_server(srv) == 0, srv.log()


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**{k: v for k, v in os.environ.items() if k != "ATTRRET_TOKEN"}, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([*ATTRRET, *args], capture_output=True, text=True, env=full, timeout=120)


def test_non_loopback_needs_a_token(serve_set: ServeSet):
    for host in ("0.0.0.0", "::", "192.0.2.1"):
        res = run_cli("serve", "--index", str(serve_set.index), "--host", host, "--port", "0")
        assert res.returncode == 1, (host, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("attrret: error:") and "--token" in lines[0], res.stderr
        assert "Traceback" not in res.stderr
    res = run_cli("serve", "--index", str(serve_set.index), "--port", "0", "--token", "has space")
    assert res.returncode == 1 and "token" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_taken_port_and_missing_index(serve_set: ServeSet, tmp_path: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = run_cli("serve", "--index", str(serve_set.index), "--port", str(port))
    assert res.returncode == 1 and res.stderr.startswith("attrret: error: cannot listen on 127.0.0.1:"), res.stderr
    res = run_cli("serve", "--index", str(tmp_path / "nothing"), "--port", "0")
    assert res.returncode == 1 and "not an attrret index" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_help_is_quick_to_import():
    """`attrret serve --help` lists the options without importing the web stack."""
    code = ("import sys; from attrret.cli import serve; import typer; app = typer.Typer(); serve.register(app); "
            "assert 'fastapi' not in sys.modules and 'uvicorn' not in sys.modules")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
