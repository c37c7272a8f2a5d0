"""What every command module shares: the help formatter and choice Enums."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from typer.core import TyperCommand

from attrret.ensemble import TTA_MODES
from attrret.geometry import HW, parse_hw, parse_hw_list
from attrret.precisions import PRECISION_ENV, PRECISIONS

if TYPE_CHECKING:
    from attrret.schema import Schema

__all__ = ["WrappedHelp", "choice", "size_option", "sizes_option", "SCHEMA_ENV", "SchemaDir", "resolve_schema", "PrecisionChoice", "Tta",
           "PrecisionOption", "precision_value"]

#: The environment variable naming a custom schema directory (``--schema`` wins over it).
SCHEMA_ENV = "ATTRRET_SCHEMA"

#: The ``--schema DIR`` option every command that reads or writes schema-shaped things takes:
#: the flag, else ``$ATTRRET_SCHEMA``, else the packaged schema. Give it to :func:`resolve_schema`.
SchemaDir = Annotated[Optional[Path], typer.Option(
    "--schema", envvar=SCHEMA_ENV, metavar="DIR", show_default=False, show_envvar=True,
    help="Custom schema directory (pedestrian.toml, vehicle.toml, router.toml, lexicon.toml; see docs/schema.md). "
         "Default: the packaged schema.")]

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


def resolve_schema(directory: Path | None) -> Schema:
    """The schema a command runs with: the packaged one for ``None``, else ``directory``'s,
    checked whole up front (its three vocabulary files and its lexicon), so a bad directory is
    one :class:`attrret.errors.SchemaError` line before any work starts."""
    from attrret.schema import load_schema

    schema = load_schema(directory)
    if directory is not None:
        from attrret.parser.lexicon import load_lexicon

        load_lexicon(schema)
    return schema


PrecisionChoice = choice("PrecisionChoice", PRECISIONS)
#: ``--tta`` of predict and export onnx (attrret.ensemble.TTA_MODES).
Tta = choice("Tta", TTA_MODES)

#: The ``--precision`` option of every command that runs a model (train, predict, attributes,
#: export, demo): the flag, else ``$ATTRRET_PRECISION``, else ``auto``. Give it to
#: :func:`precision_value`; attrret.classifiers.runtime.resolve_precision says what each runs as.
PrecisionOption = Annotated[Optional[PrecisionChoice], typer.Option(  # type: ignore[valid-type]
    "--precision", envvar=PRECISION_ENV, show_default=False, show_envvar=True, case_sensitive=False,
    help="auto (default): fp16 AMP on CUDA, bf16 on CPUs with oneDNN bf16 kernels (AVX-512), else fp32. "
         "fp32 | bf16 | fp16 force one on any device that can run it (bf16 on a CPU without native kernels runs, "
         "only slower). What ran is recorded in logs, checkpoints and the index header.")]


def precision_value(option: Enum | None) -> str | None:
    """The library's ``precision`` argument for a :data:`PrecisionOption` value."""
    return option.value if option is not None else None
