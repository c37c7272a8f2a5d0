"""Which images train, select and test each task: each task's labels, split by :mod:`attrret.data.splits`.

- ``labels.txt + images/`` folder (pa100k-mini): every record is in the pool; ``holdout=n`` keeps
  the fixed :func:`attrret.data.splits.holdout_split` images out of training and selection.
- Track-2 folder: train on split ``train``, select on ``val`` when present (else a stratified
  split of train), evaluate on ``test/test_label.txt`` when present.
- ``fold="k/K"`` selects on fold k of a stratified K-fold of the pool instead.
- Several datasets (``attrret train --data A --data B``): each is split on its own, by the rules
  above (``holdout`` and ``fold`` apply to each), and a task's training, selection and holdout
  images are the union over the datasets that label it. :class:`TaskData` keeps which dataset
  each training image came from (``origin``, for balanced sampling) and how many labels each
  dataset gave each split (``counts``, recorded in the checkpoint).

Records whose label for the task is unknown are skipped for that task only: a dataset that
does not label a group (PETA has no orientation) adds nothing to that task. The router's label
is the record's kind (pedestrian / vehicle), known for every line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path


from attrret.data.records import Record, load_records
from attrret.data.splits import fold_split, holdout_split, parse_fold, stratified_split
from attrret.errors import InputError
from attrret.schema import Group, Schema

__all__ = ["Sample", "TaskData", "labels_for", "load_origin_data", "load_task_data"]

Sample = tuple[str, int]  # (resolved image path, class index)


@dataclass(frozen=True)
class TaskData:
    group: Group
    train: list[Sample]
    val: list[Sample]
    holdout: list[Sample]
    val_source: str
    holdout_source: str
    # Per dataset that labels this task (its resolved root), the labels each split holds.
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    # The dataset (an index into ``counts``' order) each training image comes from.
    origin: dict[str, int] = field(default_factory=dict)


def labels_for(records: Sequence[Record], group: Group) -> list[Sample]:
    out = []
    for r in records:
        path = str(Path(r.path).resolve())
        if group.task == "router":
            out.append((path, group.index(r.kind)))
        elif r.kind == group.subject and group.name in r.values:
            out.append((path, group.index(r.values[group.name])))
    return out


def _warn_skipped(err: InputError) -> None:
    print(f"attrret: warning: skipped {err}", file=sys.stderr)


def _split_exists(root: Path, split: str) -> bool:
    return (root / split / f"{split}_label.txt").is_file()


def load_task_data(
    data: str | Path | Sequence[str | Path],
    groups: Sequence[Group],
    *,
    schema: Schema | None = None,
    holdout: int = 0,
    holdout_seed: int = 0,
    fold: str | None = None,
    val_fraction: float = 0.15,
    seed: int = 0,
    skip_bad: bool = False,
    on_untrainable: Callable[[str], None] | None = None,
    on_skip: Callable[[InputError], None] | None = None,
) -> dict[str, TaskData]:
    """Samples per task, from one dataset or several (module doc). A task without examples of
    two classes is an error, or, when ``on_untrainable`` is given (several tasks requested),
    reported through it and left out.

    With ``skip_bad``, bad label lines and missing images are left out and reported through
    ``on_skip`` (default: one warning line each on stderr, so nothing is dropped silently);
    undecodable images too (every image is then decoded once up front). Labels are read with
    ``schema`` (None: the packaged one), the schema of ``groups``."""
    if skip_bad and on_skip is None:
        on_skip = _warn_skipped
    roots = [Path(data)] if isinstance(data, (str, Path)) else [Path(d) for d in data]
    if not roots:
        raise InputError("no training data given", ".")
    parts = [_Dataset.read(root, schema=schema, holdout=holdout, holdout_seed=holdout_seed, fold=fold, skip_bad=skip_bad, on_skip=on_skip)
             for root in roots]
    folds = parse_fold(fold)
    out: dict[str, TaskData] = {}
    for g in groups:
        labelled = [(part, items) for part in parts if (items := labels_for(part.pool, g))]
        classes = {y for _, items in labelled for _, y in items}
        if len(classes) < 2:
            n = sum(len(items) for _, items in labelled)
            where = roots[0] if len(roots) == 1 else Path(", ".join(map(str, roots)))
            msg = f"task {g.task}: need labelled examples of at least two classes, found {n} examples"
            if on_untrainable is None:
                raise InputError(msg, where)
            on_untrainable(f"{where}: {msg}; skipped")
            continue
        train, val, held, sources, counts, origin = [], [], [], [], {}, {}
        for k, (part, items) in enumerate(labelled):
            t, v, source = _selection_split(items, lambda: labels_for(part.val or [], g), part, folds, val_fraction, seed)
            h = labels_for(part.held, g)
            train += t
            val += v
            held += h
            sources.append(source if len(roots) == 1 else f"{part.root.name}: {source}")
            counts[str(part.root.resolve())] = {"train": len(t), "val": len(v), "holdout": len(h)}
            origin.update((p, k) for p, _ in t)
        holdout_source = "; ".join(part.holdout_source if len(roots) == 1 else f"{part.root.name}: {part.holdout_source}"
                                   for part, _ in labelled if part.holdout_source)
        out[g.task] = TaskData(g, train, val, held, "; ".join(sources), holdout_source, counts, origin)
    return out


def _selection_split(items: list[Sample], val_items: Callable[[], list[Sample]], part: _Dataset, folds: tuple[int, int] | None,
                     val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample], str]:
    """``(train, val, how)``: one dataset's samples split for training and selection (module doc);
    ``val_items``: its Track-2 ``val`` split's samples, read only when it has one."""
    if folds:
        t, v = fold_split(items, folds[0], folds[1], seed)
        return t, v, f"fold {folds[0]}/{folds[1]} (stratified)"
    if part.val is not None:
        return items, val_items(), "val/val_label.txt"
    t, v = stratified_split(items, val_fraction, seed)
    return t, v, f"stratified {val_fraction:.0%} of train (seed {seed})"


def load_origin_data(
    data: Sequence[str | Path],
    kinds: Collection[str] | None = None,
    *,
    schema: Schema | None = None,
    holdout: int = 0,
    holdout_seed: int = 0,
    fold: str | None = None,
    val_fraction: float = 0.15,
    seed: int = 0,
    skip_bad: bool = False,
) -> tuple[list[Sample], list[Sample]]:
    """``(train, val)``: every image of each dataset whose kind is one of ``kinds`` (None: every
    image), labelled with its dataset's index in ``data`` (what :mod:`attrret.classifiers.domain`'s
    gate learns), split as the tasks are: each dataset on its own, its held images left out."""
    folds = parse_fold(fold)
    train: list[Sample] = []
    val: list[Sample] = []
    for k, root in enumerate(Path(d) for d in data):
        part = _Dataset.read(root, schema=schema, holdout=holdout, holdout_seed=holdout_seed, fold=fold, skip_bad=skip_bad,
                             on_skip=_warn_skipped if skip_bad else None)

        def mine(records: Sequence[Record]) -> list[Sample]:
            return [(str(Path(r.path).resolve()), k) for r in records if kinds is None or r.kind in kinds]

        t, v, _ = _selection_split(mine(part.pool), lambda: mine(part.val or []), part, folds, val_fraction, seed)
        train += t
        val += v
    return train, val


@dataclass(frozen=True)
class _Dataset:
    """One dataset's records: the pool training and selection split, the Track-2 ``val`` split
    when it has one (None: select on a split of the pool), and the held records."""

    root: Path
    pool: list[Record]
    val: list[Record] | None
    held: list[Record]
    holdout_source: str

    @classmethod
    def read(cls, root: Path, *, schema: Schema | None, holdout: int, holdout_seed: int, fold: str | None, skip_bad: bool,
             on_skip: Callable[[InputError], None] | None) -> _Dataset:
        track2 = root.is_dir() and _split_exists(root, "train")
        pool = load_records(root, "train", schema=schema, skip_bad=skip_bad, on_skip=on_skip, decode=skip_bad)
        val = None
        if track2 and _split_exists(root, "val") and not fold:
            val = load_records(root, "val", schema=schema, skip_bad=skip_bad, on_skip=on_skip, decode=skip_bad)
        held: list[Record] = []
        holdout_source = ""
        if holdout:
            try:
                pool, held = holdout_split(pool, holdout, holdout_seed)
            except ValueError as exc:
                raise InputError(str(exc), root) from None
            holdout_source = f"holdout_split(n={holdout}, seed={holdout_seed})"
        elif track2 and _split_exists(root, "test"):
            held = load_records(root, "test", schema=schema, skip_bad=skip_bad, on_skip=on_skip, decode=skip_bad)
            holdout_source = "test/test_label.txt"
        return cls(root, pool, val, held, holdout_source)
