"""The CLIP baseline learns on a tiny drawn set: loss falls and R@1 beats chance (1/8) by a wide margin.

Everything is real (timm backbone with random weights at 32 px, its last block trained, an open_clip
text transformer, the open_clip BPE tokenizer); only the sizes are tiny so the file runs in well
under a minute.
"""

from __future__ import annotations

import itertools
import json
import os

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from attrret.baseline.clip import (
    attribute_key,
    load_clip,
    resolve_eval_data,
    run_clip_baseline,
    save_clip,
    train_clip,
)
from attrret.baseline.config import ClipConfig
from attrret.baseline.tokens import UNK_ID, CaptionTokenizer
from attrret.baseline.contrastive import clip_loss, kl_positive_loss, positive_mask
from attrret.data.records import load_records
from attrret.data.track2 import read_submission
from attrret.errors import AttrretError, CheckpointError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY = dict(pretrained=False, image_size=32, trainable_stages=1, embed_dim=64, text_width=64, text_layers=1, text_heads=4,
            batch_size=32, lr=2e-3, warmup_steps=10, threads=2, seed=0)
CHANCE = 1 / 8  # 8 equally frequent (colour, type) classes in the gallery


def r_at_1(trained, test) -> float:
    """Share of test captions whose top-1 image has exactly the caption's attributes."""
    top = trained.rank([r.caption for r in test], [r.path for r in test], k=1)
    return float(np.mean([test[row[0]].values == q.values for q, row in zip(test, top)]))


@pytest.fixture(scope="module")
def data(tiny_vehicles):
    return load_records(tiny_vehicles, "train"), load_records(tiny_vehicles, "test")


@pytest.fixture(scope="module")
def trained(data):
    return train_clip(data[0], ClipConfig(**TINY, epochs=12))


def test_loss_falls_and_r1_beats_chance(trained, data):
    h = trained.history
    assert h.steps == 12 * (len(data[0]) // 32)
    assert h.stopped_by == "epochs"
    assert h.epoch_losses[-1] < 0.7 * h.first_losses[0]
    assert r_at_1(trained, data[1]) >= CHANCE + 0.5


def test_tricks_kl_positives_ema_flip_tta_learn_too(data):
    model = train_clip(data[0], ClipConfig(**TINY, epochs=8, kl_positives=True, ema=True, ema_decay=0.9, tta_flip=True))
    h = model.history
    assert h.epoch_losses[-1] < 0.5 * h.first_losses[0]
    assert r_at_1(model, data[1]) >= CHANCE + 0.5


def test_kl_loss_equals_clip_loss_without_duplicates_and_differs_with_them():
    torch.manual_seed(0)
    logits = torch.randn(6, 6) * 3
    unique = positive_mask(["a", "b", "c", "d", "e", "f"])
    assert torch.equal(unique, torch.eye(6, dtype=torch.bool))
    assert torch.allclose(kl_positive_loss(logits, unique), clip_loss(logits), atol=1e-5)
    dup = positive_mask(["a", "a", "c", "d", "e", "f"])
    assert dup[0, 1] and dup[1, 0] and dup.sum() == 8
    assert not torch.allclose(kl_positive_loss(logits, dup), clip_loss(logits))


def test_attribute_key_groups_equal_values(data):
    train = data[0]
    same = [r for r in train if r.values == train[0].values]
    other = next(r for r in train if r.values != train[0].values)
    assert len({attribute_key(r) for r in same}) == 1
    assert attribute_key(other) != attribute_key(train[0])


def test_compact_tokenizer_keeps_eot_the_largest_id_and_maps_unseen_words_to_unk():
    tok = CaptionTokenizer.fit(["This is a red Audi Sedan.", "This is a blue Audi Bus."], context_length=16)
    assert tok.vocab_size < 30
    ids = tok(["This is a red Audi Bus.", "This is a purple Audi Sedan."])
    assert ids.shape == (2, 16) and int(ids.max()) == tok.vocab_size - 1
    length = 1 + 7 + 1  # sot, 7 BPE tokens ("this is a red audi bus ."), eot
    assert int(ids[0].argmax()) == length - 1  # open_clip's argmax pooling finds the end token
    assert UNK_ID in ids[1].tolist() and UNK_ID not in ids[0].tolist()


def test_checkpoint_round_trip_gives_the_same_embeddings(trained, data, tmp_path):
    path = tmp_path / "clip.pt"
    save_clip(path, trained)
    doc = torch.load(path, weights_only=True)
    assert doc["format"].startswith("attrret.baseline.clip/")
    loaded = load_clip(path)
    paths = [r.path for r in data[1][:5]]
    caps = [r.caption for r in data[1][:5]]
    assert torch.allclose(loaded.embed_images(paths), trained.embed_images(paths), atol=1e-5)
    assert torch.allclose(loaded.embed_texts(caps), trained.embed_texts(caps), atol=1e-5)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_clip(tmp_path / "junk.pt")


def test_time_budget_stops_training(data):
    # A fake clock, one second per reading: train_clip reads it before (0) and after (1) caching,
    # the loop once before each step (step k at 2 + k), so a 10.5 s budget stops it before step 9.
    model = train_clip(data[0], ClipConfig(**TINY, epochs=10_000, time_budget=10.5), clock=itertools.count().__next__)
    assert model.history.stopped_by == "time_budget"
    assert model.history.steps == 9 and model.history.extra["cache_seconds"] == 1


def test_time_budget_spent_on_caching_still_trains_one_step(data):
    readings = itertools.chain([0.0, 100.0], itertools.count(101.0))  # caching "takes" 100 s of a 2 s budget
    logged: list[str] = []
    model = train_clip(data[0], ClipConfig(**TINY, epochs=10_000, time_budget=2.0), log=logged.append,
                       clock=lambda: next(readings))
    assert model.history.stopped_by == "time_budget" and model.history.steps == 1
    assert len(model.history.first_losses) == 1 and np.isfinite(model.history.first_losses[0])
    assert any("time budget was spent caching" in line for line in logged)


def test_run_writes_a_track2_submission_in_caption_order(tiny_vehicles, tmp_path):
    run = run_clip_baseline(tiny_vehicles, tmp_path / "w", ClipConfig(**TINY, epochs=1))
    rows = read_submission(run.submission)
    _, evalset = resolve_eval_data(tiny_vehicles)
    assert [text for text, _ in rows] == list(evalset.queries)
    names = set(evalset.image_names)
    assert all(len(found) == 10 and set(found) <= names for _, found in rows)
    metrics = json.loads(run.metrics_file.read_text())
    assert metrics["train_pairs"] == 192 and metrics["gallery"] == 48
    scores = metrics["scores"]["all"]  # the tiny set's test labels are complete: relevance by the Track-2 rule
    assert scores["n"] == 48 and 0.0 <= scores["R@1"] <= scores["R@10"] <= 1.0
    assert run.checkpoint.is_file()


def test_labels_pair_uses_a_held_split(tiny_vehicles, tmp_path):
    root = tmp_path / "pair"
    (root / "images").mkdir(parents=True)
    lines = (tiny_vehicles / "train" / "train_label.txt").read_text().splitlines()[:50]
    for line in lines:
        name = line.split("$")[0]
        (root / "images" / name).write_bytes((tiny_vehicles / "train" / "train_images" / name).read_bytes())
    (root / "labels.txt").write_text("\n".join(lines) + "\n")
    train, evalset = resolve_eval_data(root)
    assert len(train) == 40 and len(evalset.gallery) == 10
    assert not {r.image for r in train} & set(evalset.image_names)
    assert list(evalset.queries) == [r.caption for r in evalset.records]


def _cli() -> typer.Typer:
    from attrret.cli import baseline

    app = typer.Typer()
    baseline.register(app)

    @app.callback()
    def _root() -> None:  # keeps "baseline" a sub-command like in the real app
        pass

    return app


def test_cli_trains_ranks_and_prints_metrics(tiny_vehicles, tmp_path):
    result = CliRunner().invoke(
        _cli(),
        ["baseline", "clip", "--data", str(tiny_vehicles), "--out", str(tmp_path / "w"), "--random-init",
         "--image-size", "32", "--epochs", "1", "--batch-size", "32", "--tta", "flip", "--threads", "2"],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["config"]["tta_flip"] is True
    assert len(read_submission(tmp_path / "w" / "submission.json")) == 48


def test_cli_bad_data_is_a_domain_error(tmp_path):
    result = CliRunner().invoke(_cli(), ["baseline", "clip", "--data", str(tmp_path / "missing"), "--random-init"])
    assert isinstance(result.exception, AttrretError)
    assert "missing" in str(result.exception)


def test_cli_rejects_unknown_tta(tiny_vehicles):
    result = CliRunner().invoke(_cli(), ["baseline", "clip", "--data", str(tiny_vehicles), "--tta", "crop"])
    assert result.exit_code == 2


def test_pretrained_text_tower_offline_fails_fast_with_a_clear_message(data, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AttrretError, match="offline"):
        train_clip(data[0], ClipConfig(**TINY, epochs=1, text_pretrained="open_clip:RN50/openai"))
    with pytest.raises(AttrretError, match="expected open_clip:ARCH/PRETRAINED"):
        train_clip(data[0], ClipConfig(**TINY, epochs=1, text_pretrained="RN50"))
