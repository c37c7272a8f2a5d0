"""``attrret predict``, ``attrret rank``, ``attrret evaluate``: thin commands over attrret.retrieval."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from attrret.cli.options import PrecisionOption, SchemaDir, Tta, WrappedHelp, choice, precision_value, resolve_schema, sizes_option
from attrret.ensemble import TTA_DEFAULT
from attrret.retrieval.indexer import GATES as PREDICT_GATES
from attrret.retrieval.ranker import GATES, SCORINGS
from attrret.retrieval.topk import BACKENDS

Runtime = choice("Runtime", ("auto", "torch", "onnx"))
Scoring = choice("Scoring", SCORINGS)
KindGate = choice("KindGate", GATES)
Backend = choice("Backend", BACKENDS)
Gate = choice("Gate", PREDICT_GATES)


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def _floats(text: Optional[str], what: str) -> tuple[float, ...]:
    if not text:
        return ()
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"{what}: expected comma-separated numbers, got {text!r}") from None


def predict(
    images: Annotated[Path, typer.Option("--images", "-i", help="Gallery: an image folder, a Track-2 folder (uses <split>/<split>_images/), a labels.txt + images/ folder, a label file, or a list file (one image path per line).")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Index directory (default W/index). Re-running on a grown gallery predicts only new or changed images.")] = None,
    workdir: Annotated[Path, typer.Option("--workdir", "-w", help="Workdir with W/models/<task>/model.pt (see --img-sizes for ensembles).")] = Path("attrret-work"),
    models: Annotated[Optional[list[Path]], typer.Option("--models", "-m", help="Ensemble member: a models root (<task>/model.pt inside) or one task dir; repeat for several. Overrides --workdir.")] = None,
    img_sizes: Annotated[Optional[str], typer.Option("--img-sizes", metavar="HxW,...", help="Resolution ensemble, e.g. 256x128,320x160 (height x width; N is N x N): one member per size, found among W/models and W/*/models (train each with `attrret train --workdir W/r320 --img-size 320x160`, ...) by the input sizes in their checkpoints; with --models, keeps the members of these sizes.")] = None,
    member_weights: Annotated[Optional[str], typer.Option("--member-weights", help="Comma-separated ensemble member weights, in member order (default equal).")] = None,
    tta: Annotated[Optional[Tta], typer.Option("--tta", help=f"flip: average with the mirrored image (twice the work; on the held splits +0.02 sound mAP@10 for pedestrians, -0.01 for vehicles). Default: {TTA_DEFAULT}; with --onnx FILE, the graph's (fixed at export).", show_default=False)] = None,
    split: Annotated[str, typer.Option(help="Split of a Track-2 folder to index.")] = "test",
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    precision: PrecisionOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    shard: Annotated[Optional[str], typer.Option("--shard", metavar="I/N", help="Predict only shard I of N (0 <= I < N) into OUT.shard-I-of-N/ (or --shard-out); `attrret index merge` then writes OUT from all N, byte-identical to one run. Under torchrun, ranks shard by themselves.")] = None,
    shard_out: Annotated[Optional[Path], typer.Option("--shard-out", help="With --shard: the shard folder to write (default OUT.shard-I-of-N beside OUT).")] = None,
    schema_dir: SchemaDir = None,
    runtime: Annotated[Optional[Runtime], typer.Option("--runtime", help="auto: onnxruntime for a CPU run in precision auto or fp32 when the onnx extra is installed (faster there: bench/predict.py), else PyTorch; torch: PyTorch; onnx: onnxruntime, on --onnx FILE (a graph from attrret export onnx: its ensemble and flip TTA fixed at export, every model on every image) or, without it, on the models exported once per subject and cached (gated). Default: $ATTRRET_RUNTIME, else auto.", show_default=False)] = None,
    onnx: Annotated[Optional[Path], typer.Option("--onnx", help="With --runtime onnx: the .onnx file attrret export onnx wrote.")] = None,
    meta: Annotated[Optional[Path], typer.Option("--meta", help="Image metadata to store beside the index: a CSV or JSON-lines table with an 'image' column (the gallery path or file name) and any of camera, time (ISO 8601; without a zone: UTC) and free columns (track, frame, x, y, w, h, ...). Re-running with a changed table updates the metadata without predicting again.", rich_help_panel="Metadata")] = None,
    camera_from_folder: Annotated[bool, typer.Option("--camera-from-folder", help="Take each image's camera from its folder in a <camera>/<file> gallery (where --meta gives none).", rich_help_panel="Metadata")] = False,
    gate: Annotated[Gate, typer.Option("--gate", help="router: the router first, then each image only through its own subject's models (about half the work on a mixed gallery); none: every model on every image. Hard-gated ranking gives the same results either way.")] = Gate.router,
    time_from_exif: Annotated[bool, typer.Option("--time-from-exif", help="Take each image's time from its EXIF DateTimeOriginal (where --meta gives none).", rich_help_panel="Metadata")] = False,
) -> None:
    """Run the router and every trained task over a gallery into a memory-mappable index.

    Sharded over processes or machines: launched by torchrun, or --shard I/N + attrret index merge (docs/sharding.md).
    """
    from attrret.io import refuse_overwriting_inputs
    from attrret.retrieval import shards
    from attrret.classifiers.engine import Ensemble
    from attrret.ensemble import Predictor
    from attrret.retrieval.indexer import build_index, find_members, member_sizes

    schema = resolve_schema(schema_dir)
    out = out or workdir / "index"
    spec = shards.parse_shard(shard) if shard is not None else None
    if shard_out is not None and spec is None:
        raise typer.BadParameter("--shard-out needs --shard I/N")
    world = shards.torchrun_world()
    if spec is not None and world > 1:
        raise typer.BadParameter("--shard is for separate jobs; under torchrun the ranks shard by themselves")
    refuse_overwriting_inputs({"--out": out, "--shard-out": shard_out}, {"--images": images, "--onnx": onnx, "--meta": meta})
    from attrret.retrieval.meta import MetaSource

    meta_source = MetaSource(meta, camera_from_folder, time_from_exif)
    from attrret.export.onnx_cache import RUNTIME_ENV, cached_graphs, prefers_onnx

    if runtime is None:
        try:
            runtime = Runtime(os.environ.get(RUNTIME_ENV) or "auto")
        except ValueError:
            raise typer.BadParameter(f"${RUNTIME_ENV}={os.environ[RUNTIME_ENV]!r}: use auto, torch or onnx", param_hint="--runtime") from None
    if runtime is Runtime.onnx and world > 1:
        raise typer.BadParameter("torchrun runs the checkpoints with PyTorch; give one process the graph, or shard with --shard I/N",
                                 param_hint="--runtime onnx")
    predictor: Predictor
    if runtime is Runtime.onnx and onnx is not None:
        fixed = [flag for flag, given in (("--models", models), ("--img-sizes", img_sizes), ("--member-weights", member_weights),
                                          (f"--precision {precision_value(precision)}", precision_value(precision) not in (None, "auto", "fp32")))
                 if given]
        if fixed:
            raise typer.BadParameter(f"{', '.join(fixed)}: the graph's ensemble, flip TTA and float32 precision are fixed when it is exported; "
                                     "give them to attrret export onnx instead", param_hint="--runtime onnx")
        from attrret.export.onnx_runtime import open_graph

        graph = open_graph(onnx, device, schema)
        if tta is not None and tta.value != graph.info.tta:
            raise typer.BadParameter(f"the graph was exported with --tta {graph.info.tta}; its TTA is fixed at export "
                                     f"(attrret export onnx --tta {tta.value})", param_hint="--tta")
        _err(f"graph {onnx}: {len(graph.info.columns)} tasks, inputs {', '.join(i.name for i in graph.info.inputs)}, "
             f"onnxruntime on {graph.providers[0]}")
        predictor = graph
    else:
        if onnx is not None:
            raise typer.BadParameter("--onnx is read only with --runtime onnx", param_hint="--onnx")
        members = find_members(None if models else workdir, models or (), sizes_option(img_sizes, "--img-sizes") if img_sizes else (),
                               _floats(member_weights, "--member-weights"), schema=schema)
        for i, m in enumerate(members if os.environ.get("RANK", "0") == "0" else ()):  # torchrun: rank 0 says it once
            gated = f", weighed per image by its domain gate {m.domain_gate}" if m.domain_gate else ""
            _err(f"member {i}: {m.label} ({len(m.task_dirs)} tasks, input {member_sizes(m)}, weight {m.weight:g}{gated})")
        tta_mode = (tta or Tta(TTA_DEFAULT)).value
        if runtime is Runtime.auto and world == 1 and prefers_onnx(device, precision_value(precision)):
            _err("runtime: onnxruntime, float32 (faster than PyTorch on the CPU: bench/predict.py; --runtime torch for PyTorch)")
            runtime = Runtime.onnx
        requested = precision_value(precision)
        if runtime is Runtime.onnx and requested in (None, "auto"):
            requested = "fp32"  # the graphs are float32
        ensemble = Ensemble.open(members, tta=tta_mode, device=device, precision=requested)
        predictor = ensemble
        if runtime is Runtime.onnx:
            if ensemble.precision != "fp32":
                raise typer.BadParameter(f"onnxruntime runs the exported graphs in float32, not {ensemble.precision}",
                                         param_hint="--precision")
            predictor = cached_graphs(ensemble, schema, log=_err)
    settings = dict(split=split, batch_size=batch_size, progress=not quiet, schema=schema, meta=meta_source, gate=gate.value)
    if spec is not None:
        where, part = shards.build_shard(images, out, predictor, spec, shard_out=shard_out, **settings)
        typer.echo(f"{where}: shard {spec} of {out}: {len(part.names)} images ({part.predicted} predicted)")
        return
    s = shards.build_index_distributed(images, out, predictor, **settings) if world > 1 else build_index(images, out, predictor, **settings)
    if s is None:  # a torchrun rank other than 0: rank 0 reports
        return
    typer.echo(f"{s.path}: {s.total} images ({s.predicted} predicted, {s.reused} reused, {s.removed} removed), "
               f"precision {s.precision}, tasks: {', '.join(s.tasks)}")


def rank(
    queries: Annotated[Path, typer.Option("--queries", "-Q", help="test_text.txt (one caption per line) or a label file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Submission JSON (Track-2 format, query order kept).")],
    index: Annotated[Path, typer.Option("--index", help="Index directory from attrret predict.")] = Path("attrret-work/index"),
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="Results per query.")] = 10,
    scoring: Annotated[Scoring, typer.Option(help="euclidean: the published keyword distance; linear: the reference code's variant; loglik: minus the log-probability of the stated classes.")] = Scoring.euclidean,
    use_implied: Annotated[bool, typer.Option("--use-implied/--stated-only", help="Also enforce values the Track-2 grammar implies.")] = False,
    hidden_priors: Annotated[bool, typer.Option("--hidden-priors/--no-hidden-priors", help="Soft targets for groups the caption hides, learned from training labels.")] = False,
    priors_from: Annotated[Optional[Path], typer.Option(help="Training labels for --hidden-priors (default: the data the index's pedestrian models were trained on).")] = None,
    priors_holdout: Annotated[int, typer.Option(min=0, help="With --priors-from: leave out the fixed holdout_split(N, seed 0).")] = 0,
    kind_gate: Annotated[KindGate, typer.Option(help="hard: rank only images the router calls the query's kind; soft: add --kind-penalty x P(other kind).")] = KindGate.hard,
    kind_penalty: Annotated[float, typer.Option(min=0.0)] = 1.0,
    backend: Annotated[Backend, typer.Option(help="numba: fused sparse product + top-k scan, fastest on CPUs; torch: blocked matmul; numpy: BLAS tiles (no numba or torch); results are identical on every backend.")] = Backend.numba,
    explain: Annotated[Optional[Path], typer.Option("--explain", help="JSONL: per query and result, matched / conflicted / unknown groups.")] = None,
    schema_dir: SchemaDir = None,
) -> None:
    """Rank the gallery for every caption and write the Track-2 submission."""
    from attrret.data.track2 import write_submission
    from attrret.io import refuse_overwriting_inputs
    from attrret.retrieval.indexer import check_fresh
    from attrret.retrieval.index import open_index
    from attrret.retrieval.submission import priors_for_index, priors_from_data, rank_captions, read_queries, write_explain
    from attrret.retrieval.ranker import RankOptions

    try:
        options = RankOptions(k=k, scoring=scoring.value, use_implied=use_implied, gate=kind_gate.value, penalty=kind_penalty,
                              backend=backend.value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    refuse_overwriting_inputs({"--out": out, "--explain": explain},
                              {"--queries": queries, "--index": index, "--index header": index / "header.json",
                               "--priors-from": priors_from})
    schema = resolve_schema(schema_dir)
    idx = open_index(index, schema)
    check_fresh(idx)
    texts = read_queries(queries, schema)
    priors = None
    if hidden_priors:
        priors = priors_from_data(priors_from, priors_holdout, schema) if priors_from else priors_for_index(idx, schema)
    run = rank_captions(idx, texts, options, priors, schema)
    for w in run.ranking.warnings:
        _err(f"attrret: warning: {w}")
    _warn_queries(queries, run)
    write_submission(out, run.results)
    if explain:
        write_explain(explain, idx, run)
    _err(f"ranked {len(texts)} queries over {len(idx)} images -> {out}")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _warn_queries(queries: Path, run, limit: int = 10) -> None:
    """At most one warning per query (file:line, caption), in file order
    (:func:`attrret.retrieval.submission.query_warnings`); of the queries the ranker could not
    use, the first ``limit`` (the summary warnings only count those)."""
    from attrret.retrieval.submission import query_warnings

    unanswered = 0
    for j, (p, q) in enumerate(zip(run.ranking.plans, run.queries)):
        unusable = p.kind is None or not p.scored
        if unusable:
            unanswered += 1
            if unanswered > limit:
                continue
        parts = query_warnings(p, q, missing=False)
        if unusable:
            parts.append("kept in the submission with no results")
        if parts:
            _err(f"attrret: warning: {queries}:{j + 1}: {_shown(run.texts[j])}: {'; '.join(parts)}")
    if unanswered > limit:
        _err(f"attrret: warning: ... and {unanswered - limit} more such queries")


def evaluate(
    submission: Annotated[Path, typer.Option("--submission", "-s", help="Submission JSON.")],
    gt: Annotated[Optional[Path], typer.Option("--gt", help="Organisers' test_gt.txt (text$img1$img2...).")] = None,
    labels: Annotated[Optional[Path], typer.Option("--labels", help="Complete test_label.txt (line j = caption j's image); relevance by the Track-2 rules.")] = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    schema_dir: SchemaDir = None,
) -> None:
    """Official mAP@10 (organisers' formula), sound mAP@10, R@1/5/10, per kind and overall."""
    from attrret.retrieval.evaluate import evaluate_submission

    if (gt is None) == (labels is None):
        raise typer.BadParameter("give exactly one of --gt or --labels")
    scores = evaluate_submission(submission, gt=gt, labels=labels, k=k, schema=resolve_schema(schema_dir))
    if as_json:
        typer.echo(json.dumps({name: s.to_json() for name, s in scores.items()}, indent=1))
        return
    typer.echo(f"| queries | n | official mAP@{k} | sound mAP@{k} | R@1 | R@5 | R@10 |")
    typer.echo("|---|---:|---:|---:|---:|---:|---:|")
    for name, s in scores.items():
        typer.echo(f"| {name} | {s.n} | {s.official_map:.4f} | {s.sound_map:.4f} | {s.recall[1]:.4f} | {s.recall[5]:.4f} | {s.recall[10]:.4f} |")


def register(app: typer.Typer) -> None:
    """Add ``predict``, ``rank`` and ``evaluate`` to the app."""
    app.command("predict", cls=WrappedHelp)(predict)
    app.command("rank", cls=WrappedHelp)(rank)
    app.command("evaluate", cls=WrappedHelp)(evaluate)
