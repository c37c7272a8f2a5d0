"""attrret: attribute-based text-to-image retrieval for traffic scenes.

``from attrret import Searcher`` is the entry point for searching an index from Python
(:mod:`attrret.search`). It is imported on first use, so ``import attrret`` (and
``attrret --help``) stays instant.
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from attrret.search import Hit, Searcher, SearchResult

__all__ = ["Searcher", "SearchResult", "Hit", "__version__"]


def _version() -> str:
    """The installed distribution's version (pyproject.toml is the one place it is written)."""
    try:
        return metadata.version("attrret")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


__version__ = _version()


def __getattr__(name: str):
    if name in __all__:
        import attrret.search

        return getattr(attrret.search, name)
    raise AttributeError(f"module 'attrret' has no attribute {name!r}")
