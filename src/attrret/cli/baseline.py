"""``attrret baseline clip``: the contrastive dual-encoder baseline, trained and ranked in one go."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from attrret.cli.options import PrecisionOption, SchemaDir, WrappedHelp, choice, precision_value, resolve_schema

Tta = choice("Tta", ("none", "flip"))

baseline_app = typer.Typer(
    name="baseline",
    help="Baselines to compare attrret against (same data, same split, same budget).",
    no_args_is_help=True,
)


def _log(msg: str) -> None:
    print(f"[clip] {msg}", file=sys.stderr, flush=True)


@baseline_app.command("clip", cls=WrappedHelp)
def clip(
    data: Path = typer.Option(..., "--data", help="Track-2 folder (train/ + test/) or labels.txt + images/ (held split)."),
    out: Path = typer.Option(Path("attrret-work/clip"), "--out", help="Folder for clip.pt, submission.json, metrics.json."),
    submission: Optional[Path] = typer.Option(None, "--submission", "-o", help="Submission path (default OUT/submission.json)."),
    time_budget: Optional[float] = typer.Option(
        None, "--time-budget", help="Training wall-clock seconds (feature caching included); use the sum of the classifiers' train times."
    ),
    epochs: int = typer.Option(40, "--epochs", help="Epoch limit (whichever of epochs / time budget ends first)."),
    ema: bool = typer.Option(False, "--ema/--no-ema", help="Rank with an exponential moving average of the weights."),
    tta: Tta = typer.Option(Tta.none, "--tta", help="Test-time augmentation; flip: the mean of image and mirror embeddings."),
    kl_positives: bool = typer.Option(False, "--kl-positives/--no-kl-positives", help="KL loss: captions with equal attributes in a batch are positives."),
    pretrained: bool = typer.Option(True, "--pretrained/--random-init", help="ImageNet weights for the image tower (attrret's backbone factory) or random init."),
    text_pretrained: Optional[str] = typer.Option(None, "--text-pretrained", help="open_clip:ARCH/TAG pretrained text tower (needs a hub or local weights)."),
    image_size: int = typer.Option(192, "--image-size", help="Square input size (resize and pad); above the classifiers' 160 px default."),
    batch_size: int = typer.Option(64, "--batch-size"),
    lr: float = typer.Option(5e-4, "--lr"),
    precision: PrecisionOption = None,
    seed: int = typer.Option(0, "--seed"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default: torch's choice)."),
    schema_dir: SchemaDir = None,
) -> None:
    """Train a CLIP-style dual encoder on DATA's training split and rank its test (or held) set by cosine similarity.

    Prints the metrics JSON (config, training history, timings) on stdout.
    """
    from attrret.baseline.clip import run_clip_baseline
    from attrret.baseline.config import ClipConfig

    try:
        config = ClipConfig(
            pretrained=pretrained,
            text_pretrained=text_pretrained,
            image_size=image_size,
            batch_size=batch_size,
            lr=lr,
            epochs=epochs,
            time_budget=time_budget,
            ema=ema,
            tta_flip=tta is Tta.flip,
            kl_positives=kl_positives,
            precision=precision_value(precision),
            seed=seed,
            threads=threads,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    run = run_clip_baseline(data, out, config, submission=submission, log=_log, schema=resolve_schema(schema_dir))
    _log(f"wrote {run.submission}, {run.checkpoint}, {run.metrics_file}")
    print(json.dumps(run.metrics))


def register(app: typer.Typer) -> None:
    """Add ``attrret baseline ...`` to ``app``."""
    app.add_typer(baseline_app, name="baseline")
