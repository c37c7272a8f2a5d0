"""onnxruntime as predict's speed path on float32 CPUs: the ensemble exported once, per subject, and cached.

Why. On the CPU, onnxruntime runs attrret's gated graphs in float32 faster than PyTorch runs
its gated engine, on both kinds of host (``python -m bench predict``, docs/benchmarks.md, 1,024
real images on a 2-core AVX-512 BF16 EPYC): about 2x PyTorch's float32 (what a host without
bf16 runs) and 1.15-1.3x PyTorch's bf16 autocast. So ``attrret predict --runtime auto`` (the
default) takes this path for a CPU run whose precision is ``auto`` or ``fp32`` when the ONNX
packages are installed (:func:`prefers_onnx`), and PyTorch for GPUs and for a precision asked
for explicitly (``--precision bf16``). The rows are float32 ones, the PyTorch models' within
the export check's tolerance (:data:`attrret.export.onnx.CHECK_TOLERANCE`); the header records
``runtime: onnxruntime`` in each model entry, so an index never mixes rows of two runtimes.

Router gating keeps working: the ensemble is exported as up to three graphs -- the router, the
pedestrian tasks and the vehicle tasks, each :func:`attrret.export.onnx.export_onnx` of the
members restricted to those tasks -- and :class:`CachedGraphs` runs the router on every image,
then each image through its own subject's graph only, filling the other subject's columns with
the uniform distribution, as :meth:`attrret.classifiers.engine.Engine.gated` does.

The cache: ``<cache>/onnx/<key>/<part>.onnx``, ``<cache>`` being ``$ATTRRET_CACHE``, else
``$XDG_CACHE_HOME/attrret``, else ``~/.cache/attrret``. The key hashes what the graphs compute
(each checkpoint's SHA-256, member and weight, the TTA, the schema, the export format and
opset), so a retrained model is exported afresh and an unchanged one never again. Exports are
written atomically under a lock (two predicts export once); a cached graph that no longer
opens is exported again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from attrret.classifiers.engine import Ensemble
from attrret.ensemble import Member, check_columns, task_columns
from attrret.errors import CheckpointError, InputError
from attrret.locks import LOCK_PREFIX, file_lock
from attrret.schema import SUBJECTS, Schema

if TYPE_CHECKING:
    from attrret.export.onnx_runtime import OnnxGraph

__all__ = ["CachedGraphs", "cached_graphs", "prefers_onnx", "onnx_installed", "default_cache_dir", "RUNTIME_ENV"]

#: Pins ``--runtime``'s default (``auto``, ``torch`` or ``onnx``) for a shell or a test run.
RUNTIME_ENV = "ATTRRET_RUNTIME"
_PACKAGES = ("onnx", "onnxscript", "onnxruntime")  # export needs the first two, running the third


def default_cache_dir() -> Path:
    """Where exported graphs are cached (module doc)."""
    if os.environ.get("ATTRRET_CACHE"):
        return Path(os.environ["ATTRRET_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "attrret"


def onnx_installed() -> bool:
    """Whether this environment can export and run graphs (``pip install attrret[onnx]``)."""
    return all(importlib.util.find_spec(p) is not None for p in _PACKAGES)


def prefers_onnx(device: str, precision: str | None) -> bool:
    """``--runtime auto``'s rule (module doc: the measurement behind it): onnxruntime for a CPU
    run whose requested precision (None: ``$ATTRRET_PRECISION``, else ``auto``) is ``auto`` or
    ``fp32``, when it is installed; PyTorch for GPUs and for bf16 / fp16 asked for explicitly."""
    from attrret.classifiers.runtime import resolve_device
    from attrret.precisions import PRECISION_ENV

    requested = precision or os.environ.get(PRECISION_ENV) or "auto"
    return requested in ("auto", "fp32") and resolve_device(device).type == "cpu" and onnx_installed()


@dataclass(frozen=True)
class CachedGraphs:
    """An :class:`Ensemble` run by onnxruntime from its cached per-subject graphs: a
    :class:`attrret.ensemble.Predictor` that gates (module doc)."""

    ensemble: Ensemble
    parts: Mapping[str, OnnxGraph]  # "router" | subject -> its graph
    router: str  # the router's task

    precision = "fp32"
    gates = True

    @property
    def tta(self) -> str:
        return self.ensemble.tta

    @property
    def weights(self) -> tuple[float, ...]:
        return self.ensemble.weights

    def entries(self, out: Path, schema: Schema) -> list[dict]:
        from attrret.export.onnx_runtime import RUNTIME

        return [{**e, "runtime": RUNTIME} for e in self.ensemble.entries(out, schema)]

    def probs(self, paths: Sequence[Path], schema: Schema, *, columns: Mapping[str, tuple[int, int]], gate: bool = False,
              batch_size: int = 64, progress: bool = True) -> np.ndarray:
        mine = task_columns([t for g in self.parts.values() for t in g.info.columns], schema)
        check_columns(mine, columns)
        paths = list(paths)
        out = np.empty((len(paths), max((b for _, b in mine.values()), default=0)), np.float32)
        for a, b in mine.values():
            out[:, a:b] = 1.0 / (b - a)  # the other subject's columns of a gated row: the uniform distribution
        rows = {part: np.arange(len(paths)) for part in self.parts}
        if gate and "router" in self.parts and len(self.parts) > 1:
            self._fill(out, mine, "router", paths, rows["router"], batch_size, progress)
            a, b = mine[self.router]
            kinds = out[:, a:b].argmax(1)
            rows = {part: np.flatnonzero(kinds == SUBJECTS.index(part)) for part in self.parts if part != "router"}
        for part, idx in rows.items():
            self._fill(out, mine, part, paths, idx, batch_size, progress)
        return out

    def _fill(self, out: np.ndarray, columns: Mapping[str, tuple[int, int]], part: str, paths: list[Path], rows: np.ndarray,
              batch_size: int, progress: bool) -> None:
        """Part ``part``'s graph on ``rows`` of ``paths``, into its tasks' columns of ``out``."""
        if not len(rows):
            return
        from attrret.export.onnx_runtime import graph_probs

        graph = self.parts[part]
        got = graph_probs(graph, [paths[i] for i in rows], batch_size=batch_size, progress=progress)
        for task, (a, b) in graph.info.columns.items():
            c0, c1 = columns[task]
            out[rows, c0:c1] = got[:, a:b]


def _part_of(task: str, router: str) -> str:
    return "router" if task == router else task.split(".", 1)[0]


def cached_graphs(ensemble: Ensemble, schema: Schema, *, cache_dir: str | Path | None = None,
                  log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> CachedGraphs:
    """``ensemble``'s per-subject graphs, exported into the cache on first use (module doc) and
    opened with onnxruntime on the ensemble's device."""
    from attrret.export.onnx import FORMAT, OPSET, export_onnx, require
    from attrret.export.onnx_runtime import open_graph

    for module in _PACKAGES:  # one clear error, before any work
        require(module)
    entries = ensemble.entries(Path.cwd(), schema)
    blob = json.dumps({"format": FORMAT, "opset": OPSET, "schema": schema.fingerprint, "tta": ensemble.tta,
                       "models": [[e["member"], e["task"], e["sha256"], e["weight"], *([e["domain_gate"]["sha256"]] if "domain_gate" in e else [])]
                                  for e in entries]}, sort_keys=True)
    folder = Path(cache_dir or default_cache_dir()) / "onnx" / hashlib.sha256(blob.encode()).hexdigest()[:24]
    router = schema.router.task
    members: dict[str, list[Member]] = {}
    tasks = iter([e["task"] for e in entries])  # one entry per task dir, members and dirs in order (model_entries)
    for m in ensemble.members:
        dirs: dict[str, list[Path]] = {}
        for d in m.task_dirs:
            dirs.setdefault(_part_of(next(tasks), router), []).append(Path(d))
        for part, ds in dirs.items():
            members.setdefault(part, []).append(dataclasses.replace(m, task_dirs=tuple(ds)))
    order = ["router", *SUBJECTS]
    parts = {}
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / f"{LOCK_PREFIX}export.lock", waiting=f"waiting for another export into {folder}", log=log):
        for part in sorted(members, key=order.index):
            path = folder / f"{part}.onnx"
            if path.is_file():
                try:
                    parts[part] = open_graph(path, ensemble.device, schema)
                    continue
                except (InputError, CheckpointError) as exc:
                    log(f"cached graph {path} does not open ({exc}); exporting it again")
                    path.unlink()
            log(f"exporting the {part} models for onnxruntime into {folder} (once: later runs reuse it) ...")
            export_onnx(members[part], path, log=lambda s: None, schema=schema, precision="fp32", tta_flip=ensemble.tta == "flip")
            parts[part] = open_graph(path, ensemble.device, schema)
    return CachedGraphs(ensemble, parts, router)
