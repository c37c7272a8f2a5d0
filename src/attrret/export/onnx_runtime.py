"""An exported graph (:mod:`attrret.export.onnx`) run by onnxruntime: ``attrret predict --runtime onnx``.

:class:`OnnxGraph` is an :class:`attrret.ensemble.Predictor`, as a PyTorch
:class:`attrret.ensemble.Ensemble` is: build_index runs either the same way. Its ensemble, TTA
and float32 precision are fixed at export, and it runs every model on every image (no gate).

The images go through :func:`attrret.classifiers.preprocess.load_batch`, the one preprocessing
path, once per graph input (each with the size, mean, std and crop its metadata names); the
graph does the rest. What the index header records is the graph file (path and sha256, so
``check_fresh`` refuses an index whose graph was re-exported) and, per task, the checkpoint
hashes the graph was built from (its metadata), so the incremental rules of
:mod:`attrret.retrieval.indexer` hold: a row is reused only under the same graph.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attrret.ensemble import check_columns
from attrret.errors import AttrretError, CheckpointError, InputError
from attrret.export.onnx import GraphInfo, require
from attrret.schema import Schema

__all__ = ["OnnxGraph", "open_graph", "graph_probs", "graph_model_entries", "providers_for"]

RUNTIME = "onnxruntime"


@dataclass(frozen=True)
class OnnxGraph:
    """An opened graph: its file, content hash, metadata and onnxruntime session; a
    :class:`attrret.ensemble.Predictor`."""

    path: Path
    sha256: str
    info: GraphInfo
    session: Any
    providers: tuple[str, ...]

    precision = "fp32"  # exported in float32
    gates = False  # one graph runs every model it holds

    @property
    def tta(self) -> str:
        return self.info.tta

    @property
    def weights(self) -> tuple[float, ...]:
        return self.info.weights

    def entries(self, out: Path, schema: Schema) -> list[dict]:
        return graph_model_entries(self, out)

    def probs(self, paths: Sequence[Path], schema: Schema, *, columns: Mapping[str, tuple[int, int]], gate: bool = False,
              batch_size: int = 64, progress: bool = True) -> np.ndarray:
        if gate:
            raise ValueError("an exported graph runs every model it holds; it cannot gate")
        check_columns(self.info.columns, columns, str(self.path))
        return graph_probs(self, paths, batch_size=batch_size, progress=progress)


def providers_for(device: str, available: Sequence[str]) -> list:
    """onnxruntime execution providers for ``--device``: ``auto`` takes CUDA when this onnxruntime
    has it, ``cuda`` / ``cuda:N`` require it, ``cpu`` never uses it."""
    cuda = "CUDAExecutionProvider" in available
    if device == "auto":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
    if device == "cpu":
        return ["CPUExecutionProvider"]
    kind, _, index = device.partition(":")
    if kind == "cuda" and (index == "" or index.isdigit()):
        if not cuda:
            raise AttrretError(f"--device {device}: this onnxruntime has no CUDA provider (it has {', '.join(available)}); "
                               "use --device cpu or auto, or install onnxruntime-gpu")
        return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"]
    raise AttrretError(f"unsupported device {device!r} for --runtime onnx; use auto, cpu, cuda or cuda:N")


def open_graph(path: str | Path, device: str = "auto", schema: Schema | None = None) -> OnnxGraph:
    """Open an attrret ONNX export, checking it fits the current schema and says what it computes.

    A missing file, a file that is not ONNX, or an ONNX model attrret did not export is an
    :class:`InputError` naming the file; a graph exported under another schema a
    :class:`CheckpointError`.
    """
    from attrret.ensemble import task_columns
    from attrret.schema import load_schema

    path = Path(path)
    if not path.is_file():
        raise InputError("no such ONNX file" if not path.exists() else "not a file", path)
    ort = require("onnxruntime")
    providers = providers_for(device, ort.get_available_providers())
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings are about graph optimisations, not the user's input
    # One read: the session and the hash the index records come from the same bytes, so a graph
    # re-exported while this opens it cannot be recorded beside rows the old graph computed.
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read it ({exc.strerror or exc})", path) from None
    sha256 = hashlib.sha256(blob).hexdigest()
    try:
        session = ort.InferenceSession(blob, options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own pybind classes for a bad file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"not an ONNX model onnxruntime can load ({first[:200]})", path) from None
    info = GraphInfo.from_metadata(session.get_modelmeta().custom_metadata_map, str(path))
    schema = schema or load_schema()
    if info.schema != schema.fingerprint:
        raise CheckpointError(f"{path}: exported under schema {info.schema}, the schema in use is {schema.fingerprint} "
                              f"({schema.source}); retrain and re-export (attrret export onnx), or select the schema it was "
                              "exported under (--schema DIR / ATTRRET_SCHEMA)")
    unknown = [t for t in info.columns if t not in {g.task for g in schema.tasks}]
    if unknown or info.columns != task_columns(list(info.columns), schema) or any(
            info.classes.get(t) != schema.task(t).classes for t in info.columns):
        raise CheckpointError(f"{path}: its columns or classes are not the current schema's; re-export it (attrret export onnx)")
    names = [i.name for i in session.get_inputs()]
    if names != [i.name for i in info.inputs] or [o.name for o in session.get_outputs()] != ["probs"]:
        raise InputError(f"damaged attrret export: graph inputs {names} disagree with its metadata", path)
    return OnnxGraph(path, sha256, info, session, tuple(session.get_providers()))


def graph_probs(graph: OnnxGraph, paths: Sequence[Path], *, batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """Float32 ``(len(paths), width)`` probabilities in the graph's column order.

    Refuses non-finite probabilities, as :meth:`attrret.classifiers.engine.Engine.predict` does."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from attrret.classifiers.preprocess import load_batch

    info = graph.info
    out = np.zeros((len(paths), info.width), np.float32)
    pres = [(i.name, i.preprocess(), i.crop) for i in info.inputs]
    console = Console(stderr=True, quiet=not progress)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, disable=not progress) as prog:
        bar = prog.add_task(f"predict {len(info.columns)} task(s) with onnxruntime", total=len(paths))
        for s in range(0, len(paths), batch_size):
            chunk = list(paths[s : s + batch_size])
            feeds = {name: load_batch(chunk, pre, crop).numpy() for name, pre, crop in pres}
            out[s : s + len(chunk)] = graph.session.run(["probs"], feeds)[0]
            prog.update(bar, advance=len(chunk))
    bad = [t for t, (a, b) in info.columns.items() if not np.isfinite(out[:, a:b]).all()]
    if bad:
        raise CheckpointError(f"{graph.path}: gives non-finite probabilities for {', '.join(bad)}; retrain and re-export")
    return out


def graph_model_entries(graph: OnnxGraph, out: Path) -> list[dict]:
    """Index header ``models`` entries: one per checkpoint in the graph, each naming the graph file
    (``path``, ``relpath``, ``sha256`` -- what :func:`check_fresh` checks) and the checkpoint it was
    built from (``checkpoint_sha256``)."""
    path = graph.path.resolve()
    rows = []
    for m in graph.info.models:
        rows.append({
            "member": m.get("member"), "task": m.get("task"), "path": str(path), "relpath": os.path.relpath(path, out.resolve()),
            "sha256": graph.sha256, "checkpoint_sha256": m.get("sha256"), "img_size": m.get("img_size"),
            "backbone": m.get("backbone", ""), "weight": m.get("weight"), "temperature": m.get("temperature", 1.0),
            "train_data": m.get("train_data"), "holdout": m.get("holdout", 0), "runtime": RUNTIME,
        })
    return rows
