"""What every command module shares: the help formatter and choice Enums."""

from __future__ import annotations

from enum import Enum

import typer
from typer.core import TyperCommand

from attrret.geometry import HW, parse_hw, parse_hw_list

__all__ = ["WrappedHelp", "choice", "size_option", "sizes_option"]

_HYPHEN = "\ue000"  # stands for "-" while wrapping: a private-use character, one column wide


class WrappedHelp(TyperCommand):
    """A command whose ``--help`` wraps to the terminal and never truncates.

    Rich's option table cuts long option names, metavars and words with "…" on an
    80-column terminal; click's plain help wraps them instead (never inside an option name).
    Errors keep the app's style (the top-level group prints them). Shared by every command
    module: ``app.command(name, cls=WrappedHelp)``.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs["rich_markup_mode"] = None
        super().__init__(*args, **kwargs)

    def get_help(self, ctx) -> str:
        # click's formatter (typer's vendored one), told not to break lines at hyphens
        formatter = ctx.make_formatter()
        write_text, write_dl = formatter.write_text, formatter.write_dl
        formatter.write_text = lambda text: write_text(text.replace("-", _HYPHEN))
        formatter.write_dl = lambda rows, *args, **kwargs: write_dl(
            [(term, text.replace("-", _HYPHEN)) for term, text in rows], *args, **kwargs)
        self.format_help(ctx, formatter)
        return formatter.getvalue().replace(_HYPHEN, "-").rstrip("\n")


def choice(name: str, values) -> type[Enum]:
    """A ``str`` Enum of ``values`` (each member named and valued as itself), for a Typer
    option whose choices are listed once, where the library defines them, and shown in help."""
    return Enum(name, {v: v for v in values}, type=str)


def size_option(text: str, flag: str) -> HW:
    """One input size, ``HxW`` or ``N`` (:func:`attrret.geometry.parse_hw`); anything else is a
    usage error naming ``flag`` (exit 2)."""
    try:
        return parse_hw(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=flag) from None


def sizes_option(text: str, flag: str) -> tuple[HW, ...]:
    """Comma-separated input sizes, each as :func:`size_option` reads one."""
    try:
        return parse_hw_list(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=flag) from None
