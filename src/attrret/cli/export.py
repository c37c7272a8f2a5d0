"""``attrret export onnx``: the trained models as one ONNX graph (a thin command over attrret.export.onnx)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from attrret.cli.options import PrecisionChoice, SchemaDir, Tta, WrappedHelp, precision_value, resolve_schema, sizes_option
from attrret.ensemble import TTA_DEFAULT
from attrret.precisions import PRECISION_ENV

export_app = typer.Typer(name="export", help="Export the trained models for other runtimes (ONNX).", no_args_is_help=True)


@export_app.command("onnx", cls=WrappedHelp)
def onnx(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The .onnx file to write (default W/attrret.onnx); an existing one is replaced only with --force, and only if attrret exported it.")] = None,
    workdir: Annotated[Path, typer.Option("--workdir", "-w", help="Workdir with W/models/<task>/model.pt (see --img-sizes for ensembles).")] = Path("attrret-work"),
    models: Annotated[Optional[list[Path]], typer.Option("--models", "-m", help="Ensemble member: a models root (<task>/model.pt inside) or one task dir; repeat for several. Overrides --workdir.")] = None,
    img_sizes: Annotated[Optional[str], typer.Option("--img-sizes", metavar="HxW,...", help="Resolution ensemble, as attrret predict --img-sizes: one member per size among W/models and W/*/models.")] = None,
    member_weights: Annotated[Optional[str], typer.Option("--member-weights", help="Comma-separated ensemble member weights, in member order (default equal).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file that an earlier attrret export wrote.")] = False,
    tta: Annotated[Tta, typer.Option("--tta", help="flip: the graph averages each image with its mirror (attrret predict --tta flip); fixed in the graph.")] = Tta(TTA_DEFAULT),
    precision: Annotated[Optional[PrecisionChoice], typer.Option(  # type: ignore[valid-type]
        "--precision", envvar=PRECISION_ENV, show_envvar=True, show_default=False, case_sensitive=False,
        help="The graph is float32 whatever this says. It is checked against the PyTorch models run in this precision: "
             "fp32 (default) within 1e-4; bf16, fp16 or auto (what attrret predict runs here) within predict's "
             "bf16/fp32 tolerance (docs/precision.md).")] = None,
    schema_dir: SchemaDir = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
) -> None:
    """Export every trained task (router included) as ONE ONNX graph: preprocessed images in, the index's probability columns out (flip TTA and the ensemble inside). See docs/onnx.md."""
    from attrret.cli.retrieval import _floats
    from attrret.export.onnx import export_onnx
    from attrret.io import refuse_overwriting_inputs
    from attrret.retrieval.indexer import find_members, member_sizes

    def log(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr)

    schema = resolve_schema(schema_dir)
    out = out or workdir / "attrret.onnx"
    members = find_members(None if models else workdir, models or (), sizes_option(img_sizes, "--img-sizes") if img_sizes else (),
                           _floats(member_weights, "--member-weights"), schema=schema)
    refuse_overwriting_inputs({"--out": out}, {f"{m.label} ({d.name})": d / "model.pt" for m in members for d in m.task_dirs})
    for i, m in enumerate(members):
        log(f"member {i}: {m.label} ({len(m.task_dirs)} tasks, input {member_sizes(m)}, weight {m.weight:g})")
    s = export_onnx(members, out, force=force, log=log, schema=schema, precision=precision_value(precision) or "fp32",
                    tta_flip=tta is Tta.flip)
    inputs = ", ".join(f"{i.name} [N,3,{i.height},{i.width}]" for i in s.info.inputs)
    typer.echo(f"{s.path}: {s.bytes / 2**20:.1f} MiB, opset {s.info.opset}, inputs {inputs}, output probs [N,{s.info.width}] "
               f"({len(s.info.columns)} tasks), sha256 {s.sha256[:16]}, max |onnxruntime - torch| {s.max_diff:.1e}")


def register(app: typer.Typer) -> None:
    """Add ``attrret export ...`` to ``app``."""
    app.add_typer(export_app, name="export")
