"""``attrret export onnx``: the whole predict step as ONE ONNX graph, for runtimes without PyTorch.

The graph is the predict engine itself (:class:`attrret.classifiers.engine.Engine`, ungated:
every task of every ensemble member, router included, on every image), exported: preprocessed
images -> the index's probability row, the columns in the index's order. It is the same module
``attrret predict`` runs, so the two agree by construction (the engine's module doc says what
it computes: shared fronts (on the image and, with ``--tta flip``, its mirror), each task's
tail and head, softmax at the task's temperature, the flip mean, the weighted ensemble mean).
The export check below still compares them.

Inputs. Resizing and decoding stay outside the graph (ONNX has no JPEG decoder, and PIL's
resampling is what the models were trained on). One graph input per distinct preprocessing
(size ``H x W``, mean, std, crop): ``images`` when every task shares one, else
``images_<H>x<W>`` (``_<crop>`` added for a crop other than ``full``; ``_<k>`` when two still
share a name). Each is ``float32[batch, 3, H, W]``; every input gets the same images, in the same
order. The output ``probs`` is ``float32[batch, width]``.

Metadata (``metadata_props``, JSON values) says how to make each input (``attrret.preprocess.
<input>``) and what the columns are; :class:`GraphInfo` reads and writes it. docs/onnx.md is the
user's description of all this.

Exporter: ``torch.onnx.export(dynamo=True)``, torch 2.13's default (torch.export + onnxscript;
the TorchScript exporter it replaces is deprecated), at :data:`OPSET`, the lowest opset it
implements. The graph is checked against the PyTorch models with onnxruntime before it is
written (atomically, one self-contained file).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Literal

import numpy as np
import torch

from pydantic import Field, StringConstraints, model_validator

from attrret.classifiers.engine import Engine
from attrret.classifiers.runtime import Precision
from attrret.ensemble import TTA_DEFAULT, TTA_MODES, model_entries
from attrret.errors import AttrretError, CheckpointError, InputError
from attrret.geometry import CROPS, hw_label
from attrret.precisions import MIXED_TOLERANCE
from attrret.schema import Schema
from attrret.validation import Count, Finite, Name, Pixels, PositiveFinite, Record, Span, UniqueNames, load

__all__ = ["OPSET", "FORMAT", "PAD_RGB", "GraphInput", "GraphInfo", "ExportSummary", "require", "export_onnx",
           "is_attrret_graph"]

#: The ONNX opset of exported graphs: the lowest torch 2.13's (dynamo) exporter implements, so
#: the widest range of runtimes (onnxruntime >= 1.14) reads them.
OPSET = 18
FORMAT = "attrret-onnx/1"
#: Padding colour of the resize-pad (attrret.data.images.resize_pad), written to the metadata.
PAD_RGB = (128, 128, 128)
#: Largest |difference| between the graph in onnxruntime and the PyTorch models on the export
#: check; fp32 rounding is about 1e-6, so more means the exporter changed the maths.
CHECK_TOLERANCE = 1e-4

_KEY = "attrret."
_RESIZE = ("keep the aspect: scale = min(W / w, H / h), resize to (round(w * scale), round(h * scale)) (at least 1) "
           "with PIL's BILINEAR filter and reducing_gap=2.0, paste centred at ((W - new_w) // 2, (H - new_h) // 2) "
           "on an H x W canvas of pad_rgb")


def require(module: str) -> ModuleType:
    """Import an optional ONNX dependency, or one clear error saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise AttrretError(f'{module} is not installed; install the ONNX extra: pip install "attrret[onnx]"') from None


@dataclass(frozen=True)
class GraphInput:
    """One graph input: its name and how an image becomes it (``attrret.classifiers.preprocess.load_batch``)."""

    name: str
    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop: str = "full"

    @property
    def hw(self) -> tuple[int, int]:
        return (self.height, self.width)

    def preprocess(self):
        """The :class:`attrret.classifiers.backbones.Preprocess` that ``load_batch`` takes."""
        from attrret.geometry import Preprocess

        return Preprocess(self.height, self.width, self.mean, self.std)

    def to_json(self) -> dict:
        top, bottom = CROPS[self.crop]
        return {"input": self.name, "layout": "NCHW", "dtype": "float32", "channels": "RGB",
                "height": self.height, "width": self.width, "crop": self.crop, "crop_band": [top, bottom],
                "resize": _RESIZE, "pad_rgb": list(PAD_RGB), "scale": 1 / 255,
                "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_record(cls, r: InputRecord) -> GraphInput:
        return cls(r.input, r.height, r.width, tuple(r.mean), tuple(r.std), r.crop)


class InputRecord(Record):
    """``attrret.preprocess.<input>``: how an image becomes one graph input (its size allocates
    the batches, so it is bounded: at most MAX_INPUT_SIDE pixels a side)."""

    input: Name
    height: Pixels
    width: Pixels
    mean: Annotated[list[Finite], Field(min_length=3, max_length=3)]
    std: Annotated[list[PositiveFinite], Field(min_length=3, max_length=3)]
    crop: Literal[*CROPS] = "full"


class GraphGate(Record):
    """The domain gate of a checkpoint's member (:mod:`attrret.classifiers.domain`), by content hash."""

    sha256: Name


class GraphModel(Record):
    """One checkpoint an export was built from (the index header's ``models`` entries come from these)."""

    task: Name
    sha256: Name
    member: Count | None = None
    weight: Finite | None = None
    domain_gate: GraphGate | None = None


class GraphMetadata(Record):
    """The ``attrret.*`` metadata an export writes (:meth:`GraphInfo.to_metadata`), its JSON
    values parsed. Every list a reader sizes or indexes from is bounded and non-empty."""

    format: Literal[FORMAT]
    opset: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}$")]
    schema_fingerprint: Name = Field(alias="schema")
    tta: Literal[*TTA_MODES]
    inputs: Annotated[UniqueNames, Field(min_length=1, max_length=64)]
    preprocess: dict[str, InputRecord]
    columns: Annotated[dict[Name, Span], Field(min_length=1)]
    classes: dict[Name, UniqueNames]
    models: Annotated[list[GraphModel], Field(min_length=1)]
    weights: Annotated[list[Finite], Field(min_length=1)]

    @model_validator(mode="after")
    def _inputs_described(self) -> GraphMetadata:
        if sorted(self.preprocess) != sorted(self.inputs) or any(self.preprocess[n].input != n for n in self.inputs):
            raise ValueError(f"input names {self.inputs} disagree with their preprocessing entries {sorted(self.preprocess)}")
        return self

    @classmethod
    def from_props(cls, props: Mapping[str, str], where: str) -> GraphMetadata:
        """Read ``metadata_props`` (``attrret.<field>``, JSON where structured; ``attrret.preprocess.<input>``
        one per input); anything else is one :class:`InputError` naming ``where`` and the field."""
        fields: dict[str, object] = {"preprocess": {}}
        for key, text in props.items():
            if not key.startswith(_KEY):
                continue
            key = key.removeprefix(_KEY)
            value: object = text
            if key in _JSON_FIELDS or key.startswith("preprocess."):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError:
                    pass  # the text itself then fails its field's type, with the field named
            if key.startswith("preprocess."):
                fields["preprocess"][key.removeprefix("preprocess.")] = value  # type: ignore[index]
            else:
                fields[key] = value
        return load(cls, fields, "damaged attrret metadata", "re-export it (attrret export onnx)",
                    error=lambda message: InputError(message, where))


_JSON_FIELDS = frozenset({"inputs", "columns", "classes", "models", "weights"})


@dataclass(frozen=True)
class GraphInfo:
    """What an exported graph's metadata says: its inputs (in graph order), output columns, the
    checkpoints it was built from (by content hash) and the ensemble weights."""

    schema: str
    inputs: tuple[GraphInput, ...]
    columns: dict[str, tuple[int, int]]
    classes: dict[str, tuple[str, ...]]
    models: tuple[dict, ...]  # per checkpoint: member, task, sha256, img_size, crop, backbone, weight, temperature, input, ...
    weights: tuple[float, ...]
    tta: str = "flip"
    opset: int = OPSET
    format: str = FORMAT

    @property
    def width(self) -> int:
        return max((stop for _, stop in self.columns.values()), default=0)

    def to_metadata(self) -> dict[str, str]:
        """``metadata_props``: plain strings, JSON where structured."""
        meta = {"format": self.format, "opset": str(self.opset), "schema": self.schema, "tta": self.tta,
                "inputs": json.dumps([i.name for i in self.inputs]),
                "columns": json.dumps({t: list(c) for t, c in self.columns.items()}),
                "classes": json.dumps({t: list(c) for t, c in self.classes.items()}),
                "models": json.dumps(list(self.models)), "weights": json.dumps(list(self.weights))}
        meta.update({f"preprocess.{i.name}": json.dumps(i.to_json()) for i in self.inputs})
        return {_KEY + k: v for k, v in meta.items()}

    @classmethod
    def from_metadata(cls, props: Mapping[str, str], where: str) -> GraphInfo:
        """Read :meth:`to_metadata`'s form; anything else is an :class:`InputError` naming ``where``."""
        fmt = props.get(_KEY + "format")
        if fmt is None:
            raise InputError("an ONNX model, but not one attrret exported (no attrret.format metadata); "
                             "make one with attrret export onnx", where)
        if fmt != FORMAT:
            raise InputError(f"exported as {fmt!r}, this attrret reads {FORMAT!r}; re-export it with attrret export onnx", where)

        m = GraphMetadata.from_props(props, where)
        inputs = tuple(GraphInput.from_record(m.preprocess[n]) for n in m.inputs)
        return cls(schema=m.schema_fingerprint, inputs=inputs, columns={t: (v[0], v[1]) for t, v in m.columns.items()},
                   classes={t: tuple(c) for t, c in m.classes.items()},
                   models=tuple(json.loads(props[_KEY + "models"])),  # as written (checked above): keys in order
                   weights=tuple(m.weights), tta=m.tta, opset=int(m.opset), format=m.format)


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    info: GraphInfo
    bytes: int
    sha256: str
    max_diff: float  # onnxruntime vs PyTorch on the export check


def is_attrret_graph(path: Path) -> bool:
    """Whether ``path`` is a graph attrret exported (the only kind ``--force`` replaces)."""
    onnx = require("onnx")
    if not path.is_file() or path.stat().st_size > 2**31:  # never ours: one protobuf file holds at most 2 GB
        return False
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - protobuf raises several kinds on a file that is not ONNX
        return False
    return any(p.key == _KEY + "format" and p.value.startswith("attrret-onnx/") for p in model.metadata_props)


def check_output(out: Path, force: bool) -> None:
    """Refuse to write over anything but an earlier attrret export, and over that only with ``force``."""
    if out.is_dir():
        raise InputError("is a directory; name the .onnx file to write", out)
    if out.exists() or out.is_symlink():
        if not force:
            raise InputError("exists; add --force to replace an earlier attrret export", out)
        if not is_attrret_graph(out):
            raise InputError("exists and is not a graph attrret exported; refusing to overwrite it", out)


def _input_names(keys: Sequence[tuple[Any, str]]) -> list[str]:
    """Graph input names for distinct (preprocess, crop) keys (module doc)."""
    if len(keys) == 1:
        return ["images"]
    base = [f"images_{hw_label(pre.hw)}" + ("" if crop == "full" else f"_{crop}") for pre, crop in keys]
    seen: dict[str, int] = {}
    out = []
    for b in base:
        seen[b] = seen.get(b, 0) + 1
        out.append(b if base.count(b) == 1 else f"{b}_{seen[b]}")
    return out


def _build(members: Sequence, log: Callable[[str], None], schema: Schema | None = None,
           tta_flip: bool = TTA_DEFAULT == "flip") -> tuple[Engine, GraphInfo]:
    """The predict engine of ``members`` (exported as it is: the graph is :meth:`Engine.forward`,
    with the mirrored image when ``tta_flip``) and its :class:`GraphInfo`."""
    from attrret.schema import load_schema

    schema = schema or load_schema()
    engine = Engine.build(members, schema, flip=tta_flip).eval()
    entries = model_entries(members, Path.cwd(), schema)  # predict's header entries; their paths are dropped below
    names = _input_names(engine.inputs)
    inputs = tuple(GraphInput(n, pre.height, pre.width, pre.mean, pre.std, crop) for n, (pre, crop) in zip(names, engine.inputs))
    for e, (mi, ck) in zip(entries, engine.checkpoints):
        for rec in (e, e.get("domain_gate") or {}):
            for key in ("path", "relpath"):  # where they were on the exporting machine: the hash identifies them
                rec.pop(key, None)
        e.update({"crop": ck.info.crop, "temperature": ck.info.temperature,
                  "input": names[engine.input_of(ck)] if members[mi].weight else None})
    info = GraphInfo(schema=schema.fingerprint, inputs=inputs, columns=engine.columns,
                     classes={t: schema.task(t).classes for t in engine.columns}, models=tuple(entries),
                     weights=tuple(m.weight for m in members), tta="flip" if tta_flip else "none")
    log(f"graph: {len(engine.columns)} task(s) from {len(engine.tails)} model(s) on {len(engine.fronts)} shared front(s), "
        f"{info.width} columns, input(s): " + ", ".join(f"{i.name} [N, 3, {i.height}, {i.width}]" for i in inputs))
    return engine, info


def _quiet():
    """Silence the exporter's own progress lines (stdout) and deprecation chatter: stdout is for results."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def _to_onnx(graph, info: GraphInfo) -> bytes:
    """Export ``graph`` (dynamic batch), metadata attached; the serialized model."""
    require("onnxscript")  # torch's dynamo exporter imports it
    require("onnx")
    gen = torch.Generator().manual_seed(0)
    example = tuple(torch.randn(2, 3, i.height, i.width, generator=gen) for i in info.inputs)
    batch = torch.export.Dim("batch")
    shapes = (tuple({0: batch} for _ in example),)  # one entry, forward(*images): a tuple of per-input dims
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(graph, example, None, input_names=[i.name for i in info.inputs], output_names=["probs"],
                                        opset_version=OPSET, dynamo=True, dynamic_shapes=shapes,
                                        verbose=False)
            proto = program.model_proto
    except AttrretError:
        raise
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds; say which model and why
        cause = exc.__cause__ or exc  # torch wraps the real reason in three pages of advice
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise CheckpointError(f"torch.onnx could not export these models ({type(cause).__name__}: {first[:300]})") from None
    proto.producer_name = "attrret"
    proto.doc_string = ("attrret attribute probabilities: preprocessed images (see metadata attrret.preprocess.<input>) -> "
                        "probs, the columns in attrret.columns")
    del proto.metadata_props[:]
    for k, v in info.to_metadata().items():
        proto.metadata_props.add(key=k, value=v)
    try:
        return proto.SerializeToString()
    except ValueError as exc:  # protobuf's 2 GB limit
        raise CheckpointError(f"the graph is too large for one ONNX file ({exc}); export fewer members or tasks") from None


def _check(graph, info: GraphInfo, blob: bytes, precision: Precision) -> float:
    """Max |onnxruntime - PyTorch| on a random batch of 3 (not the export's 2: the batch axis is
    dynamic), PyTorch running in ``precision`` (the graph itself is float32)."""
    ort = require("onnxruntime")
    gen = torch.Generator().manual_seed(1)
    x = tuple(torch.randn(3, 3, i.height, i.width, generator=gen) for i in info.inputs)
    with torch.no_grad(), precision.autocast():
        want = graph(*x).float().numpy()
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    got = session.run(["probs"], {i.name: t.numpy() for i, t in zip(info.inputs, x)})[0]
    return float(np.abs(got - want).max()) if want.size else 0.0


def export_onnx(members: Sequence, out: str | Path, *, force: bool = False,
                log: Callable[[str], None] = lambda s: print(s, file=sys.stderr), schema: Schema | None = None,
                precision: str | None = "fp32", tta_flip: bool = TTA_DEFAULT == "flip") -> ExportSummary:
    """Export the ensemble ``members`` (:func:`attrret.retrieval.indexer.find_members`) to ``out``,
    averaging each image with its mirror inside the graph when ``tta_flip`` (``attrret predict
    --tta flip``; the default, as predict's, is without).

    ``out`` must not exist, unless ``force`` and it is an earlier attrret export. The graph is
    float32, traced in float32 whatever ``precision``; it is checked with onnxruntime, before it
    is written (atomically), against the PyTorch models run on the CPU in ``precision`` (``fp32``:
    within :data:`CHECK_TOLERANCE`; ``bf16``/``fp16``/``auto`` resolving to one, within
    :data:`attrret.precisions.MIXED_TOLERANCE`, what predict in that precision may differ by).
    """
    from attrret.classifiers.runtime import resolve_precision

    from attrret.io import atomic_write_bytes, file_sha256

    out = Path(out)
    check_output(out, force)
    for module in ("onnx", "onnxscript", "onnxruntime"):  # before minutes of work, not after
        require(module)
    graph, info = _build(members, log, schema, tta_flip)
    log(f"exporting with torch.onnx (dynamo, opset {OPSET}) ...")
    blob = _to_onnx(graph, info)
    prec = resolve_precision(precision, torch.device("cpu"))
    tolerance = CHECK_TOLERANCE if prec.name == "fp32" else MIXED_TOLERANCE
    diff = _check(graph, info, blob, prec)
    if not diff <= tolerance:
        raise CheckpointError(f"the exported graph disagrees with the PyTorch models in {prec.name} (max |dp| = {diff:.2e} > "
                              f"{tolerance:g}); nothing written")
    check_output(out, force)  # again: another process may have written it meanwhile
    atomic_write_bytes(out, blob)
    return ExportSummary(out, info, len(blob), file_sha256(out), diff)
