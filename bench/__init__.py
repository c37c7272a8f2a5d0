"""Benchmarks: each ``bench/<name>.py`` prints a Markdown table and writes ``bench/results/<name>.json``."""

from __future__ import annotations

import datetime as dt
import os
import platform


def json_header(name: str) -> dict:
    """The fields every results JSON starts with: which bench, when (UTC), and on what machine."""
    return {
        "bench": name,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_at_end": os.getloadavg()},
    }
