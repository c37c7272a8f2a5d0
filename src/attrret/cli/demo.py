"""``attrret demo``: the main job on the embedded default data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from attrret.cli.options import PrecisionOption, WrappedHelp, precision_value


def demo(
    workdir: Annotated[Path, typer.Option("--workdir", "-w", help="Where data, models, index, submission and report go.")] = Path("attrret-work"),
    fast: Annotated[bool, typer.Option("--fast", help="Smoke run: smaller data, lower resolution, fewer epochs (< 2 min).")] = False,
    data: Annotated[Optional[Path], typer.Option("--data", help="Run on your own Track-2 folder instead of the synthetic set.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for data generation and training.")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    precision: PrecisionOption = None,
) -> None:
    """Synthesize the demo set, train the router and every attribute task, predict, rank, evaluate, write the report."""
    from attrret.demo import DemoConfig, format_tables, run_demo

    result = run_demo(DemoConfig(workdir=workdir, fast=fast, data=data, seed=seed, device=device,
                                        precision=precision_value(precision)))
    typer.echo(format_tables(result))
    typer.echo(f"\nsubmission: {result.submission}")
    if result.report:
        typer.echo(f"report:     {result.report}")
    index = Path(workdir) / "index"
    typer.echo(f"\nsearch it: attrret search 'a woman with a backpack' --index {index}")
    typer.echo(f"           attrret serve --index {index}    (then open http://127.0.0.1:8000/)")


def register(app: typer.Typer) -> None:
    app.command("demo", cls=WrappedHelp)(demo)
