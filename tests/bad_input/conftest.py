"""Shared helpers of the bad-input matrix: run the console entry point, check one clear error.

Every test here drives ``attrret.cli.main`` -- the function ``python -m attrret`` and the
console script call -- with the user's arguments and checks the contract of issue 7: exit
code 1, one ``attrret: error:`` line naming the file (and line), no traceback, and no partial
output left behind.

:func:`attrret` runs it in this process (stdio captured, the working directory changed for
the call), so the matrix pays the torch and timm imports once instead of once per case. Runs
that need a process of their own -- fault injection through environment variables (a fault
point signals its own process), ``preexec_fn`` -- get a fresh ``python -m attrret``, and
``ATTRRET_TEST_SUBPROCESS=1`` (``make test-all``) runs every case that way.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

VEH = "This is a white Audi."
TINY_TRAIN = ("--backbone", "timm:test_vit", "--random-init", "--img-size", "32", "--batch-size", "8", "--quiet")


def attrret(*args: object, timeout: float = 300, cwd: Path | None = None, env: dict[str, str] | None = None,
            preexec_fn=None) -> subprocess.CompletedProcess:
    """Run ``attrret ARGS`` and return what a user would see: exit code, stdout and stderr.

    In this process unless it needs its own (``env`` or ``preexec_fn`` given, or
    ``ATTRRET_TEST_SUBPROCESS=1``; see the module doc).
    """
    argv = [str(a) for a in args]
    if env or preexec_fn or os.environ.get("ATTRRET_TEST_SUBPROCESS") == "1":
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
        return subprocess.run([sys.executable, "-m", "attrret", *argv], capture_output=True, text=True,
                              env=full_env, timeout=timeout, cwd=cwd, preexec_fn=preexec_fn)
    return run_in_process(argv, cwd)


def run_in_process(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``attrret.cli.main(argv)`` with stdin empty and stdout/stderr captured (text streams
    with a byte ``buffer``, like a real process's). An exception that escapes ``main`` is what
    Python would print for it: a traceback on stderr and exit code 1."""
    from attrret.cli import main

    streams = [io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="replace") for _ in range(2)]
    stdin = io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8")
    code: int = 0
    with contextlib.chdir(cwd or os.getcwd()), contextlib.redirect_stdout(streams[0]), \
            contextlib.redirect_stderr(streams[1]), _stdin(stdin):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - reported the way the interpreter would report it
            traceback.print_exc()
            code = 1
    out, err = (_read(s) for s in streams)
    return subprocess.CompletedProcess(["attrret", *argv], code, out, err)


@contextlib.contextmanager
def _stdin(stream: io.TextIOWrapper):
    saved, sys.stdin = sys.stdin, stream
    try:
        yield
    finally:
        sys.stdin = saved


def _read(stream: io.TextIOWrapper) -> str:
    """Everything written to ``stream`` (the command may have closed it, as a broken pipe does)."""
    raw = stream.buffer
    if not stream.closed:
        stream.flush()
    return raw.getvalue().decode("utf-8", errors="replace") if not raw.closed else ""


def error_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Assert the run failed the documented way and return its one error line."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("attrret: error:")]
    assert len(errors) == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == errors[0]  # nothing after it
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    return errors[0]


def leftovers(root: Path) -> list[str]:
    """Temporary files an atomic writer would leave after a failure (there must be none)."""
    return sorted(str(p) for p in root.rglob("*") if p.name.endswith(".tmp"))


def ped_code(female: bool, i: int) -> str:
    bits = [0] * 21
    bits[0] = int(female)
    bits[1 + i % 3] = 1
    bits[4 + (i // 3) % 3] = 1
    bits[13 + i % 2] = 1
    return ",".join(map(str, bits))


def make_folder(root: Path, n_ped: int = 12, n_veh: int = 6, seed: int = 0) -> Path:
    """``labels.txt + images/``: pedestrians (gender shown as colour) and a few vehicles."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n_ped):
        arr = rng.integers(0, 60, (48, 24, 3)).astype(np.uint8)
        arr[..., 0 if i % 2 == 0 else 2] += 180
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(arr).save(root / "images" / name, quality=90)
        lines.append(f"{name}${ped_code(i % 2 == 0, i)}$A pedestrian.")
    for j in range(n_veh):
        name = "".join(chr(97 + (j + k) % 26) for k in range(10)) + ".jpg"
        arr = rng.integers(0, 60, (24, 48, 3)).astype(np.uint8)
        arr[..., 1] += 180
        Image.fromarray(arr).save(root / "images" / name, quality=90)
        lines.append(f"{name}$white Audi.${VEH}")
    (root / "labels.txt").write_text("\n".join(lines) + "\n")
    return root


def odd_images(folder: Path) -> dict[str, Path]:
    """Valid images in every mode a camera or a conversion tool may produce."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = {}
    out["grayscale"] = folder / "gray.jpg"
    Image.fromarray(rng.integers(0, 255, (48, 24), dtype=np.uint8), "L").save(out["grayscale"])
    out["CMYK JPEG"] = folder / "cmyk.jpg"
    Image.new("CMYK", (24, 48), (10, 200, 30, 0)).save(out["CMYK JPEG"])
    out["PNG with alpha"] = folder / "alpha.png"
    Image.fromarray(rng.integers(0, 255, (48, 24, 4), dtype=np.uint8), "RGBA").save(out["PNG with alpha"])
    out["16-bit PNG"] = folder / "deep16.png"
    deep = rng.integers(0, 65535, (48, 24)).astype("<u2")
    Image.frombytes("I;16", (24, 48), deep.tobytes()).save(out["16-bit PNG"])
    for p in out.values():  # the files really are in the odd modes
        assert Image.open(p).mode in ("L", "CMYK", "RGBA", "I;16")
    return out


def broken_images(folder: Path, only: str | None = None) -> dict[str, Path]:
    """Files with image names that cannot be decoded (``only``: keep just that case)."""
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / ".good.jpg"
    Image.fromarray(np.full((48, 24, 3), 90, np.uint8)).save(good)
    out = {"zero-byte": folder / "empty.jpg", "truncated JPEG": folder / "trunc.jpg", "not an image": folder / "garbage.jpg"}
    out["zero-byte"].write_bytes(b"")
    out["truncated JPEG"].write_bytes(good.read_bytes()[:300])
    out["not an image"].write_bytes(b"<html>not a JPEG</html>" * 8)
    good.unlink()
    for case, path in out.items():
        if only is not None and case != only:
            path.unlink()
    return out if only is None else {only: out[only]}


def huge_png(path: Path, side: int = 20000) -> Path:
    """A valid ``side`` x ``side`` grey PNG written row by row (~400 KB, never ``side**2`` bytes in memory)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    comp, parts, row = zlib.compressobj(1), [], b"\0" + b"\x80" * side  # filter 0 + one grey row
    for _ in range(side):
        parts.append(comp.compress(row))
    parts.append(comp.flush())
    ihdr = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> tuple[Path, Path, Path]:
    """``(data, workdir, index)``: router + pedestrian.gender trained on a tiny folder, and its index.

    Built once through the library (the CLI is what the tests exercise; this is only setup).
    """
    from attrret.classifiers.train import TrainConfig, train_tasks
    from attrret.classifiers.engine import Ensemble
    from attrret.retrieval.indexer import build_index, find_members

    root = tmp_path_factory.mktemp("tiny")
    data = make_folder(root / "data")
    work = root / "w"
    for task in ("router", "pedestrian.gender"):
        train_tasks(TrainConfig(task=task, data=str(data), workdir=str(work), backbone="timm:test_vit", pretrained=False,
                                img_size=32, epochs=1, batch_size=8), progress=False)
    build_index(data, root / "index", Ensemble.open(find_members(work)), progress=False)
    return data, work, root / "index"
