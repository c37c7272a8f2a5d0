"""Advisory file locks (fcntl) for what two attrret processes could write at once.

An index takes two: ``.attrret-write.lock`` serialises whole ``predict`` runs (the second
waits, with a message), and ``.attrret-read.lock`` is held briefly: shared while a reader
reads the header and opens the data files it names, exclusive while a writer swaps the header
and removes the old data files. Opened files stay readable after removal (POSIX), so a reader
sees the old index or the new one, never a header pointing at a deleted file.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["file_lock", "LOCK_PREFIX"]

LOCK_PREFIX = ".attrret-"  # lock files attrret creates; never user data


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


@contextmanager
def file_lock(path: str | Path, *, shared: bool = False, waiting: str | None = None,
              log: Callable[[str], None] = _stderr) -> Iterator[None]:
    """Hold an flock on ``path`` (created if missing) for the ``with`` block.

    If another process holds it, ``waiting`` (when given) is logged once and the call blocks
    until the lock is free; the kernel releases it if the holder dies, so a killed run never
    leaves a stale lock behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                log(waiting)
            fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)
