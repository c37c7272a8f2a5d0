"""The core path in every precision, on every host: train, predict, rank, search, attributes,
shards and merge, ONNX export parity and the demo's fast path, under fp32 and forced bf16 (and
fp16, which PyTorch's CPU autocast also runs).

A host without native bf16 makes ``auto`` fp32, so the bf16 path that most current servers take
(and the fp16 path every GPU takes) would never run in a test if the host chose. Forcing each
precision here makes this suite fail on an AVX2-only host whenever the mixed path breaks.

Tolerance (docs/precision.md): the same models' index probabilities in bf16 and fp32 differ by
at most :data:`attrret.precisions.MIXED_TOLERANCE` per entry; byte-identity (shards vs one run)
holds within one precision.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from attrret.precisions import MIXED_TOLERANCE, PRECISION_ENV
from tests.retrieval.conftest import cli

PRECISIONS = ["fp32", "bf16", "fp16"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("precision-data") / "syn"
    cli("data", "synth", "--out", str(data), "--pedestrians", "40", "--vehicles", "30", "--test-fraction", "0.4")
    return data


@pytest.fixture(scope="module", params=PRECISIONS)
def trained_in(request, synth, tmp_path_factory) -> tuple[str, Path]:
    """Every task trained in one forced precision through the CLI (1 epoch, 32 px)."""
    precision = request.param
    work = tmp_path_factory.mktemp(f"precision-{precision}") / "w"
    cli("train", "--task", "all", "--data", str(synth), "--workdir", str(work), "--backbone", "timm:test_efficientnet",
        "--random-init", "--img-size", "32", "--epochs", "1", "--batch-size", "16", "--quiet", "--precision", precision)
    return precision, work


def index_probs(index: Path) -> tuple[dict, np.ndarray, list[str]]:
    from attrret.retrieval.index import open_index

    ix = open_index(index)
    return ix.header.to_json(), np.array(ix.probs), list(ix.names)


def own_columns(header: dict, probs: np.ndarray) -> np.ndarray:
    """A bool per (row, column): the router's columns and those of the row's own subject (the
    router's argmax), the columns a router-gated index computes (attrret.retrieval.indexer)."""
    from attrret.schema import SUBJECTS, load_schema

    router = load_schema().router.task
    a, b = header["columns"][router]
    kinds = probs[:, a:b].argmax(axis=1)
    own = np.zeros(probs.shape, bool)
    for task, (s0, s1) in header["columns"].items():
        own[:, s0:s1] = True if task == router else (kinds == SUBJECTS.index(task.split(".")[0]))[:, None]
    return own


def check_probabilities(header: dict, probs: np.ndarray) -> None:
    assert probs.dtype == np.float32 and np.isfinite(probs).all()
    for task, (a, b) in header["columns"].items():
        assert np.allclose(probs[:, a:b].sum(1), 1.0, atol=1e-4), task


def test_core_path_in_each_precision(trained_in, synth, tmp_path):
    precision, work = trained_in
    from attrret.classifiers.checkpoint import list_model_dirs, load_checkpoint

    cks = [load_checkpoint(d) for d in list_model_dirs(work)]
    assert len(cks) >= 10 and {ck.meta["precision"] for ck in cks} == {precision}  # what ran is recorded
    assert all(np.isfinite(t.float().numpy()).all() for ck in cks for t in ck.stored.values() if t.is_floating_point())

    index = tmp_path / "index"
    run = cli("predict", "--images", str(synth), "--workdir", str(work), "-o", str(index), "--precision", precision)
    header, probs, names = index_probs(index)
    assert header["precision"] == precision
    check_probabilities(header, probs)

    test = synth / "test"
    sub = tmp_path / "sub.json"
    cli("rank", "--queries", str(test / "test_text.txt"), "--index", str(index), "-o", str(sub))
    scores = json.loads(cli("evaluate", "--submission", str(sub), "--labels", str(test / "test_label.txt"), "--json").stdout)
    assert 0.0 <= scores["all"]["sound_map@10"] <= scores["all"]["official_map@10"] <= 1.0
    hits = json.loads(cli("search", "a woman with a backpack", "--index", str(index), "-k", "5", "--json").stdout)
    assert len(hits["results"]) == 5

    records = tmp_path / "attrs.jsonl"
    cli("attributes", str(test / "test_images"), "--workdir", str(work), "-o", str(records), "--precision", precision, "--quiet")
    from_images = {r["name"]: r for r in map(json.loads, records.read_text().splitlines())}
    from_index = {r["name"]: r for r in map(json.loads, cli("attributes", "--index", str(index)).stdout.splitlines())}
    assert from_images.keys() == from_index.keys() == set(names)
    for name, r in from_images.items():  # the same engine, the same precision: the same numbers
        assert r["kind"] == from_index[name]["kind"] and abs(r["kind_prob"] - from_index[name]["kind_prob"]) < 1e-5

    # shards and merge: byte-identical to the single run, within one precision
    for i in range(2):
        cli("predict", "--images", str(synth), "--workdir", str(work), "-o", str(tmp_path / "merged"), "--shard", f"{i}/2",
            "--precision", precision, "--quiet")
    cli("index", "merge", "-o", str(tmp_path / "merged"))
    merged_header, merged, merged_names = index_probs(tmp_path / "merged")
    assert merged_names == names and merged_header["precision"] == precision
    assert merged.tobytes() == probs.tobytes()

    # ONNX: exported in float32, checked against PyTorch in this precision; its index within the tolerance
    graph = tmp_path / "m.onnx"
    cli("export", "onnx", "--workdir", str(work), "-o", str(graph), "--precision", precision, "--quiet")
    cli("predict", "--images", str(synth), "-o", str(tmp_path / "onnx-index"), "--runtime", "onnx", "--onnx", str(graph), "--quiet")
    onnx_header, onnx_probs, _ = index_probs(tmp_path / "onnx-index")
    assert onnx_header["precision"] == "fp32"
    # the graph runs every model (ungated): compare the router and each image's own subject
    own = own_columns(header, probs)
    assert np.abs(onnx_probs - probs)[own].max() <= (1e-4 if precision == "fp32" else MIXED_TOLERANCE)
    assert run.returncode == 0


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_demo_fast_path_in_each_precision(precision, synth, tmp_path):
    """``attrret demo --fast`` on a small Track-2 folder: trains, predicts, ranks and evaluates."""
    out = cli("demo", "--fast", "--data", str(synth), "--workdir", str(tmp_path / "w"), "--precision", precision)
    assert "submission:" in out.stdout
    header, probs, _ = index_probs(tmp_path / "w" / "index")
    assert header["precision"] == precision
    check_probabilities(header, probs)


def test_the_environment_variable_forces_the_precision(trained, tmp_path):
    """``ATTRRET_PRECISION=bf16`` is what ``--precision bf16`` is."""
    data, work = trained
    env = {**os.environ, PRECISION_ENV: "bf16"}
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "attrret", "predict", "--images", str(data), "--workdir", str(work),
                    "-o", str(tmp_path / "index"), "--quiet"], check=True, env=env, capture_output=True)
    assert index_probs(tmp_path / "index")[0]["precision"] == "bf16"


def test_bf16_and_fp32_indexes_of_the_same_models_agree(trained, tmp_path):
    """Same gallery, same models: both indexes finite, within the tolerance, top-10 lists mostly alike."""
    data, work = trained
    out = {}
    for precision in ("fp32", "bf16"):
        cli("predict", "--images", str(data), "--workdir", str(work), "-o", str(tmp_path / precision), "--precision", precision,
            "--quiet")
        header, probs, names = index_probs(tmp_path / precision)
        assert header["precision"] == precision
        check_probabilities(header, probs)
        sub = tmp_path / f"{precision}.json"
        cli("rank", "--queries", str(data / "test" / "test_text.txt"), "--index", str(tmp_path / precision), "-o", str(sub))
        out[precision] = (probs, names, json.loads(sub.read_text())["results"], own_columns(header, probs))
    (p32, n32, r32, own32), (p16, n16, r16, own16) = out["fp32"], out["bf16"]
    assert n32 == n16
    # router-gated: each index computed the router and each image's own subject (an image the two
    # precisions route apart has the other subject uniform in one of them)
    assert np.abs(p32 - p16)[own32 & own16].max() <= MIXED_TOLERANCE
    def agree(a: list[str], b: list[str]) -> float:  # two empty lists (no image of the query's kind) agree
        return len(set(a) & set(b)) / max(len(a), len(b)) if (a or b) else 1.0

    overlap = [agree(a["image_names"], b["image_names"]) for a, b in zip(r32, r16)]
    assert len(overlap) == len(r32) > 0 and float(np.mean(overlap)) >= 0.8
