"""Serve serves only what it indexed, answers only its own host names, and never says where files are.

Over HTTP, against a real ``attrret serve`` process (tests/serve/conftest.py), on a gallery of
its own so that files can be swapped after indexing.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from attrret.serve import LOOPBACK_HOSTS, host_allowed
from tests.serve.conftest import get, make_serve_set, start_server, stop_server


@pytest.fixture(scope="module")
def own_set(tmp_path_factory):
    return make_serve_set(tmp_path_factory.mktemp("secure"))


@pytest.fixture(scope="module")
def srv(own_set, tmp_path_factory):
    server = start_server(own_set.index, tmp_path_factory.mktemp("log") / "serve.stderr")
    yield server
    stop_server(server)


def keep_times(src: Path, like: Path) -> None:
    st = like.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def test_an_image_swapped_for_a_symlink_after_indexing_is_refused(own_set, srv, tmp_path):
    name = "ped_f_backpack.jpg"
    path = own_set.paths[name]
    assert get(srv.url + f"images/{name}")[0] == 200
    secret = tmp_path / "secret.txt"
    secret.write_bytes(path.read_bytes())  # the same bytes: only the link gives it away
    keep_times(secret, path)
    path.unlink()
    path.symlink_to(secret)
    for url in (f"images/{name}", f"images/{name}?size=64"):
        status, _, body = get(srv.url + url)
        assert status == 404 and b"symbolic link" in body, body


def test_a_directory_swapped_for_a_symlink_is_refused(own_set, srv, tmp_path):
    """Another instance of the class: the file itself is a plain file, one directory above it is a link."""
    cars = own_set.gallery / "cars"
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(cars, elsewhere, copy_function=shutil.copy2)  # same names, sizes and times
    shutil.rmtree(cars)
    cars.symlink_to(elsewhere, target_is_directory=True)
    status, _, body = get(srv.url + "images/cars/red_suv.jpg")
    assert status == 404 and b"symbolic link" in body, body


def test_a_file_replaced_after_indexing_is_refused(own_set, srv):
    name = "ped_m_shoulder.jpg"
    path = own_set.paths[name]
    path.write_bytes(path.read_bytes() + b"\0" * 10)  # other size (and time)
    status, _, body = get(srv.url + f"images/{name}")
    assert status == 404 and b"changed since it was indexed" in body, body


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "attacker.localhost.evil.example", "10.0.0.1", "[fe80::1]:8000", ""])
def test_a_foreign_host_header_is_refused(srv, host):
    status, _, body = get(srv.url + "api/search?q=woman", headers={"Host": host} if host else {"Host": " "})
    assert status == 400 and b"Host" in body, (host, body)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.0.2", "[::1]", "app.localhost"])
def test_loopback_host_names_are_answered(srv, host):
    port = srv.url.rsplit(":", 1)[1].strip("/")
    assert get(srv.url + "healthz", headers={"Host": f"{host}:{port}"})[0] == 200


def test_allowed_hosts_adds_names(own_set, tmp_path):
    server = start_server(own_set.index, tmp_path / "log", "--allowed-hosts", "search.example,localhost,127.0.0.1")
    try:
        assert get(server.url + "healthz", headers={"Host": "search.example"})[0] == 200
        assert get(server.url + "healthz", headers={"Host": "other.example"})[0] == 400
    finally:
        stop_server(server)


def test_no_response_holds_a_server_path(own_set, srv):
    roots = {str(own_set.gallery.resolve()), str(own_set.index.resolve()), str(own_set.gallery)}
    urls = ["", "healthz", "api/search?q=a+woman+with+a+backpack&k=20", "api/search?q=a+red+car", "api/parse?q=red+car",
            "openapi.json", "docs", "api/images/nope.jpg/attributes", "images/gone.jpg", "images/broken.jpg?size=64"]
    urls += [f"api/images/{n}/attributes" for n in ("ped_f_nobag_1.jpg", "cars/white_sedan.jpg", "gone.jpg")]
    for url in urls:
        _, headers, body = get(srv.url + url)
        text = body.decode("utf-8", "replace") + json.dumps(headers)
        assert not any(r in text for r in roots), url


def test_show_paths_puts_them_back(own_set, tmp_path):
    server = start_server(own_set.index, tmp_path / "log", "--show-paths")
    try:
        status, _, body = get(server.url + "api/images/ped_f_nobag_1.jpg/attributes")
        assert status == 200 and json.loads(body)["path"] == str(own_set.paths["ped_f_nobag_1.jpg"])
    finally:
        stop_server(server)


@pytest.mark.parametrize(("host", "allowed"), [
    ("localhost:8000", True), ("LOCALHOST", True), ("127.9.9.9:1", True), ("[::1]:8000", True), ("::1", True),
    ("x.localhost", True), ("localhost.evil.example", False), ("evil.example", False), ("", False), ("[::1", False),
    ("0.0.0.0", False), ("127.0.0.1.evil.example", False),
])
def test_host_allowed_rule(host, allowed):
    assert host_allowed(host, LOOPBACK_HOSTS) is allowed
    assert host_allowed(host, frozenset({"*"}))
