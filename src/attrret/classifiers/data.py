"""Which images train, select and test each task: each task's labels, split by :mod:`attrret.data.splits`.

- ``labels.txt + images/`` folder (pa100k-mini): every record is in the pool; ``holdout=n`` keeps
  the fixed :func:`attrret.data.splits.holdout_split` images out of training and selection.
- Track-2 folder: train on split ``train``, select on ``val`` when present (else a stratified
  split of train), evaluate on ``test/test_label.txt`` when present.
- ``fold="k/K"`` selects on fold k of a stratified K-fold of the pool instead.

Records whose label for the task is unknown are skipped for that task only. The router's
label is the record's kind (pedestrian / vehicle), known for every line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


from attrret.data.records import Record, load_records
from attrret.data.splits import fold_split, holdout_split, parse_fold, stratified_split
from attrret.errors import InputError
from attrret.schema import Group, Schema

__all__ = ["Sample", "TaskData", "labels_for", "load_task_data"]

Sample = tuple[str, int]  # (resolved image path, class index)


@dataclass(frozen=True)
class TaskData:
    group: Group
    train: list[Sample]
    val: list[Sample]
    holdout: list[Sample]
    val_source: str
    holdout_source: str


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
    data: str | Path,
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
    """Samples per task. A task without examples of two classes is an error, or, when
    ``on_untrainable`` is given (several tasks requested), reported through it and left out.

    With ``skip_bad``, bad label lines and missing images are left out and reported through
    ``on_skip`` (default: one warning line each on stderr, so nothing is dropped silently);
    undecodable images too (every image is then decoded once up front). Labels are read with
    ``schema`` (None: the packaged one), the schema of ``groups``."""
    if skip_bad and on_skip is None:
        on_skip = _warn_skipped
    root = Path(data)
    track2 = root.is_dir() and _split_exists(root, "train")
    pool = load_records(root, "train", schema=schema, skip_bad=skip_bad, on_skip=on_skip, decode=skip_bad)
    val_records: list[Record] | None = None
    held: list[Record] = []
    holdout_source = ""
    if track2 and _split_exists(root, "val") and not fold:
        val_records = load_records(root, "val", schema=schema, skip_bad=skip_bad, on_skip=on_skip, decode=skip_bad)
    if holdout:
        try:
            pool, held = holdout_split(pool, holdout, holdout_seed)
        except ValueError as exc:
            raise InputError(str(exc), root) from None
        holdout_source = f"holdout_split(n={holdout}, seed={holdout_seed})"
    elif track2 and _split_exists(root, "test"):
        held = load_records(root, "test", schema=schema, skip_bad=skip_bad, on_skip=on_skip, decode=skip_bad)
        holdout_source = "test/test_label.txt"
    folds = parse_fold(fold)
    out: dict[str, TaskData] = {}
    for g in groups:
        items = labels_for(pool, g)
        if len({y for _, y in items}) < 2:
            msg = f"task {g.task}: need labelled examples of at least two classes, found {len(items)} examples"
            if on_untrainable is None:
                raise InputError(msg, root)
            on_untrainable(f"{root}: {msg}; skipped")
            continue
        if folds:
            train, val = fold_split(items, folds[0], folds[1], seed)
            source = f"fold {folds[0]}/{folds[1]} (stratified)"
        elif val_records is not None:
            train, val = items, labels_for(val_records, g)
            source = "val/val_label.txt"
        else:
            train, val = stratified_split(items, val_fraction, seed)
            source = f"stratified {val_fraction:.0%} of train (seed {seed})"
        out[g.task] = TaskData(g, train, val, labels_for(held, g), source, holdout_source)
    return out
