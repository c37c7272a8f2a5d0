"""Caption parsing: caption text -> Query (stated / implied / unknown attribute values).

``CaptionParser`` is imported lazily so that ``from attrret.parser.query import Query``
(used by the ranker and CLI) does not pay for importing spaCy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrret.parser.query import Query, Span

if TYPE_CHECKING:
    from attrret.parser.caption import CaptionParser

__all__ = ["CaptionParser", "Query", "Span"]


def __getattr__(name: str):
    if name == "CaptionParser":
        from attrret.parser.caption import CaptionParser

        return CaptionParser
    raise AttributeError(f"module 'attrret.parser' has no attribute {name!r}")
