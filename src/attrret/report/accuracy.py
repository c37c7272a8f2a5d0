"""Per-attribute accuracy and confusion matrices: predicted classes against labels.

The ranker's mistakes are mostly a classifier's mistakes, so the report shows, per task,
how often the predicted class (argmax of the index's probabilities) equals the label and
which classes are confused with which. Only groups a label states count (vehicle training
labels are incomplete; test labels are complete).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from attrret.data.track2 import LabelLine
from attrret.schema import Group, Schema

__all__ = ["TaskAccuracy", "attribute_accuracy"]


@dataclass(frozen=True)
class TaskAccuracy:
    """Accuracy of one task; ``confusion[i][j]`` counts label ``classes[i]`` predicted as ``classes[j]``."""

    task: str
    classes: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]

    @property
    def n(self) -> int:
        return sum(map(sum, self.confusion))

    @property
    def correct(self) -> int:
        return sum(self.confusion[i][i] for i in range(len(self.classes)))

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.n if self.n else None

    def to_json(self) -> dict:
        return {"task": self.task, "classes": list(self.classes), "confusion": [list(r) for r in self.confusion], "n": self.n, "accuracy": self.accuracy}


def attribute_accuracy(
    labels: Iterable[LabelLine],
    predicted: Mapping[str, Mapping[str, str]],
    schema: Schema,
) -> list[TaskAccuracy]:
    """Compare ``predicted[image][task]`` (a class name) with the labels, task by task.

    Tasks follow the schema's order; the router is scored by the label's kind. An image with
    no prediction is skipped (the index may cover another gallery); a task nobody predicted
    is left out.
    """
    counts: dict[str, list[list[int]]] = {}
    groups: dict[str, Group] = {g.task: g for g in schema.tasks}

    def add(group: Group, truth: str, guess: str | None) -> None:
        if guess is None or truth not in group.classes or guess not in group.classes:
            return
        m = counts.setdefault(group.task, [[0] * group.size for _ in range(group.size)])
        m[group.index(truth)][group.index(guess)] += 1

    for line in labels:
        pred = predicted.get(line.image)
        if pred is None:
            continue
        add(schema.router, line.kind, pred.get(schema.router.task))
        subject = schema.subject(line.kind)
        for name, truth in line.values.items():
            g = subject.group(name)
            add(g, truth, pred.get(g.task))
    return [TaskAccuracy(t, groups[t].classes, tuple(map(tuple, counts[t]))) for t in groups if t in counts]
