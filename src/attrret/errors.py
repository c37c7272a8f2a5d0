"""Domain errors: the ones the CLI turns into one clear message and exit code 1."""

from __future__ import annotations

from pathlib import Path

__all__ = ["AttrretError", "InputError", "CheckpointError", "OptionError", "SchemaError"]


class AttrretError(Exception):
    """Base class of every error attrret reports to a user without a traceback."""


class InputError(AttrretError):
    """Bad input data; names the file and, when known, the line."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.reason = message
        where = self.path or ""
        if where and line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}" if where else message)


class CheckpointError(AttrretError):
    """A checkpoint or index that cannot be used (wrong schema, foreign models, not a checkpoint)."""


class OptionError(AttrretError, ValueError):
    """An option out of range (a non-finite learning rate, a size <= 0, an unknown choice).

    A ``ValueError`` for library callers, one clear ``attrret: error:`` line on the CLI.
    """


class SchemaError(AttrretError, ValueError):
    """A schema directory that cannot be used: a missing file, bad TOML, or a vocabulary that
    contradicts itself (a lexicon naming an unknown group). Names the file.

    A ``ValueError`` for library callers, one clear ``attrret: error:`` line on the CLI.
    """
