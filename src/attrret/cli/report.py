"""``attrret report``: write the self-contained HTML retrieval report of a submission."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from attrret.cli.options import SchemaDir, WrappedHelp, resolve_schema


def register(app: typer.Typer) -> None:
    """Add ``report`` to ``app``."""
    app.command("report", cls=WrappedHelp)(report)


def report(
    submission: Annotated[Path, typer.Option("--submission", "-s", help="Track-2 submission JSON to report on.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write (atomically).")],
    labels: Annotated[
        Optional[Path], typer.Option("--labels", "-l", help="Track-2 label file of the gallery (relevance, agreement, accuracy).")
    ] = None,
    gt: Annotated[Optional[Path], typer.Option("--gt", help="Organisers' ground truth text$img1$img2... (relevance).")] = None,
    images: Annotated[
        Optional[Path], typer.Option("--images", help="Thumbnail folder (default: the *_images folder beside the labels or gt file).")
    ] = None,
    index: Annotated[
        Optional[Path], typer.Option("--index", help="Probability index from `attrret predict` (per-attribute accuracy).")
    ] = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="Results shown and scored per query.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead of text.")] = False,
    schema_dir: SchemaDir = None,
) -> None:
    """Write one HTML page (thumbnails inlined, works offline): metrics, each query's parsed
    caption and top-K thumbnails with agreement badges and right/wrong marks, per-attribute
    accuracy and confusion."""
    from attrret.io import refuse_overwriting_inputs
    from attrret.report import build_report

    schema = resolve_schema(schema_dir)
    refuse_overwriting_inputs({"--out": out}, {"--submission": submission, "--labels": labels, "--gt": gt,
                                               "--images": images, "--index": index})

    summary = build_report(
        submission,
        out,
        labels=labels,
        gt=gt,
        images=images,
        index=index,
        k=k,
        schema=schema,
        progress=lambda msg: print(f"attrret report: {msg}", file=sys.stderr),
    )
    if summary.missing_images:
        shown = ", ".join(summary.missing_images[:5]) + (", ..." if len(summary.missing_images) > 5 else "")
        print(f"attrret report: warning: {len(summary.missing_images)} images without a thumbnail: {shown}", file=sys.stderr)
    if as_json:
        print(json.dumps(summary.to_json()))
        return
    print(f"wrote {summary.out} ({summary.bytes / 1e6:.1f} MB, {summary.queries} queries, {summary.images} images)")
    for kind, scores in (summary.metrics or {}).items():
        print(f"{kind}: official mAP@10 {scores['official_map@10']:.4f}, sound mAP@10 {scores['sound_map@10']:.4f}")
