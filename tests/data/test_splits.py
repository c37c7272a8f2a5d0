"""The splits the product uses: the fixed holdout, the stratified selection split, stratified folds."""

from __future__ import annotations

from collections import Counter

import pytest

from attrret.data.splits import fold_split, holdout_split, parse_fold, stratified_split
from attrret.errors import AttrretError

LABELS = [0] * 90 + [1] * 30 + [2] * 3  # a rare class like hat / holding
SAMPLES = [(f"/img/{i:04d}.jpg", y) for i, y in enumerate(LABELS)]  # (path, class): training samples


def test_holdout_split_is_the_fixed_1200_300_split():
    items = [f"{i:06d}.jpg" for i in range(1, 1501)]
    train, held = holdout_split(items)
    assert len(train) == 1200 and len(held) == 300 and not set(train) & set(held)
    assert holdout_split(list(reversed(items))) == (train, held)


def test_stratified_split_keeps_proportions_and_rare_classes():
    train, val = stratified_split(SAMPLES, 0.2, seed=0)
    assert sorted(train + val) == SAMPLES and train == [s for s in SAMPLES if s in train]  # input order kept
    c = Counter(y for _, y in val)
    assert c[0] == 18 and c[1] == 6 and c[2] == 1
    assert any(y == 2 for _, y in train)
    assert stratified_split(SAMPLES, 0.2, seed=0) == (train, val)
    assert stratified_split(SAMPLES, 0.2, seed=1) != (train, val)
    single = [("a", 0), ("b", 0), ("c", 1)]  # a class of one stays in training
    assert stratified_split(single, 0.5)[1] == [("a", 0)] or stratified_split(single, 0.5)[1] == [("b", 0)]
    with pytest.raises(ValueError):
        stratified_split(SAMPLES, 1.0)


def test_fold_split_partitions_the_samples():
    folds = [fold_split(SAMPLES, f, 5, seed=0) for f in range(5)]
    vals = [v for _, v in folds]
    assert sorted(s for v in vals for s in v) == SAMPLES
    for train, val in folds:
        assert not set(train) & set(val) and len(train) + len(val) == len(SAMPLES)
        assert Counter(y for _, y in val)[0] == 18
    assert max(len(v) for v in vals) - min(len(v) for v in vals) <= 1
    with pytest.raises(ValueError):
        fold_split(SAMPLES, 5, 5)


def test_a_label_function_splits_any_items():
    records = [{"name": n, "cls": y} for n, y in SAMPLES]
    train, val = stratified_split(records, 0.2, seed=0, label=lambda r: r["cls"])
    assert [r["name"] for r in val] == [n for n, _ in stratified_split(SAMPLES, 0.2, seed=0)[1]]


def test_parse_fold():
    assert parse_fold("2/5") == (2, 5) and parse_fold(None) is None
    for bad in ("5/5", "x", "1/1"):
        with pytest.raises(AttrretError):
            parse_fold(bad)


def test_the_identity_split_keeps_identities_whole_and_is_seeded_and_order_free():
    from attrret.data.splits import identity_split

    ids = [f"person{i % 40}" for i in range(100)]  # 40 identities, several images each
    split = identity_split(ids, 0.1, 0.25, seed=3)
    assert set(split) == set(ids)
    assert Counter(split.values()) == {"train": 26, "val": 4, "test": 10}  # fractions count identities
    assert identity_split(list(reversed(ids)), 0.1, 0.25, seed=3) == split
    assert identity_split(ids, 0.1, 0.25, seed=4) != split
    with pytest.raises(ValueError, match="sum to less than 1"):
        identity_split(ids, 0.5, 0.5)
