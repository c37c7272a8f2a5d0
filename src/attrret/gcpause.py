"""Batch work with Python's cycle collector paused.

Why: parsing or ranking a Track-2 file builds tens of thousands of small result objects (a
Query with its dicts per caption, a plan per query), and every ~700 allocations CPython's
cycle collector runs; as the results pile up it also runs full passes over every tracked
object in the process (spaCy's and torch's included: ~0.1 s each here). Those objects form
no reference cycles, so reference counting frees them all the same and the passes find
nothing. Pausing it took bench/parse.py's repeated real lines from 59.6k to 109-128k
captions/s here. It is switched back on, as it was, when the batch ends, even on error;
cycles made meanwhile (none by attrret's code) are collected by its next pass.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cycle collector for the ``with`` block; restore its previous state after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
