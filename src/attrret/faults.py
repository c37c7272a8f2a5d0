"""Test-only fault injection: a process signals itself at a named, well-defined point.

The interruption tests (tests/bad_input/test_interruptions.py) need a kill or a Ctrl-C at an
exact point of a run, not after a sleep (a race under load). A fault point reads one
environment variable; unset, which it always is for users, it does nothing.
``ATTRRET_TEST_SIGNAL`` names the signal (``KILL``, the default, or ``INT`` for Ctrl-C).
"""

from __future__ import annotations

import os
import signal

__all__ = ["fault_point"]


def fault_point(variable: str, value: str = "1") -> None:
    """Send this process ``ATTRRET_TEST_SIGNAL`` when ``variable`` is set to ``value``."""
    if os.environ.get(variable) != value:
        return
    name = os.environ.get("ATTRRET_TEST_SIGNAL", "KILL").upper().removeprefix("SIG")
    os.kill(os.getpid(), getattr(signal, f"SIG{name}"))
