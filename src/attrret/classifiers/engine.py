"""The predict engine: the one definition of "images -> the index's probability row".

An :class:`Engine` is an ``nn.Module`` built from checkpoints, the tasks of one or more
ensemble members (:class:`Member`). Everything that turns images into probabilities runs it:
``attrret predict`` (:meth:`Engine.predict`, sharded or not), ``attrret attributes``, the search
page's find-by-upload and :func:`predict_probs` (one set of task models, per task); ``attrret export
onnx`` exports the module itself, so the graph equals predict by construction.

What it computes, per batch:

- **Fronts, shared.** Checkpoints that agree on :func:`group_key` (architecture, frozen-front
  hash, preprocessing, cut, crop, tail norms) compute the same front output, so each such group
  has one front, run once on the batch and its mirror image (one concatenated batch). Its input
  is the batch preprocessed for its geometry (:attr:`Engine.inputs`: one per distinct
  preprocessing and crop).
- **Tails, one per task model.** Each task's tail and head share its group's front tensors
  (:func:`task_model`): nothing is swapped in place, so an autocast region never serves one
  task's cached low-precision weights to another. Tasks trained as one unit (the yes/no groups
  of a multi-label group) hold equal tail weights: such a tail runs once per batch and each
  task applies its own head to its features (:func:`tail_digest`, ``Engine.tail_share``).
- **Post-processing, once.** The head, temperature, softmax and flip mean run in float32
  (:func:`attrret.classifiers.calibration.view_probs`, which training's evaluation and the
  temperature fit also use), whatever precision the front and tails ran in.
- **Ensemble.** A task's columns are the weighted mean of the probabilities of the members that
  have it (weights normalised over those members; weight-0 members are not run). A member with
  a domain gate (:mod:`attrret.classifiers.domain`) weighs ``weight * P(its dataset | image)``
  on each image, the gate read from its front's output; each row's weights are then
  normalised over the members that have the task (a gate's probability is floored at
  :data:`attrret.classifiers.domain.GATE_FLOOR`, so a row always has weight: a gated member
  alone is its own models).

Router gating (:meth:`Engine.gated`, ``attrret predict --gate router``): the router's tails run
on the whole batch first; each image then runs only its own subject's tails, on the features
of its group's front, which is computed once per batch -- or only on that subject's rows when
the router does not share it. The other subject's columns of a row hold the uniform
distribution (1 / classes). The index module doc (attrret.retrieval.indexer) says why ranking
is unchanged.

The columns are in the index's order (:func:`task_columns`): the schema's task order.

:class:`Ensemble` is the engine as an :class:`attrret.ensemble.Predictor`: what ``attrret
predict --runtime torch`` hands to :func:`attrret.retrieval.indexer.build_index`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from attrret.geometry import Preprocess
from attrret.classifiers.calibration import float32_region, view_probs
from attrret.classifiers.checkpoint import Checkpoint, build_classifier, load_checkpoint
from attrret.classifiers.domain import DomainGate, DomainGateHead
from attrret.classifiers.preprocess import channels_last, load_inputs
from attrret.classifiers.model import Classifier, hash_tensor
from attrret.classifiers.runtime import Precision, resolve_device, resolve_precision, tune_malloc
from attrret.ensemble import TTA_DEFAULT, TTA_MODES, Member, check_columns, model_entries, task_columns
from attrret.errors import CheckpointError
from attrret.schema import Schema, load_schema

__all__ = ["Engine", "Ensemble", "InputKey", "group_key", "task_model", "predict_probs"]

#: One engine input: the preprocessing (size, mean, std) and the crop its images get.
InputKey = tuple[Preprocess, str]


def group_key(ck: Checkpoint) -> tuple:
    """Checkpoints with equal keys compute the same front output for an image (module doc)."""
    info = ck.info
    return (info.backbone.arch, info.front_hash, ck.preprocess, info.cut, info.crop, info.tail_norm)


def task_model(ck: Checkpoint, base: Classifier, first: bool) -> Classifier:
    """``ck``'s classifier on its group's model ``base`` (``first``: ``base`` was built from ``ck``).

    Every task but the first gets a module of its own that shares ``base``'s front tensors
    (:meth:`Classifier.share_front`) and holds ``ck``'s tail and head, so nothing is swapped in
    place at predict time (module doc).
    """
    keys = base.tail_keys() - {"head.weight", "head.bias"}
    sd = ck.stored  # lean or whole, it holds every tail key
    missing = sorted(k for k in [*keys, "head.weight", "head.bias"] if k not in sd)
    if missing:
        raise CheckpointError(f"{ck.path}: weights do not fit {ck.info.backbone.arch}: missing {missing[:3]}")
    if first:
        return base
    model = base.share_front()
    weight = sd["head.weight"]
    model.head = torch.nn.Linear(weight.shape[1], weight.shape[0]).to(base.head.weight.device)  # its own class count
    try:
        model.load_state_dict({k: sd[k] for k in [*keys, "head.weight", "head.bias"]}, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{ck.path}: weights do not fit {ck.info.backbone.arch}: {str(exc)[:300]}") from None
    return model.requires_grad_(False).eval()


def tail_digest(ck: Checkpoint, base: Classifier) -> str:
    """SHA-256 of ``ck``'s tail weights, its head left out: equal digests, equal tail features."""
    h = hashlib.sha256()
    for key in sorted(base.tail_keys() - {"head.weight", "head.bias"}):
        hash_tensor(h, key, ck.stored[key])
    return h.hexdigest()


class Engine(nn.Module):
    """Preprocessed images, one tensor per :attr:`inputs` entry -> ``float32[n, width]``
    probabilities in :attr:`columns` order (module doc). Build one with :meth:`build`."""

    def __init__(self, *, inputs: Sequence[InputKey], fronts: Sequence[Classifier], front_input: Sequence[int],
                 tails: Sequence[Classifier], tail_front: Sequence[int], temperatures: Sequence[float],
                 tail_share: Sequence[int] | None = None,
                 combine: dict[str, list[tuple[int, float, int]]], columns: dict[str, tuple[int, int]],
                 checkpoints: Sequence[tuple[int, Checkpoint]], router: str | None, kinds: Sequence[str],
                 subjects: dict[str, str], flip: bool = True,
                 domains: Sequence[DomainGateHead] = (), domain_front: Sequence[int] = ()) -> None:
        super().__init__()
        self.inputs = tuple(inputs)
        self.fronts = nn.ModuleList(fronts)
        self.tails = nn.ModuleList(tails)
        self.front_input, self.tail_front = list(front_input), list(tail_front)
        # tail -> the tail whose features it reads: itself, or an earlier tail with the same weights
        # (the yes/no groups of a multi-label group share one trained tail: computed once)
        self.tail_share = list(range(len(tails))) if tail_share is None else list(tail_share)
        self.temperatures = [float(t) for t in temperatures]
        # task -> [(tail, weight, domain gate or -1)], weights summing to 1 (before the gates)
        self.combine = {t: list(parts) for t, parts in combine.items()}
        self.domains = nn.ModuleList(domains)  # the members' domain gates
        self.domain_front = list(domain_front)  # gate -> the front whose output it reads
        self.columns = dict(columns)
        self.checkpoints = tuple(checkpoints)  # (member, checkpoint), every one, weight-0 members' too
        self.router = router  # the router's task when it is among the columns
        self.kinds = tuple(kinds)  # the router's classes: the subject each of its columns stands for
        self.subjects = dict(subjects)  # task -> its subject (the router's classes)
        self.flip = flip

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def build(cls, members: Sequence[Member], schema: Schema | None = None, *, flip: bool = True) -> Engine:
        """The engine of the ensemble ``members`` under ``schema`` (None: the packaged one).

        Raises :class:`CheckpointError` for two models of one task in a member, a task whose
        members all weigh 0, or a checkpoint of another schema."""
        schema = schema or load_schema()
        cks = [(mi, load_checkpoint(d, schema=schema)) for mi, m in enumerate(members) for d in m.task_dirs]
        for mi, m in enumerate(members):
            tasks = [ck.task for i, ck in cks if i == mi]
            if len(set(tasks)) != len(tasks):
                raise CheckpointError(f"several models for the same task in {m.label}: "
                                      f"{', '.join(sorted({t for t in tasks if tasks.count(t) > 1}))}")
        columns = task_columns([ck.task for _, ck in cks], schema)
        wsum: dict[str, float] = {}
        for mi, ck in cks:
            wsum[ck.task] = wsum.get(ck.task, 0.0) + members[mi].weight
        zero = [t for t in columns if wsum[t] <= 0]
        if zero:
            raise CheckpointError(f"task {zero[0]}: every member predicting it has weight 0")
        inputs: list[InputKey] = []
        groups: dict[tuple, list[int]] = {}  # group key -> indices into cks
        for k, (mi, ck) in enumerate(cks):
            if members[mi].weight == 0:
                continue  # adds nothing to any column
            if (key := (ck.preprocess, ck.info.crop)) not in inputs:
                inputs.append(key)
            groups.setdefault(group_key(ck), []).append(k)
        fronts, front_input, tails, tail_front, temps, tail_share = [], [], [], [], [], []
        tail_of: dict[int, int] = {}  # index into cks -> index into tails
        for gi, ks in enumerate(groups.values()):
            first = cks[ks[0]][1]
            base = build_classifier(first).requires_grad_(False).eval()
            fronts.append(base)
            front_input.append(inputs.index((first.preprocess, first.info.crop)))
            seen: dict[str, int] = {}  # tail weights' digest -> the first tail holding them
            for j, k in enumerate(ks):  # each task its own tail and head; the front's tensors are shared
                ck = cks[k][1]
                tail_of[k] = len(tails)
                tail_share.append(seen.setdefault(tail_digest(ck, base), len(tails)))
                tails.append(task_model(ck, base, j == 0).eval())
                tail_front.append(gi)
                temps.append(ck.info.temperature)
        domains, domain_front, gate_of = [], [], {}  # gate_of: member -> index into domains
        keys = list(groups)
        for mi, m in enumerate(members):
            if m.domain_gate is None or m.weight == 0:
                continue
            gate = DomainGate.load(m.domain_gate)
            g = next((gi for gi, key in enumerate(keys) if key[:5] == gate.front_key()), None)
            if g is None:
                raise CheckpointError(f"{m.domain_gate}: the domain gate of {m.label} reads a front none of the ensemble's models has "
                                      f"({gate.arch}, front {gate.front_hash}, {gate.preprocess.hw}, cut {gate.cut}, crop {gate.crop})")
            gate_of[mi] = len(domains)
            domains.append(DomainGateHead(gate))
            domain_front.append(g)
        combine = {task: [(tail_of[k], members[mi].weight / wsum[task], gate_of.get(mi, -1)) for k, (mi, ck) in enumerate(cks)
                          if ck.task == task and k in tail_of] for task in columns}
        router = schema.router.task
        subjects = {g.task: g.subject for g in schema.tasks if g.subject in schema.router.classes}
        return cls(inputs=inputs, fronts=fronts, front_input=front_input, tails=tails, tail_front=tail_front,
                   tail_share=tail_share, temperatures=temps, combine=combine, columns=columns, checkpoints=cks,
                   router=router if router in columns else None, kinds=schema.router.classes, subjects=subjects, flip=flip,
                   domains=domains, domain_front=domain_front)

    @property
    def width(self) -> int:
        return max((stop for _, stop in self.columns.values()), default=0)

    def input_of(self, ck: Checkpoint) -> int:
        """The index into :attr:`inputs` of the input ``ck``'s model reads."""
        return self.inputs.index((ck.preprocess, ck.info.crop))

    @property
    def can_gate(self) -> bool:
        """Whether router gating changes anything: a router and at least one subject task."""
        return self.router is not None and any(t in self.subjects for t in self.columns)

    # -- the mapping -------------------------------------------------------------------------

    def forward(self, *images: torch.Tensor) -> torch.Tensor:
        """Every task on every image (``--gate none``; what ``attrret export onnx`` exports)."""
        feats = [self._front(g, images[i]) for g, i in enumerate(self.front_input)]
        memo: dict = {}
        probs = [self._probs(k, feats[g], memo) for k, g in enumerate(self.tail_front)]
        gates = self._gates(lambda g: feats[g])
        return torch.cat([self._mix(task, probs, gates) for task in self.columns], 1)

    def gated(self, *images: torch.Tensor) -> torch.Tensor:
        """The router first, then each image through its own subject's tails only (module doc).
        Without a router (or with nothing but the router) it is :meth:`forward`."""
        if not self.can_gate:
            return self(*images)
        n, views = images[0].shape[0], 2 if self.flip else 1
        out = torch.empty(n, self.width, dtype=torch.float32, device=images[0].device)
        for a, b in self.columns.values():
            out[:, a:b] = 1.0 / (b - a)  # the other subject's columns: the uniform distribution
        feats: dict[int, torch.Tensor] = {}  # front -> its output on the whole batch (views stacked)
        router_tails = [k for k, *_ in self.combine[self.router]]
        probs: dict[int, torch.Tensor] = {}
        memo: dict = {}

        def front_all(g: int) -> torch.Tensor:
            if g not in feats:
                feats[g] = self._front(g, images[self.front_input[g]])
            return feats[g]

        for k in router_tails:
            probs[k] = self._probs(k, front_all(self.tail_front[k]), memo)
        r = self._mix(self.router, probs, self._gates(front_all))
        a, b = self.columns[self.router]
        out[:, a:b] = r
        kinds = r.argmax(1)
        for ki, kind in enumerate(self.kinds):
            rows = torch.nonzero(kinds == ki).flatten()
            tasks = [t for t in self.columns if self.subjects.get(t) == kind]
            if not rows.numel() or not tasks:
                continue
            mine: dict[int, torch.Tensor] = {}  # front -> its output on this subject's rows

            def front_rows(g: int) -> torch.Tensor:
                if g not in mine:
                    mine[g] = (_rows(feats[g], rows, n, views) if g in feats
                               else self._front(g, images[self.front_input[g]].index_select(0, rows)))
                return mine[g]

            gates: dict[int, torch.Tensor] = {}  # this subject's rows' gate probabilities, computed when asked
            for task in tasks:
                for k, *_ in self.combine[task]:
                    probs[k] = self._probs(k, front_rows(self.tail_front[k]), memo)
                c0, c1 = self.columns[task]
                out[rows, c0:c1] = self._mix(task, probs, self._gates(front_rows, gates))
        return out

    def _front(self, g: int, x: torch.Tensor) -> torch.Tensor:
        """Front ``g``'s float32 output on ``x`` and (``flip``) its mirror, stacked on the batch axis."""
        if self.flip:
            x = torch.cat([x, torch.flip(x, dims=[3])])
        return self.fronts[g].front(channels_last(x, x.device)).float()

    def _probs(self, k: int, feats: torch.Tensor, memo: dict) -> torch.Tensor:
        """Tail ``k``'s probabilities from its front's output: its tail in the running precision,
        the head and post-processing in float32 (module doc). ``memo`` keeps each shared tail's
        features on ``feats`` for the tails after it (one forward pass)."""
        tail = self.tails[k]
        share = self.tail_share[k]
        hit = memo.get(share)
        if hit is not None and hit[0] is feats:  # the tensor itself, kept alive: an id could be reused
            f = hit[1]
        else:
            f = self.tails[share].features(feats, from_front=True)
            memo[share] = (feats, f)
        with float32_region(f.device.type):
            logits = F.linear(f.float(), tail.head.weight.float(), tail.head.bias.float())
        views = 2 if self.flip else 1
        return view_probs(logits.reshape(views, -1, logits.shape[-1]), self.temperatures[k])

    def _gates(self, front: Callable[[int], torch.Tensor], memo: dict[int, torch.Tensor] | None = None) -> Callable[[int], torch.Tensor]:
        """Gate ``j`` -> its ``float32[n, 1]`` probabilities on the rows ``front`` gives each
        front's output for, computed once when first asked (``memo``)."""
        memo = {} if memo is None else memo
        views = 2 if self.flip else 1

        def gate(j: int) -> torch.Tensor:
            if j not in memo:
                feats = front(self.domain_front[j])
                with float32_region(feats.device.type):
                    memo[j] = self.domains[j](feats, views)
            return memo[j]

        return gate

    def _mix(self, task: str, probs: Sequence[torch.Tensor] | dict[int, torch.Tensor], gate: Callable[[int], torch.Tensor]) -> torch.Tensor:
        """Task ``task``'s columns: its members' probabilities, weighted (module doc, "Ensemble")."""
        parts = self.combine[task]
        if len(parts) == 1 and parts[0][1] == 1.0 and parts[0][2] < 0:
            return probs[parts[0][0]]
        if all(j < 0 for _, _, j in parts):
            return sum(w * probs[k] for k, w, _ in parts)
        weights = [w * gate(j) if j >= 0 else w for _, w, j in parts]  # per row where gated
        return sum(wt * probs[k] for (k, _, _), wt in zip(parts, weights)) / sum(weights)

    # -- running it on files -----------------------------------------------------------------

    def predict(self, paths: Sequence[Path], *, gate: bool = True, batch_size: int = 64, device: str = "cpu",
                precision: Precision | str | None = None, progress: bool = True) -> np.ndarray:
        """``float32[len(paths), width]`` probabilities of the images at ``paths``, in order.

        ``gate``: :meth:`gated` (else :meth:`forward`). The front and tails run under autocast in
        ``precision`` (:func:`attrret.classifiers.runtime.resolve_precision`); decoding and
        resizing the next batch runs on a thread beside the model. Raises
        :class:`attrret.errors.InputError` naming an unreadable image, and
        :class:`CheckpointError` for models giving non-finite probabilities (NaN weights would
        rank one image first for every query)."""
        tune_malloc()
        dev = resolve_device(device)
        prec = resolve_precision(precision, dev)
        self.to(dev)
        if dev.type == "cpu":
            self.to(memory_format=torch.channels_last)  # oneDNN's fastest convolution layout
        run = self.gated if gate else self.forward
        out = np.zeros((len(paths), self.width), np.float32)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True, quiet=not progress)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, disable=not progress) as prog, torch.no_grad():
            bar = prog.add_task(f"predict: {len(self.columns)} task(s), {len(self.fronts)} front(s), {prec.name}",
                                total=len(paths))
            for start, batch in self._batches(paths, batch_size, dev):
                with prec.autocast():
                    p = run(*batch)
                out[start : start + len(batch[0])] = p.float().cpu().numpy()
                prog.update(bar, advance=len(batch[0]))
        bad = [t for t, (a, b) in self.columns.items() if not np.isfinite(out[:, a:b]).all()]
        if bad:
            raise CheckpointError(f"the models of {', '.join(bad)} give non-finite probabilities; retrain them")
        return out

    def _batches(self, paths: Sequence[Path], batch_size: int, dev: torch.device) -> Iterator[tuple[int, list[torch.Tensor]]]:
        """``(start, inputs)`` per batch; the next batch is decoded on a thread meanwhile."""
        starts = range(0, len(paths), batch_size)
        with ThreadPoolExecutor(1, thread_name_prefix="attrret-decode") as pool:
            pending = pool.submit(load_inputs, paths[0:batch_size], self.inputs) if len(paths) else None
            for start in starts:
                batch = pending.result()
                nxt = start + batch_size
                pending = pool.submit(load_inputs, paths[nxt : nxt + batch_size], self.inputs) if nxt < len(paths) else None
                if dev.type == "cuda":
                    batch = [t.pin_memory().to(dev, non_blocking=True) for t in batch]
                else:
                    batch = [t.to(dev) for t in batch]
                yield start, batch


def _rows(feats: torch.Tensor, rows: torch.Tensor, n: int, views: int) -> torch.Tensor:
    """The front output of the batch's ``rows`` (each view's block of ``n``, views stacked)."""
    return torch.cat([feats[v * n : (v + 1) * n].index_select(0, rows) for v in range(views)])


def predict_probs(
    model_dirs: Sequence[Path],
    images: Sequence[Path],
    *,
    tta_flip: bool = True,
    batch_size: int = 64,
    device: str = "cpu",
    precision: Precision | str | None = None,
    progress: bool = True,
    schema: Schema | None = None,
) -> dict[str, np.ndarray]:
    """Per task name, float32 ``(len(images), n_classes)`` probabilities in ``images`` order: the
    engine of one set of task models, ungated, its columns split per task.

    Each entry of ``model_dirs`` is ``W/models/<task>/`` (or a ``model.pt``). ``precision``:
    ``auto``, ``fp32``, ``bf16`` or ``fp16`` (None: ``$ATTRRET_PRECISION``, else auto). Raises
    :class:`CheckpointError` for two models of one task, a checkpoint of another schema than
    ``schema`` (None: the packaged one) or a non-checkpoint, and
    :class:`attrret.errors.InputError` (naming the file) for an unreadable image.
    """
    engine = Engine.build([Member("models", tuple(Path(d) for d in model_dirs))], schema, flip=tta_flip)
    probs = engine.predict([Path(p) for p in images], gate=False, batch_size=batch_size, device=device,
                           precision=precision, progress=progress)
    return {task: probs[:, a:b] for task, (a, b) in engine.columns.items()}


@dataclass(frozen=True)
class Ensemble:
    """The checkpoints of ``members`` run by PyTorch: a :class:`Predictor`.

    ``precision`` as :func:`attrret.classifiers.runtime.resolve_precision` takes it (None:
    ``$ATTRRET_PRECISION``, else auto); :meth:`open` resolves it for ``device``, so a precision the
    device cannot run is one clear error before any work.
    """

    members: tuple[Member, ...]
    tta: str = TTA_DEFAULT
    device: str = "auto"
    precision: str = "fp32"

    gates = True

    @classmethod
    def open(cls, members: Sequence[Member], *, tta: str = TTA_DEFAULT, device: str = "auto", precision: str | None = None) -> Ensemble:
        """The ensemble of ``members`` with its precision resolved for ``device``."""
        from attrret.classifiers.runtime import resolve_device, resolve_precision

        if tta not in TTA_MODES:
            raise ValueError(f"unknown TTA {tta!r}; use one of {', '.join(TTA_MODES)}")
        return cls(tuple(members), tta, device, resolve_precision(precision, resolve_device(device)).name)

    def on(self, device: str) -> Ensemble:
        """The same ensemble on another device (a torchrun rank's own GPU), precision kept."""
        return dataclasses.replace(self, device=device)

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(m.weight for m in self.members)

    def entries(self, out: Path, schema: Schema) -> list[dict]:
        return model_entries(self.members, out, schema)

    def probs(self, paths: Sequence[Path], schema: Schema, *, columns: Mapping[str, tuple[int, int]], gate: bool = False,
              batch_size: int = 64, progress: bool = True) -> np.ndarray:
        engine = Engine.build(self.members, schema, flip=self.tta == "flip")
        check_columns(engine.columns, columns)
        return engine.predict(list(paths), gate=gate, batch_size=batch_size, device=self.device, precision=self.precision,
                              progress=progress)
