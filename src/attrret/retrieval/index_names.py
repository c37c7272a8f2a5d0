"""The names in an index folder: its format tag and its data files (light: no pydantic, no numpy).

Both the index reader and writer (:mod:`attrret.retrieval.index`) and the header's validation
models (:mod:`attrret.retrieval.index_files`) read these rules, so they live below both.
"""

from __future__ import annotations

__all__ = ["FORMAT", "data_file", "plain_data_file"]

FORMAT = "attrret-index/1"


def data_file(name: str) -> bool:
    """A name an index data file may have: ``probs-*.npy``, ``names-*.json``, ``meta-*.parquet``."""
    return ((name.startswith("probs-") and name.endswith(".npy")) or (name.startswith("names-") and name.endswith(".json"))
            or (name.startswith("meta-") and name.endswith(".parquet")))


def plain_data_file(name: object) -> bool:
    """An index data file name that stays inside its folder (no path separator): what a header
    or a pending list may name, and so what attrret may open or remove there."""
    return isinstance(name, str) and data_file(name) and "/" not in name and "\\" not in name
