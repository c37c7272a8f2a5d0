"""``attrret data``: dataset commands (``synth``: generate the synthetic Track-2 benchmark)."""

from __future__ import annotations

from pathlib import Path

import typer

from attrret.cli.options import WrappedHelp

data_app = typer.Typer(help="Datasets: generate the synthetic Track-2 benchmark.", no_args_is_help=True)


@data_app.command("synth", cls=WrappedHelp)
def synth(
    out: Path = typer.Option(..., "--out", help="Output folder (Track-2 layout); must not exist unless --force."),
    pedestrians: int = typer.Option(1200, "--pedestrians", min=0, help="Number of pedestrian images."),
    vehicles: int = typer.Option(1200, "--vehicles", min=0, help="Number of vehicle images."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", min=0.0, max=0.95, help="Share of each kind in test/."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", min=0.0, max=0.95, help="Share of each kind in val/."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same bytes)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Rendering processes."),
    preview: bool = typer.Option(False, "--preview", help="Also write DIR/preview.png, a captioned contact sheet."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
) -> None:
    """Render a synthetic pedestrian + vehicle benchmark in the exact Track-2 layout."""
    from rich.console import Console
    from rich.table import Table

    from attrret.data.synth import SynthConfig, generate

    config = SynthConfig(pedestrians=pedestrians, vehicles=vehicles, test_fraction=test_fraction,
                         val_fraction=val_fraction, seed=seed, workers=workers, preview=preview)
    summary = generate(out, config, progress=True, force=force)
    table = Table(title=f"synthetic Track-2 set in {summary.out} ({summary.seconds:.1f} s)")
    for col in ("split", "vehicles", "pedestrians", "total"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for split, c in summary.counts.items():
        table.add_row(split, str(c["vehicle"]), str(c["pedestrian"]), str(c["vehicle"] + c["pedestrian"]))
    table.add_row("all", "", "", str(summary.total))
    Console().print(table)
    if summary.preview:
        Console(stderr=True).print(f"preview: {summary.preview}")


def register(app: typer.Typer) -> None:
    """Add ``attrret data`` to the main app."""
    app.add_typer(data_app, name="data")
