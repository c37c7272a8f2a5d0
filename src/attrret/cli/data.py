"""Placeholder: replaced by the data command implementation."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to app."""
