"""``attrret data``: dataset commands (``synth``: generate the synthetic Track-2 benchmark;
``import``: turn PA-100K, PETA or a CSV into the Track-2 layout; ``crops``: cut a detector's
boxes out of video frames)."""

from __future__ import annotations

from pathlib import Path

import typer

from attrret.cli.options import SchemaDir, WrappedHelp, choice, resolve_schema
from attrret.data.crops import FORMATS as CROP_FORMATS, PER_TRACK
from attrret.data.importers import FORMATS

data_app = typer.Typer(help="Datasets: generate the synthetic Track-2 benchmark, import PA-100K, PETA or a CSV, or cut crops from detections.",
                       no_args_is_help=True)
ImportFormat = choice("ImportFormat", FORMATS)
Kind = choice("Kind", ("pedestrian", "vehicle"))
DetectionFormat = choice("DetectionFormat", CROP_FORMATS)
PerTrack = choice("PerTrack", PER_TRACK)


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


@data_app.command("import", cls=WrappedHelp)
def import_(
    fmt: ImportFormat = typer.Argument(..., metavar="FORMAT", help="Source format: " + "; ".join(
        f"{f.name}: {f.help}" for f in FORMATS.values()) + "."),
    src: Path = typer.Argument(..., metavar="SRC", help="The source: PA-100K folder or annotation.mat; PETA release folder; CSV file."),
    out: Path = typer.Option(..., "--out", help="Output folder (Track-2 layout); must not exist unless --force."),
    images: Path = typer.Option(None, "--images", help="Image folder, when not in the format's usual place "
                                "(pa100k: data/, release_data/release_data/, images/ or beside annotation.mat; "
                                "csv: paths relative to the CSV's folder)."),
    kind: Kind = typer.Option(None, "--kind", help="csv: the subject of every row, when the CSV has no kind column."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", min=0.0, max=0.95,
                                       help="Share of identities in val/ (sources without a split: peta, csv)."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", min=0.0, max=0.95,
                                        help="Share of identities in test/ (sources without a split: peta, csv)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the identity split and of the caption phrasing."),
    link: bool = typer.Option(False, "--link", help="Hard-link the images instead of copying them "
                              "(copies where the file system cannot link; the source is never changed)."),
    skip_missing: bool = typer.Option(False, "--skip-missing",
                                      help="Leave out images the labels list but the folder lacks (counted), "
                                      "instead of stopping."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier imported set (never another folder)."),
    schema_dir: SchemaDir = None,
) -> None:
    """Import a labelled pedestrian/vehicle dataset into the Track-2 layout that train and predict read."""
    from rich.console import Console
    from rich.table import Table

    from attrret.data.importers import ImportOptions
    from attrret.data.importers.build import import_dataset

    options = ImportOptions(images=images, kind=kind.value if kind else None, val_fraction=val_fraction,
                            test_fraction=test_fraction, seed=seed, skip_missing=skip_missing)
    summary = import_dataset(fmt.value, src, out, options, link=link, force=force, progress=True, schema=resolve_schema(schema_dir))
    console = Console()
    splits = list(summary.counts)
    table = Table(title=f"{fmt.value} imported into {summary.out} ({summary.seconds:.1f} s)")
    table.add_column("split")
    for col in ("vehicles", "pedestrians", "total"):
        table.add_column(col, justify="right")
    for split, c in summary.counts.items():
        table.add_row(split, str(c["vehicle"]), str(c["pedestrian"]), str(c["vehicle"] + c["pedestrian"]))
    console.print(table)
    groups = sorted({g for k in summary.known.values() for g in k}, key=lambda g: (not g.startswith("vehicle"), g))
    known = Table(title="images with a known label, per group (the rest are unknown and skipped by that task)")
    known.add_column("group")
    for split in splits:
        known.add_column(split, justify="right")
    for g in groups:
        known.add_row(g, *(str(summary.known.get(s, {}).get(g, 0)) for s in splits))
    console.print(known)
    err = Console(stderr=True)
    for reason, n in sorted(summary.skipped.items()):
        err.print(f"note: {n} x {reason}")


@data_app.command("crops", cls=WrappedHelp)
def crops(
    frames: Path = typer.Option(..., "--frames", help="Folder of video frames (MOT: 000001.jpg, ... by frame number)."),
    detections: Path = typer.Option(..., "--detections", help="Boxes: MOT text (frame,id,x,y,w,h,score,...) or COCO-style JSON (.json)."),
    out: Path = typer.Option(..., "--out", help="Output folder: images/ and meta.csv; must not exist unless --force."),
    fmt: DetectionFormat = typer.Option(None, "--format", help="mot or coco (default: coco for .json, else mot)."),
    camera: str = typer.Option(None, "--camera", help="Camera name of every crop (default: the frames folder's name)."),
    fps: float = typer.Option(None, "--fps", help="Frames per second: with --start, frame N is at start + (N - 1) / fps."),
    start: str = typer.Option(None, "--start", help="ISO 8601 time of frame 1 (without a zone: UTC)."),
    timestamps: Path = typer.Option(None, "--timestamps", help="frame,time per line: each frame's own time."),
    per_track: PerTrack = typer.Option(PerTrack.all, "--per-track", help="all: every box; best: one crop per track, its best-scoring box."),
    min_score: float = typer.Option(0.0, "--min-score", help="Skip boxes scored below this."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier crop set (never another folder)."),
) -> None:
    """Cut detections (MOT or COCO boxes) out of video frames, with a metadata table for predict --meta."""
    from attrret.data.crops import make_crops

    s = make_crops(frames, detections, out, fmt=fmt.value if fmt else None, camera=camera, fps=fps, start=start,
                   timestamps=timestamps, per_track=per_track.value, min_score=min_score, force=force, progress=True)
    typer.echo(f"{s.out}: {s.crops} crops from {s.frames} frames, {s.tracks} tracks ({s.seconds:.1f} s); "
               f"next: attrret predict --images {s.out / 'images'} --meta {s.out / 'meta.csv'}")
    for reason, n in sorted(s.skipped.items()):
        typer.echo(f"note: {n} x {reason}", err=True)


def register(app: typer.Typer) -> None:
    """Add ``attrret data`` to the main app."""
    app.add_typer(data_app, name="data")
