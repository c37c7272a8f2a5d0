from __future__ import annotations

from collections import Counter

import pytest

from attrret.data.splits import holdout_split, kfold_split, stratified_split

LABELS = [0] * 90 + [1] * 30 + [2] * 3  # a rare class like hat / holding


def test_holdout_split_is_the_fixed_1200_300_split():
    items = [f"{i:06d}.jpg" for i in range(1, 1501)]
    train, held = holdout_split(items)
    assert len(train) == 1200 and len(held) == 300 and not set(train) & set(held)
    assert holdout_split(list(reversed(items))) == (train, held)


def test_stratified_split_keeps_proportions_and_rare_classes():
    train, val = stratified_split(LABELS, 0.2, seed=0)
    assert sorted(train + val) == list(range(len(LABELS)))
    c = Counter(LABELS[i] for i in val)
    assert c[0] == 18 and c[1] == 6 and c[2] == 1
    assert any(LABELS[i] == 2 for i in train)
    assert stratified_split(LABELS, 0.2, seed=0) == (train, val)
    assert stratified_split(LABELS, 0.2, seed=1) != (train, val)
    with pytest.raises(ValueError):
        stratified_split(LABELS, 1.0)


def test_kfold_split_partitions_the_data():
    folds = [kfold_split(LABELS, 5, f, seed=0) for f in range(5)]
    vals = [v for _, v in folds]
    assert sorted(i for v in vals for i in v) == list(range(len(LABELS)))
    for train, val in folds:
        assert not set(train) & set(val) and len(train) + len(val) == len(LABELS)
        assert Counter(LABELS[i] for i in val)[0] == 18
    assert max(len(v) for v in vals) - min(len(v) for v in vals) <= 1
    with pytest.raises(ValueError):
        kfold_split(LABELS, 5, 5)
