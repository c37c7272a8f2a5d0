"""Placeholder: replaced by the retrieval command implementation."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to app."""
