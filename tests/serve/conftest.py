"""A small real index over real image files, and the served app / server process over it.

The index is written with ``attrret.retrieval.index.write_index`` as ``attrret predict`` would
write it: every task column of the schema plus the router, probabilities per task that sum to
one, and each row's recorded source path (absolute) to a drawn JPEG. Rows are chosen so that
queries have known answers:

- ``ped_f_nobag_*``: female pedestrians, bag = none (so "a woman with no backpack" ranks them first);
- ``ped_m_backpack_*``: male pedestrians with a backpack;
- ``cars/red_suv.jpg``, ``cars/white_sedan.jpg``: vehicles in a sub-folder (names with '/');
- ``odd/<b>white</b> bus #1?%&.jpg``: a name with markup and URL-special characters;
- ``gone.jpg``: in the index, its file deleted (404 "missing from disk");
- ``broken.jpg``: in the index, its file not an image (thumbnail 422).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report.pictures import draw_crop

from attrret.retrieval.index import IndexHeader, write_index
from attrret.retrieval.meta import ImageMeta, parse_time
from attrret.retrieval.indexer import task_columns
from attrret.schema import load_schema


@dataclass(frozen=True)
class ServeSet:
    index: Path
    gallery: Path
    names: tuple[str, ...]
    paths: dict[str, Path]


def _one_hot(size: int, at: int, p: float = 0.9) -> list[float]:
    rest = (1.0 - p) / (size - 1)
    return [p if i == at else rest for i in range(size)]


def draw(name: str, colour: tuple[int, int, int]) -> Image.Image:
    """A crop-like picture: a tall figure for pedestrians, a wide box with wheels for vehicles."""
    return draw_crop("ped_" not in name, colour)


#: name -> (kind, {task: class}) for the classes the rows are confident about; the rest random.
ROWS: dict[str, tuple[str, dict[str, str]]] = {
    "ped_f_nobag_1.jpg": ("pedestrian", {"gender": "female", "bag": "none", "hat": "no"}),
    "ped_f_nobag_2.jpg": ("pedestrian", {"gender": "female", "bag": "none", "hat": "yes"}),
    "ped_f_backpack.jpg": ("pedestrian", {"gender": "female", "bag": "backpack", "hat": "no"}),
    "ped_m_backpack_1.jpg": ("pedestrian", {"gender": "male", "bag": "backpack", "hat": "no"}),
    "ped_m_backpack_2.jpg": ("pedestrian", {"gender": "male", "bag": "backpack", "hat": "yes"}),
    "ped_m_shoulder.jpg": ("pedestrian", {"gender": "male", "bag": "shoulder", "hat": "no"}),
    "cars/red_suv.jpg": ("vehicle", {"color": "red", "type": "SUV", "brand": "Geely"}),
    "cars/white_sedan.jpg": ("vehicle", {"color": "white", "type": "Sedan", "brand": "Toyota"}),
    "cars/black_suv.jpg": ("vehicle", {"color": "black", "type": "SUV", "brand": "Toyota"}),
    "odd/<b>white</b> bus #1?%&.jpg": ("vehicle", {"color": "white", "type": "Bus"}),
    "gone.jpg": ("vehicle", {"color": "blue", "type": "Bus"}),
    "broken.jpg": ("pedestrian", {"gender": "male"}),
}
COLOURS = [(200, 30, 30), (240, 240, 240), (190, 40, 50), (250, 140, 20), (60, 90, 200), (30, 160, 70)]


def make_serve_set(root: Path, seed: int = 0) -> ServeSet:
    schema = load_schema()
    rng = np.random.default_rng(seed)
    gallery = root / "gallery"
    tasks = list(schema.tasks)
    columns = task_columns(None, schema)
    at = max(stop for _, stop in columns.values())
    names = list(ROWS)
    probs = np.zeros((len(names), at), np.float32)
    files, paths = [], {}
    for i, name in enumerate(names):
        kind, values = ROWS[name]
        for t in tasks:
            a, b = columns[t.task]
            if t.task == schema.router.task:
                probs[i, a:b] = _one_hot(t.size, list(t.classes).index(kind), 0.95)
                continue
            subject, group = t.task.split(".")
            if subject == kind and group in values:
                probs[i, a:b] = _one_hot(t.size, list(t.classes).index(values[group]))
            else:
                x = rng.gamma(1.0, size=t.size)
                probs[i, a:b] = x / x.sum()
        path = gallery / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "broken.jpg":
            path.write_bytes(b"this is not a JPEG\n")
        else:
            draw(name, COLOURS[i % len(COLOURS)]).save(path, quality=90)
        st = path.stat()
        files.append({"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
        paths[name] = path.resolve()
    header = IndexHeader(schema=schema.fingerprint, count=len(names), columns=columns, models=(), img_sizes=(32,),
                         tta="flip", weights=(1.0,), source=str(gallery))
    index = root / "w" / "index"
    write_index(index, probs, names, files, header, meta=ImageMeta.from_rows(serve_meta(names)))
    (gallery / "gone.jpg").unlink()
    return ServeSet(index, gallery, tuple(sorted(names)), paths)


def serve_meta(names: list[str]) -> list[dict]:
    """Each row's metadata: camera 1, 2, 3 in turn, a minute apart from 08:00 UTC, two rows per track."""
    t0 = parse_time("2026-12-01T08:00:00")
    return [{"camera": str(1 + i % 3), "time": t0 + i * 60 * 10**9, "track": str(i // 2)} for i in range(len(names))]


@pytest.fixture(scope="session")
def serve_set(tmp_path_factory) -> ServeSet:
    return make_serve_set(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="session")
def searcher(serve_set: ServeSet):
    from attrret.search import Searcher

    return Searcher.open(serve_set.index)


# -- the real server process ---------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen
    url: str  # http://127.0.0.1:PORT/
    stderr: Path

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, *, headers: dict | None = None, timeout: float = 30.0) -> tuple[int, dict, bytes]:
    """GET with urllib: (status, headers with lower-case names, body), also for 4xx answers."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


#: How the tests run the CLI: as a user would, in a separate process.
ATTRRET = [sys.executable, "-m", "attrret"]


def start_server(index: Path, log: Path, *args: str, env: dict | None = None, deadline_s: float = 120.0) -> Server:
    """``python -m attrret serve --index INDEX --port <free port> ARGS`` until /healthz answers.

    Waits for a condition (the health check answers 200) with a generous deadline; fails with
    the server's stderr if it exits or never gets there.
    """
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if k != "ATTRRET_TOKEN"}, "HF_HUB_OFFLINE": "1", **(env or {})}
    cmd = [*ATTRRET, "serve", "--index", str(index), "--port", str(port), *args]
    err = open(log, "wb")  # noqa: SIM115 - closed when the server stops
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
    err.close()
    server = Server(proc, f"http://127.0.0.1:{port}/", log)
    deadline = time.monotonic() + deadline_s
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"attrret serve exited with {proc.returncode}:\n{server.log()}")
        try:
            status, _, _ = get(server.url + "healthz", timeout=5)
            if status == 200:
                return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_server(server)
            raise AssertionError(f"attrret serve did not answer /healthz in {deadline_s:.0f} s:\n{server.log()}")
        time.sleep(0.1)


def stop_server(server: Server) -> int:
    server.proc.terminate()
    try:
        return server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        return server.proc.wait()


@pytest.fixture(scope="module")
def server(serve_set: ServeSet, tmp_path_factory) -> Iterator[Server]:
    srv = start_server(serve_set.index, tmp_path_factory.mktemp("log") / "serve.stderr")
    try:
        yield srv
    finally:
        rc = stop_server(srv)
        assert rc == 0, f"attrret serve exited with {rc} on SIGTERM:\n{srv.log()}"


def served_line(text: str) -> re.Match | None:
    return re.search(r"serving (\S+) images from (.+) at (http://\S+/)", text)
