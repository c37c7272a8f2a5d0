"""The ``attrret`` command line: thin Typer commands over the library.

Each command module builds a config from its options, calls one library function and
prints. Results go to stdout, progress and diagnostics to stderr. Exit codes: 0 ok,
1 domain error (one clear message, no traceback), 2 usage error, 130 interrupted.
Heavy imports (torch, timm, spaCy) happen inside the commands so ``--help`` is instant.
"""

from __future__ import annotations

import sys

import typer

from attrret.cli import baseline, data, demo, export, index, parse, report, retrieval, search, serve, train
from attrret.errors import AttrretError

app = typer.Typer(
    name="attrret",
    help="Attribute-based text-to-image retrieval for traffic scenes (pedestrians and vehicles).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

parse.register(app)
data.register(app)
train.register(app)
retrieval.register(app)
index.register(app)
search.register(app)
serve.register(app)
report.register(app)
baseline.register(app)
export.register(app)
demo.register(app)


def _print_version(value: bool) -> None:
    if value:
        from attrret import __version__

        typer.echo(f"attrret {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", callback=_print_version, is_eager=True,
                                 help="Print the installed version and exit."),
) -> None:
    """Attribute-based text-to-image retrieval for traffic scenes (pedestrians and vehicles)."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: domain errors become one line on stderr and exit code 1.

    Typer turns Ctrl-C into a silent exit 130; it gets its line here. Nothing is left
    half-written by an interrupt, because every output is written through ``attrret.io``.
    """
    try:
        app(args=argv, prog_name="attrret")
    except SystemExit as exc:
        if exc.code == 130:  # typer's KeyboardInterrupt exit
            print("attrret: interrupted", file=sys.stderr)
        raise
    except AttrretError as exc:
        print(f"attrret: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:  # `attrret parse x | head`: the reader left; say nothing more
        sys.stderr.close()
        sys.exit(1)
    except OSError as exc:  # a full disk, a directory given as -o, no permission: the system's words and the path
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"attrret: error: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)
    except RecursionError:  # e.g. JSON nested 100,000 deep
        print("attrret: error: input is nested too deeply to read", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("attrret: interrupted", file=sys.stderr)
        sys.exit(130)
