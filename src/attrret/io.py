"""Atomic file output: a reader never sees a half-written file, an interrupted run loses nothing."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["file_sha256", "atomic_path", "atomic_write_text", "atomic_write_bytes", "refuse_overwriting_inputs", "remove_stale_temps"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_TEMP = re.compile(r"^\..+\.attrret-(\d+)-[^/]*\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the temporary files of attrret writers that died (SIGKILL, power loss) in ``folder``.

    Temp names carry the writer's pid (``.<target>.attrret-<pid>-<random>.tmp``); a file whose
    pid no longer runs can never be renamed into place, so it is removed. Files of live
    writers, and anything not of this naming, are never touched.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = _TEMP.match(e.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            try:
                os.unlink(e.path)
                removed.append(Path(e.path))
            except OSError:
                pass
    return removed


@contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success.

    The temporary file lives in the same directory so the final ``os.replace`` is atomic.
    """
    target = Path(target)
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory; name a file to write", str(target))
    if target.exists() and not target.is_file():
        # A device, FIFO or socket (/dev/stdout, /dev/full, a pipe): write through it in place.
        # Renaming a temporary file onto it would replace the device node itself.
        yield target
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.attrret-{os.getpid()}-", suffix=suffix + ".tmp", dir=target.parent)
    except OSError as exc:  # EACCES, EROFS: name the file the user asked for, not our temp name
        raise OSError(exc.errno, exc.strerror, str(target)) from None
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the final file the usual permissions (0666 minus the umask).
    os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        yield tmp_path
        # Durable before visible: a crash after the rename must not leave a torn file behind it.
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    try:
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
    except OSError as exc:
        if exc.filename is None:  # a write error (ENOSPC) names no file: name the one we were writing
            raise OSError(exc.errno, exc.strerror, str(target)) from None
        raise


def atomic_write_text(target: str | Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def _same(a: Path, b: Path) -> bool:
    """Whether two paths name one file (hard links and symlinks included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def refuse_overwriting_inputs(outputs: dict[str, str | Path | None], inputs: dict[str, str | Path | None]) -> None:
    """Raise one clear error when an output path names one of the command's inputs (or another output).

    Writing a submission over its own caption file, or a report over its labels, would destroy
    the user's data with no way back. Options are named as the user typed them
    (``{"--out": path}``), so the message says which two collide. ``None`` entries are skipped.
    """
    from attrret.errors import InputError

    outs = [(name, Path(p)) for name, p in outputs.items() if p is not None]
    ins = [(name, Path(p)) for name, p in inputs.items() if p is not None]
    for i, (oname, opath) in enumerate(outs):
        for iname, ipath in ins + outs[:i]:
            if _same(opath, ipath):
                raise InputError(f"{oname} is the same file as {iname}; refusing to overwrite it, "
                                 "choose another output path", opath)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (checkpoints and graphs are identified by it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
