"""``--runtime auto``: onnxruntime on the models' cached per-subject graphs for float32 CPU runs, gated like the engine."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from attrret.classifiers.engine import Ensemble
from attrret.export import onnx_cache
from attrret.export.onnx_cache import cached_graphs, onnx_installed, prefers_onnx
from attrret.retrieval.index import open_index
from attrret.retrieval.indexer import build_index, check_fresh, find_members
from attrret.schema import load_schema
from tests.retrieval.conftest import cli

TOL = 1e-4


@pytest.fixture(scope="module")
def mixed(geo_workdir, tmp_path_factory) -> tuple[Path, Path]:
    """geo_workdir's router and pedestrian models plus a vehicle.color model: three parts."""
    from attrret.classifiers.train import TrainConfig, train_tasks

    data, w = geo_workdir
    root = tmp_path_factory.mktemp("mixed")
    shutil.copytree(w / "models", root / "w" / "models")
    train_tasks(TrainConfig(task="vehicle.color", data=str(data), workdir=str(root / "w"), backbone="timm:test_efficientnet",
                            pretrained=False, img_size=(24, 32), epochs=1, batch_size=8, trainable_blocks=0, device="cpu"),
                progress=False)
    return data, root / "w"


def test_auto_prefers_onnxruntime_for_cpu_runs_unless_a_mixed_precision_is_asked_for(monkeypatch):
    """The rule, on any host: it reads the requested precision, not what the host resolves it to."""
    from attrret.precisions import PRECISION_ENV

    monkeypatch.delenv(PRECISION_ENV, raising=False)
    assert prefers_onnx("cpu", None) == prefers_onnx("cpu", "auto") == prefers_onnx("cpu", "fp32") == onnx_installed()
    assert not prefers_onnx("cpu", "bf16") and not prefers_onnx("cpu", "fp16")
    monkeypatch.setenv(PRECISION_ENV, "bf16")
    assert not prefers_onnx("cpu", None) and prefers_onnx("cpu", "fp32") == onnx_installed()


def test_gated_graphs_give_the_torch_fp32_index(mixed, tmp_path):
    data, w = mixed
    schema = load_schema()
    ensemble = Ensemble.open(find_members(w), device="cpu", precision="fp32")
    graphs = cached_graphs(ensemble, schema, cache_dir=tmp_path / "cache", log=lambda s: None)
    assert set(graphs.parts) == {"router", "pedestrian", "vehicle"}
    a = open_index(build_index(data, tmp_path / "ort", graphs, progress=False).path)
    b = open_index(build_index(data, tmp_path / "torch", ensemble, progress=False).path)
    assert a.header.gate == b.header.gate == "router" and a.header.precision == "fp32"
    assert a.names == b.names and a.header.columns == b.header.columns
    assert np.abs(np.asarray(a.probs) - np.asarray(b.probs)).max() <= TOL
    # rows of the other kind hold the uniform distribution in both
    kinds = np.asarray(a.probs)[:, slice(*a.header.columns["router"])].argmax(1)
    c0, c1 = a.header.columns["vehicle.color"]
    assert np.array_equal(np.asarray(a.probs)[kinds == 0, c0:c1], np.full(((kinds == 0).sum(), c1 - c0), 1 / (c1 - c0), np.float32))
    # the header says which runtime computed the rows: the two indexes never share rows
    assert {m["runtime"] for m in a.header.models} == {"onnxruntime"} and a.header.settings() != b.header.settings()
    check_fresh(a)


@pytest.mark.slow
def test_the_cache_is_reused_and_keyed_by_what_the_graphs_compute(mixed, tmp_path, monkeypatch):
    data, w = mixed
    schema = load_schema()
    ensemble = Ensemble.open(find_members(w), device="cpu", precision="fp32")
    first = cached_graphs(ensemble, schema, cache_dir=tmp_path, log=lambda s: None)

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr("attrret.export.onnx.export_onnx", no_export)
    again = cached_graphs(ensemble, schema, cache_dir=tmp_path, log=lambda s: None)
    assert {p: g.sha256 for p, g in again.parts.items()} == {p: g.sha256 for p, g in first.parts.items()}
    with pytest.raises(AssertionError, match="exported again"):  # another TTA is another graph
        cached_graphs(Ensemble.open(find_members(w), tta="flip", device="cpu", precision="fp32"), schema, cache_dir=tmp_path,
                      log=lambda s: None)
    monkeypatch.undo()
    broken = first.parts["router"].path
    broken.write_bytes(b"not onnx")  # a cached graph that no longer opens is exported again
    healed = cached_graphs(ensemble, schema, cache_dir=tmp_path, log=lambda s: None)
    assert healed.parts["router"].sha256 == first.parts["router"].sha256


@pytest.mark.slow
def test_cli_auto_runs_onnxruntime_on_the_cpu_and_torch_when_pinned(mixed, tmp_path, monkeypatch):
    from attrret.precisions import PRECISION_ENV

    data, w = mixed
    monkeypatch.setenv("ATTRRET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(onnx_cache.RUNTIME_ENV, raising=False)
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    auto = cli("predict", "--images", str(data), "-w", str(w), "-o", str(tmp_path / "auto"), "--device", "cpu", "-q")
    assert "runtime: onnxruntime" in auto.stderr
    index = open_index(tmp_path / "auto")
    assert {m["runtime"] for m in index.header.models} == {"onnxruntime"} and index.header.precision == "fp32"
    mixed_precision = cli("predict", "--images", str(data), "-w", str(w), "-o", str(tmp_path / "bf16"), "--precision", "bf16", "-q")
    assert "onnxruntime" not in mixed_precision.stderr and open_index(tmp_path / "bf16").header.precision == "bf16"
    torch_run = cli("predict", "--images", str(data), "-w", str(w), "-o", str(tmp_path / "torch"), "--runtime", "torch", "-q")
    assert "onnxruntime" not in torch_run.stderr and "runtime" not in open_index(tmp_path / "torch").header.models[0]
    bad = cli("predict", "--images", str(data), "-w", str(w), "-o", str(tmp_path / "x"), "--runtime", "onnx", "--precision", "bf16",
              check=False)
    assert bad.returncode != 0 and "bf16" in bad.stderr  # onnxruntime runs float32 (or: this CPU has no bf16)
