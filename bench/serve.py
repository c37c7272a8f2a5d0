"""Serving speed: `attrret serve` over HTTP, latency and throughput, from a separate load process.

    .venv/bin/python bench/serve.py [--sizes 100000,1000000] [--clients 1,8,32] [--seconds 10] [--k 10]

Data: synthetic indexes of 100,000 and 1,000,000 images (seed 0): every task column of the
schema with Dirichlet(1) rows normalised per task, and a router column (about half
pedestrians, half vehicles); names ``img_0000001.jpg``...; every row records the path of one
shared drawn image (search needs only the index). Indexes are written to a temporary folder
outside the repository and removed afterwards.

Server: the real command, ``python -m attrret serve --index I --port 0``, one process (uvicorn,
FastAPI's thread pool; concurrent searches are gathered into one top-K call inside
``Searcher.search``).

Load: a separate process (``--load-child``) runs C client threads, each with its own
keep-alive ``http.client`` connection, each sending ``GET /api/search?q=...&k=10`` back to back
(closed loop: a client sends its next query when the answer arrived). Queries: the 2,000 real
Track-2 validation captions (``val_sample.txt``, third ``$`` field) and free-form ones,
shuffled; each client starts at its own offset. Per cell: ``--warmup`` seconds unmeasured, then
``--seconds`` measured; latency = request sent to body read, percentiles over the measured
requests; throughput = measured answers / measured seconds. The machine is shared by server
and load generator (stated with the CPU count in the JSON). Where the time goes: the server's
CPU per answer (from /proc: the whole process, and its event-loop thread alone, which does
the HTTP parsing, routing and responses), how many cores it got, and the 1-minute load
average before the cell (other jobs on the machine take cores from the server).

Targets: 100k images, 1 client: p50 <= 20 ms; 1M images, 32 clients: >= 300 queries/s and
p99 <= 250 ms. Prints a Markdown table; writes ``bench/results/serve.json``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # the bench package, when run as a script

import numpy as np  # noqa: E402

from bench import json_header  # noqa: E402

VAL = Path("/work/shared/data/track2/val_sample.txt")
if not VAL.is_file():
    VAL = ROOT.parent / "shared" / "data" / "track2" / "val_sample.txt"
FREE_FORM = [
    "a woman with a backpack but no hat",
    "guy in a red jacket with glasses",
    "black or white SUV, not a Toyota",
    "a red Geely SUV",
    "lady, long coat, handbag",
    "a kid walking away from the camera",
    "senior man with a hat and a shoulder bag",
    "white van",
    "silver Mercedes-Benz sedan",
    "a man with a hat or glasses",
    "female; backpack; facing away",
    "hat: yes, glasses=no",
    "a blue or green truck",
    "not wearing glasses, short-sleeved, plaid",
    "a 30 year old man holding something",
    "dark blue VW",
    "woman in a skirt without a bag",
    "a minor in a striped shirt",
    "red, white or blue car",
    "a pedestrian with an umbrella",
]
ATTRRET = [sys.executable, "-m", "attrret"]
TARGETS = {"p50_ms_100k_1client": 20.0, "qps_1m_32clients": 300.0, "p99_ms_1m_32clients": 250.0}


def queries(seed: int = 0) -> list[str]:
    """The real Track-2 validation captions plus the free-form ones, shuffled."""
    caps = [line.split("$")[2].strip() for line in VAL.read_text(encoding="utf-8").splitlines() if line.count("$") >= 2]
    out = caps + FREE_FORM * 10  # free-form queries are ~9% of the stream
    random.Random(seed).shuffle(out)
    return out


# -- the synthetic index ---------------------------------------------------------------------


def write_synthetic_index(path: Path, n: int, image: Path, seed: int = 0, chunk: int = 100_000, meta=None) -> float:
    """Write an ``n``-image index (module doc) at ``path``, with ``meta`` (an
    ``attrret.retrieval.meta.ImageMeta`` of its rows) when given; returns the seconds it took."""
    from attrret.retrieval.index import IndexHeader, write_index
    from attrret.retrieval.indexer import task_columns
    from attrret.schema import load_schema

    t = time.perf_counter()
    schema = load_schema()
    columns = task_columns(None, schema)
    at = max(stop for _, stop in columns.values())
    rng = np.random.default_rng(seed)
    probs = np.empty((n, at), np.float32)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        for g in schema.tasks:
            a, b = columns[g.task]
            x = rng.gamma(1.0, size=(e - s, b - a)).astype(np.float32)
            probs[s:e, a:b] = x / x.sum(axis=1, keepdims=True)
    st = image.stat()
    rec = {"path": str(image.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    names = [f"img_{i:07d}.jpg" for i in range(1, n + 1)]
    header = IndexHeader(schema=schema.fingerprint, count=n, columns=columns, models=(), img_sizes=(224,),
                         tta="flip", weights=(1.0,), source="synthetic")
    write_index(path, probs, names, [rec] * n, header, meta=meta)
    return time.perf_counter() - t


def draw_image(path: Path) -> Path:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (64, 160), (150, 160, 150))
    d = ImageDraw.Draw(im)
    d.ellipse((22, 8, 42, 28), fill=(230, 190, 160))
    d.rectangle((16, 30, 48, 90), fill=(200, 30, 30))
    d.rectangle((18, 90, 46, 150), fill=(40, 40, 60))
    im.save(path, quality=90)
    return path


# -- the server --------------------------------------------------------------------------------


class Served:
    """``attrret serve --port 0`` in a child process; the port is read from its stderr line."""

    def __init__(self, index: Path, log: Path, deadline_s: float = 600.0) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        env.pop("ATTRRET_TOKEN", None)
        self.log_path = log
        t = time.perf_counter()
        with open(log, "wb") as err:
            self.proc = subprocess.Popen([*ATTRRET, "serve", "--index", str(index), "--port", "0"],
                                         stdout=subprocess.DEVNULL, stderr=err, env=env)
        deadline = time.monotonic() + deadline_s
        while True:
            m = re.search(r"at http://127\.0\.0\.1:(\d+)/", log.read_text(errors="replace"))
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"attrret serve did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        while True:  # the line is printed once the gallery is prepared; wait for /healthz too
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    c.close()
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"attrret serve did not answer:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        self.start_s = time.perf_counter() - t

    def cpu_s(self) -> tuple[float, float]:
        """(process, event-loop thread) CPU seconds so far, user + system, from /proc (0 elsewhere).
        The process figure includes threads that have exited (the top-K scan's pool)."""
        tick = os.sysconf("SC_CLK_TCK")

        def read(p: str) -> float:
            try:
                f = Path(p).read_text().rsplit(")", 1)[1].split()
                return (int(f[11]) + int(f[12])) / tick
            except (OSError, IndexError, ValueError):
                return 0.0

        pid = self.proc.pid
        return read(f"/proc/{pid}/stat"), read(f"/proc/{pid}/task/{pid}/stat")

    def rss_bytes(self) -> int:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- the load generator (a separate process) -----------------------------------------------------


def load_child(port: int, clients: int, warmup: float, seconds: float, k: int, qfile: str, out: str) -> None:
    """Closed-loop clients on keep-alive connections; writes {latencies_s, answers, errors, window_s}."""
    texts = json.loads(Path(qfile).read_text(encoding="utf-8"))
    # a list of queries, or {"paths": [...]}: request paths as they are (bench/filters.py's filtered searches)
    paths = texts["paths"] if isinstance(texts, dict) else [f"/api/search?{urlencode({'q': q, 'k': k})}" for q in texts]
    start = time.perf_counter() + 0.2  # every client connected before the clock starts
    t0, t1 = start + warmup, start + warmup + seconds
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    statuses: dict[int, int] = {}
    barrier = threading.Barrier(clients)

    def client(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.connect()
        i = c * len(paths) // clients
        barrier.wait()
        while time.perf_counter() < start:
            time.sleep(0.001)
        while True:
            s = time.perf_counter()
            if s >= t1:
                break
            try:
                conn.request("GET", paths[i % len(paths)])
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                status = -1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            e = time.perf_counter()
            i += 1
            if s >= t0 and e <= t1:
                if status == 200:
                    lat[c].append(e - s)
                else:
                    errors[c] += 1
                    statuses[status] = statuses.get(status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [x for per in lat for x in per]
    Path(out).write_text(json.dumps({"latencies_s": flat, "errors": sum(errors), "statuses": statuses,
                                     "window_s": seconds}))


def run_load(port: int, clients: int, warmup: float, seconds: float, k: int, qfile: Path, tmp: Path) -> dict:
    out = tmp / f"load-{clients}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--load-child", str(port), str(clients), str(warmup),
           str(seconds), str(k), str(qfile), str(out)]
    subprocess.run(cmd, check=True, timeout=warmup + seconds + 600)
    raw = json.loads(out.read_text())
    lat = np.array(raw["latencies_s"]) * 1000.0
    n = len(lat)
    return {
        "clients": clients, "answers": n, "errors": raw["errors"], "error_statuses": raw["statuses"],
        "qps": n / raw["window_s"],
        "p50_ms": float(np.percentile(lat, 50)) if n else None,
        "p90_ms": float(np.percentile(lat, 90)) if n else None,
        "p99_ms": float(np.percentile(lat, 99)) if n else None,
        "max_ms": float(lat.max()) if n else None,
        "mean_ms": float(lat.mean()) if n else None,
    }


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000", help="gallery sizes, comma-separated")
    ap.add_argument("--clients", default="1,8,32", help="concurrent clients per cell, comma-separated")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per cell")
    ap.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each cell")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve.json"))
    ap.add_argument("--load-child", nargs=7, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.load_child:
        port, clients, warmup, seconds, k, qfile, out = args.load_child
        load_child(int(port), int(clients), float(warmup), float(seconds), int(k), qfile, out)
        return 0

    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    clients = [int(x) for x in args.clients.split(",") if x.strip()]
    texts = queries()
    res: dict = {**json_header("serve"), "k": args.k, "seconds_per_cell": args.seconds, "warmup_s": args.warmup,
                 "queries": {"total": len(texts), "track2_val": len(texts) - 10 * len(FREE_FORM),
                             "free_form_distinct": len(FREE_FORM)},
                 "load": "separate process, one keep-alive http.client connection per client thread, closed loop",
                 "targets": TARGETS, "cells": []}
    with tempfile.TemporaryDirectory(prefix="attrret-bench-serve-") as tmpdir:  # outside the repository
        tmp = Path(tmpdir)
        qfile = tmp / "queries.json"
        qfile.write_text(json.dumps(texts), encoding="utf-8")
        image = draw_image(tmp / "shared.jpg")
        for n in sizes:
            index = tmp / f"index-{n}"
            build_s = write_synthetic_index(index, n, image)
            print(f"[serve] {n:,} images: index written in {build_s:.1f} s", file=sys.stderr, flush=True)
            server = Served(index, tmp / f"serve-{n}.stderr")
            print(f"[serve] {n:,} images: server up in {server.start_s:.1f} s (port {server.port})", file=sys.stderr, flush=True)
            try:
                for c in clients:
                    load_before = os.getloadavg()[0]
                    cpu0 = server.cpu_s()
                    cell = {"images": n, **run_load(server.port, c, args.warmup, args.seconds, args.k, qfile, tmp)}
                    cpu1 = server.cpu_s()
                    # Server CPU per answer, over warm-up + window (answers counted in the window
                    # only, scaled to the whole run): where the time goes, process and event loop.
                    answered = cell["qps"] * (args.warmup + args.seconds)
                    cell["server_cpu_ms_per_query"] = 1000 * (cpu1[0] - cpu0[0]) / answered if answered else None
                    cell["event_loop_cpu_ms_per_query"] = 1000 * (cpu1[1] - cpu0[1]) / answered if answered else None
                    cell["server_cpu_cores"] = (cpu1[0] - cpu0[0]) / (args.warmup + args.seconds)
                    cell["loadavg_1min_before"] = load_before
                    cell["server_rss_bytes"] = server.rss_bytes()
                    cell["server_start_s"] = server.start_s
                    res["cells"].append(cell)
                    print(f"[serve] {n:,} images, {c} clients: {cell['qps']:.0f} q/s, p50 {cell['p50_ms']:.1f} ms, "
                          f"p99 {cell['p99_ms']:.1f} ms, {cell['errors']} errors", file=sys.stderr, flush=True)
            finally:
                server.stop()
                log = (tmp / f"serve-{n}.stderr").read_text(errors="replace")
                if "Traceback" in log:
                    print(log, file=sys.stderr)
            for f in index.iterdir():
                f.unlink()

    def cell(n: int, c: int) -> dict | None:
        return next((x for x in res["cells"] if x["images"] == n and x["clients"] == c), None)

    small, big = cell(100_000, 1), cell(1_000_000, 32)
    met = {}
    if small and small["p50_ms"] is not None:
        met["p50_ms_100k_1client"] = small["p50_ms"] <= TARGETS["p50_ms_100k_1client"]
    if big and big["p99_ms"] is not None:
        met["qps_1m_32clients"] = big["qps"] >= TARGETS["qps_1m_32clients"]
        met["p99_ms_1m_32clients"] = big["p99_ms"] <= TARGETS["p99_ms_1m_32clients"]
    res["targets_met"] = met
    res["machine"]["loadavg_at_end"] = os.getloadavg()

    print(f"`attrret serve` over HTTP, top-{args.k}, load from a separate process ({len(texts):,} queries: "
          f"real Track-2 captions + free-form), {args.seconds:g} s per cell after {args.warmup:g} s warm-up; "
          f"{os.cpu_count()} CPUs shared by server and load.\n")
    print("| images | clients | queries/s | p50 ms | p90 ms | p99 ms | max ms | errors | server CPU ms/query (event loop) "
          "| server cores used | load avg before | server RSS |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for x in res["cells"]:
        cpu = (f"{x['server_cpu_ms_per_query']:.2f} ({x['event_loop_cpu_ms_per_query']:.2f})"
               if x["server_cpu_ms_per_query"] is not None else "-")
        print(f"| {x['images']:,} | {x['clients']} | {x['qps']:.0f} | {x['p50_ms']:.1f} | {x['p90_ms']:.1f} | "
              f"{x['p99_ms']:.1f} | {x['max_ms']:.0f} | {x['errors']} | {cpu} | {x['server_cpu_cores']:.2f} | "
              f"{x['loadavg_1min_before']:.1f} | {x['server_rss_bytes'] / 2**20:.0f} MiB |")
    lines = []
    if small:
        lines.append(f"100k, 1 client: p50 {small['p50_ms']:.1f} ms (target <= 20 ms: "
                     f"{'met' if met.get('p50_ms_100k_1client') else 'NOT met'})")
    if big:
        lines.append(f"1M, 32 clients: {big['qps']:.0f} q/s (target >= 300: {'met' if met.get('qps_1m_32clients') else 'NOT met'}), "
                     f"p99 {big['p99_ms']:.0f} ms (target <= 250: {'met' if met.get('p99_ms_1m_32clients') else 'NOT met'})")
    if lines:
        print("\n" + "; ".join(lines) + ".")
    from attrret.io import atomic_write_text

    atomic_write_text(Path(args.out), json.dumps(res, indent=1) + "\n")
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
