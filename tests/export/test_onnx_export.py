"""attrret export onnx and predict --runtime onnx: the graph computes what PyTorch predict computes."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from attrret.classifiers.checkpoint import build_classifier, load_checkpoint, save_checkpoint
from attrret.classifiers.preprocess import load_batch
from attrret.errors import AttrretError, CheckpointError, InputError
from attrret.export.onnx import OPSET, GraphInfo, export_onnx
from attrret.export.onnx_runtime import graph_probs, open_graph, providers_for
from attrret.retrieval.index import open_index
from attrret.classifiers.engine import Ensemble
from attrret.ensemble import predictor_columns
from attrret.retrieval.indexer import build_index, check_fresh, file_sha256, find_members
from attrret.schema import load_schema
from tests.retrieval.conftest import cli, write_domain_gate

TOL = 1e-4
DOCS = Path(__file__).resolve().parents[2] / "docs" / "onnx.md"


def torch_probs(members, paths, *, tta: str = "none", precision: str | None = None) -> tuple[np.ndarray, dict]:
    """The PyTorch ensemble's probabilities of ``paths`` on the CPU, and their columns."""
    ensemble, schema = Ensemble.open(members, tta=tta, device="cpu", precision=precision), load_schema()
    columns = predictor_columns(ensemble, schema)
    return ensemble.probs(paths, schema, columns=columns, progress=False), columns


def images(data: Path, n: int = 7) -> list[Path]:
    """Pedestrians (tall) and vehicles (wide): every resize-pad case."""
    found = sorted((data / "images").glob("*.jpg"))
    return found[:n - 2] + found[-2:]


@pytest.fixture(scope="module")
def exported(geo_workdir, tmp_path_factory) -> Path:
    _, w = geo_workdir
    out = tmp_path_factory.mktemp("graph") / "attrret.onnx"
    export_onnx(find_members(w), out, log=lambda s: None)
    return out


def test_one_input_per_preprocessing_and_parity_with_predict(geo_workdir, exported):
    data, w = geo_workdir
    graph = open_graph(exported)
    info = graph.info
    assert [i.name for i in info.inputs] == ["images_64x32", "images_64x32_top", "images_24x24"]
    assert [(i.hw, i.crop) for i in info.inputs] == [((64, 32), "full"), ((64, 32), "top"), ((24, 24), "full")]
    assert [tuple(x.shape[1:]) for x in graph.session.get_inputs()] == [(3, 64, 32), (3, 64, 32), (3, 24, 24)]
    assert info.opset == OPSET and info.tta == "none"  # predict's default (attrret.ensemble.TTA_DEFAULT)
    assert {o.domain: o.version for o in __import__("onnx").load(str(exported)).opset_import}[""] == OPSET
    meta = graph.session.get_modelmeta().custom_metadata_map
    pre = json.loads(meta["attrret.preprocess.images_24x24"])
    assert (pre["height"], pre["width"], pre["crop_band"], pre["pad_rgb"]) == (24, 24, [0.0, 1.0], [128, 128, 128])
    assert len(pre["mean"]) == len(pre["std"]) == 3
    # the models it was built from, by content hash
    hashes = {m["task"]: m["sha256"] for m in info.models}
    tasks = ("pedestrian.gender", "pedestrian.age", "pedestrian.hat", "router")
    assert hashes == {t: file_sha256(w / "models" / t / "model.pt") for t in tasks}

    paths = images(data)
    want, columns = torch_probs(find_members(w), paths)
    assert info.columns == columns
    got = graph_probs(graph, paths, batch_size=4, progress=False)  # batches of 4 and 3: the batch axis is dynamic
    assert got.shape == want.shape and np.abs(got - want).max() <= TOL
    one = graph_probs(graph, paths[:1], progress=False)
    assert np.abs(one - want[:1]).max() <= TOL


def test_predict_equals_the_graph_equals_trainings_evaluation(geo_workdir, exported):
    """The engine predict runs, the graph exported from it and the training loop's evaluation
    (:func:`attrret.classifiers.train._view_logits`, each task's own model on the fly, through the
    same post-processing, :func:`view_probs`) give the same probabilities for the same images,
    task by task, in float32: without flip TTA (the default) and with it."""
    from attrret.classifiers import train as train_mod
    from attrret.classifiers.calibration import view_probs

    data, w = geo_workdir
    paths = images(data)
    cpu = torch.device("cpu")
    views = {}  # task -> training's (image, mirror) logits
    for flip in (False, True):
        engine, columns = torch_probs(find_members(w), paths, tta="flip" if flip else "none", precision="fp32")
        if not flip:
            assert np.abs(graph_probs(open_graph(exported), paths, progress=False) - engine).max() <= TOL
        for task, (a, b) in columns.items():
            ck = load_checkpoint(w / "models" / task)
            if task not in views:
                model = build_classifier(ck).to(memory_format=torch.channels_last)
                inputs = train_mod._Inputs(model, ck.preprocess, ck.info.crop, None, cpu, "fp32")
                views[task] = torch.from_numpy(train_mod._view_logits(model, inputs, [(str(p), 0) for p in paths], 4, cpu, "fp32"))
            trained = view_probs(views[task] if flip else views[task][:1], ck.info.temperature).numpy()
            assert np.abs(trained - engine[:, a:b]).max() <= TOL, (task, flip)


def test_one_preprocessing_is_one_input_named_images(geo_workdir, tmp_path):
    data, w = geo_workdir
    members = find_members(None, [w / "models" / "router"])
    export_onnx(members, tmp_path / "r.onnx", log=lambda s: None)
    graph = open_graph(tmp_path / "r.onnx")
    assert [i.name for i in graph.session.get_inputs()] == ["images"] and list(graph.info.columns) == ["router"]
    want, _ = torch_probs(members, images(data))
    assert np.abs(graph_probs(graph, images(data), progress=False) - want).max() <= TOL


def _shifted(models: Path, out: Path, seed: int, meta: dict | None = None) -> Path:
    """Another member: the same checkpoints, every head bias moved at random (and ``meta`` added)."""
    shutil.copytree(models, out)
    gen = torch.Generator().manual_seed(seed)
    for d in sorted(p for p in out.iterdir() if (p / "model.pt").is_file()):
        ck = load_checkpoint(d)
        state = dict(ck.stored)
        state["head.bias"] = state["head.bias"] + 2 * torch.randn(state["head.bias"].shape, generator=gen)
        save_checkpoint(d / "model.pt", {**ck.meta, **(meta or {})}, state)
    return out


def test_weighted_ensemble_matches_predict(geo_workdir, tmp_path):
    data, w = geo_workdir
    other = _shifted(w / "models", tmp_path / "b", seed=3)
    members = find_members(None, [w / "models" / "router", other / "router", w / "models" / "pedestrian.hat"],
                           weights=[1.0, 3.0, 2.0])
    export_onnx(members, tmp_path / "e.onnx", log=lambda s: None)
    graph = open_graph(tmp_path / "e.onnx")
    assert graph.info.weights == (1.0, 3.0, 2.0) and len(graph.info.inputs) == 2  # the routers share their input
    paths = images(data)
    want, columns = torch_probs(members, paths)
    single, _ = torch_probs(members[:1], paths)
    assert np.abs(want[:, slice(*columns["router"])] - single).max() > 0.01  # the second router matters
    assert np.abs(graph_probs(graph, paths, progress=False) - want).max() <= TOL


def test_a_gated_member_exports_with_its_gate(geo_workdir, tmp_path):
    """A member weighed per image by a domain gate: the graph computes the gate too, so it
    matches predict (and not the ungated ensemble); its metadata records the gate's hash."""
    import dataclasses

    data, w = geo_workdir
    other = _shifted(w / "models", tmp_path / "anchor" / "models", seed=5)
    gate_file, _ = write_domain_gate(other / "pedestrian.gender", tmp_path / "anchor" / "domain_gate.json", 1, images(data))
    members = find_members(None, [w / "models" / "pedestrian.gender", other / "pedestrian.gender"])
    members[1] = dataclasses.replace(members[1], domain_gate=gate_file)  # a lone task dir: its gate given by hand
    export_onnx(members, tmp_path / "g.onnx", log=lambda s: None)
    graph = open_graph(tmp_path / "g.onnx")
    assert [m.get("domain_gate") for m in graph.info.models] == [None, {"sha256": file_sha256(gate_file)}]
    want, _ = torch_probs(members, images(data))
    plain, _ = torch_probs([members[0], dataclasses.replace(members[1], domain_gate=None)], images(data))
    assert np.abs(want - plain).max() > 0.01  # the gate matters
    assert np.abs(graph_probs(graph, images(data), progress=False) - want).max() <= TOL


def test_checkpoint_temperature_divides_the_logits(geo_workdir, tmp_path):
    """``meta["temperature"]`` (absent: 1): softmax(logits / T), then the flip average."""
    data, w = geo_workdir
    hot = _shifted(w / "models", tmp_path / "t", seed=4, meta={"temperature": 2.5})
    export_onnx(find_members(None, [hot / "router"]), tmp_path / "t.onnx", log=lambda s: None)
    graph = open_graph(tmp_path / "t.onnx")
    assert [m["temperature"] for m in graph.info.models] == [2.5]
    ck = load_checkpoint(hot / "router")
    model = build_classifier(ck)
    x = load_batch(images(data), ck.preprocess)
    with torch.no_grad():
        want = sum((model(v) / 2.5).softmax(-1) for v in (x, torch.flip(x, dims=[3]))).numpy() / 2
    assert np.abs(graph_probs(graph, images(data), progress=False) - want).max() <= TOL


def test_predict_runtime_onnx_writes_the_torch_index(geo_workdir, exported, tmp_path):
    data, w = geo_workdir
    graph_file = tmp_path / "attrret.onnx"
    shutil.copy(exported, graph_file)  # library-exported: the CLI's export is run in the next test
    cli("predict", "--runtime", "onnx", "--onnx", str(graph_file), "--images", str(data), "-o", str(tmp_path / "onnx-idx"), "-q")
    build_index(data, tmp_path / "torch-idx", Ensemble.open(find_members(w), device="cpu"), progress=False)
    a, b = open_index(tmp_path / "onnx-idx"), open_index(tmp_path / "torch-idx")
    assert a.names == b.names and a.header.columns == b.header.columns and len(a) == 32
    assert np.abs(np.asarray(a.probs) - np.asarray(b.probs)).max() <= TOL
    # the header says what produced it: the graph file, and the checkpoints the graph came from
    digest = file_sha256(graph_file)
    assert {m["sha256"] for m in a.header.models} == {digest}
    assert {m["runtime"] for m in a.header.models} == {"onnxruntime"}
    assert {m["task"]: m["checkpoint_sha256"] for m in a.header.models} == {m["task"]: m["sha256"] for m in b.header.models}
    assert a.header.img_sizes == b.header.img_sizes and a.header.tta == b.header.tta == "none"
    check_fresh(a)
    # the same graph again: every row reused; another graph over the same file: a stale index
    again = cli("predict", "--runtime", "onnx", "--onnx", str(graph_file), "--images", str(data), "-o", str(tmp_path / "onnx-idx"), "-q")
    assert "(0 predicted, 32 reused" in again.stdout
    export_onnx(find_members(None, [w / "models" / "router"]), graph_file, force=True, log=lambda s: None)
    with pytest.raises(CheckpointError, match="stale index"):
        check_fresh(open_index(tmp_path / "onnx-idx"))


def test_onnx_runtime_shards_merge_into_the_single_run_index(geo_workdir, exported, tmp_path):
    """``--shard I/N`` takes any predictor: graph shards merged are the single graph run's index."""
    data, _ = geo_workdir
    onnx = ("--runtime", "onnx", "--onnx", str(exported), "--images", str(data), "-q")
    cli("predict", *onnx, "-o", str(tmp_path / "one"))
    out = tmp_path / "sharded"
    for i in range(2):
        cli("predict", *onnx, "-o", str(out), "--shard", f"{i}/2")
    cli("index", "merge", "-o", str(out), "--remove-shards")
    a, b = open_index(tmp_path / "one"), open_index(out)
    assert a.names == b.names and a.header.settings() == b.header.settings() and a.header.gate == "none"
    assert np.array_equal(np.asarray(a.probs), np.asarray(b.probs))


def test_docs_example_runs_without_attrret(geo_workdir, exported, tmp_path, monkeypatch):
    """docs/onnx.md's numpy + onnxruntime + PIL block, run as written: its preprocessing is
    load_batch's, so its probabilities are predict's."""
    data, w = geo_workdir
    block = re.search(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S).group(1)
    photo = images(data)[-1]  # a wide vehicle: padded top and bottom
    shutil.copy(exported, tmp_path / "attrret.onnx")
    shutil.copy(photo, tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, str(DOCS), "exec"), scope)  # noqa: S102 - our own documentation
    for inp in open_graph(exported).info.inputs:
        assert np.array_equal(scope["feeds"][inp.name], load_batch([photo], inp.preprocess(), inp.crop).numpy())
    want, _ = torch_probs(find_members(w), [photo])
    assert np.abs(scope["probs"] - want[0]).max() <= TOL


# ---------------------------------------------------------------------------------------- bad input
def test_existing_output_is_replaced_only_with_force_and_only_if_ours(geo_workdir, exported, tmp_path):
    _, w = geo_workdir
    members = find_members(None, [w / "models" / "router"])
    mine = tmp_path / "mine.onnx"
    shutil.copy(exported, mine)
    with pytest.raises(InputError, match="exists; add --force"):
        export_onnx(members, mine, log=lambda s: None)
    proc = cli("export", "onnx", "--models", str(w / "models" / "router"), "-o", str(mine), "--force")
    assert "opset 18, inputs images [N,3,24,24], output probs [N,2]" in proc.stdout
    assert list(open_graph(mine).info.columns) == ["router"]
    # deterministic: the same checkpoints give the same bytes, so a re-export keeps indexes fresh
    export_onnx(members, tmp_path / "again.onnx", log=lambda s: None)
    assert file_sha256(tmp_path / "again.onnx") == file_sha256(mine)
    theirs = tmp_path / "notes.onnx"
    theirs.write_text("my notes\n")
    with pytest.raises(InputError, match="not a graph attrret exported; refusing"):
        export_onnx(members, theirs, force=True, log=lambda s: None)
    assert theirs.read_text() == "my notes\n"
    proc = cli("export", "onnx", "--workdir", str(w), "-o", str(mine), check=False)
    assert proc.returncode == 1 and "exists; add --force" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_models_is_one_error(tmp_path):
    proc = cli("export", "onnx", "--workdir", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.onnx"), check=False)
    assert proc.returncode == 1 and "no trained models" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_what_is_not_an_attrret_graph_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    with pytest.raises(InputError, match="no such ONNX file"):
        open_graph(tmp_path / "missing.onnx")
    text = tmp_path / "labels.onnx"
    text.write_text("000001.jpg$1,0$A pedestrian.\n")
    with pytest.raises(InputError, match="not an ONNX model"):
        open_graph(text)
    foreign = tmp_path / "identity.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x],
                                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]),
                              opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
    onnx.save(model, foreign)
    with pytest.raises(InputError, match="not one attrret exported"):
        open_graph(foreign)
    proc = cli("predict", "--runtime", "onnx", "--onnx", str(text), "--images", str(tmp_path), "-o", str(tmp_path / "i"), check=False)
    assert proc.returncode == 1 and "not an ONNX model" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "i").exists()


def test_runtime_onnx_usage_errors(tmp_path):
    proc = cli("predict", "--onnx", "x.onnx", "--runtime", "torch", "--images", str(tmp_path), check=False)
    assert proc.returncode == 2 and "--onnx is read only with --runtime onnx" in proc.stderr
    proc = cli("predict", "--runtime", "onnx", "--onnx", "x.onnx", "--models", str(tmp_path), "--images", str(tmp_path), check=False)
    assert proc.returncode == 2 and "fixed when it is exported" in proc.stderr


def test_flip_tta_is_fixed_in_the_graph(geo_workdir, exported, tmp_path):
    """``export onnx --tta flip`` puts the mirror image in the graph (== predict --tta flip);
    ``predict --runtime onnx --tta`` must agree with the graph it runs."""
    data, w = geo_workdir
    flip = tmp_path / "flip.onnx"
    export_onnx(find_members(w), flip, log=lambda s: None, tta_flip=True)
    graph = open_graph(flip)
    assert graph.info.tta == "flip"
    paths = images(data)
    want, _ = torch_probs(find_members(w), paths, tta="flip")
    assert np.abs(graph_probs(graph, paths, progress=False) - want).max() <= TOL
    plain, _ = torch_probs(find_members(w), paths)
    assert np.abs(plain - want).max() > 1e-3  # the flip changes the numbers: the test above can fail
    proc = cli("predict", "--runtime", "onnx", "--onnx", str(exported), "--tta", "flip", "--images", str(data),
               "-o", str(tmp_path / "i"), check=False)
    assert proc.returncode == 2 and "exported with --tta none" in proc.stderr and not (tmp_path / "i").exists()


def test_missing_onnxruntime_says_how_to_install(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(AttrretError, match=re.escape('pip install "attrret[onnx]"')):
        open_graph(exported)


def test_devices_map_to_onnxruntime_providers():
    cpu_only = ["CPUExecutionProvider"]
    assert providers_for("auto", cpu_only) == providers_for("cpu", cpu_only) == cpu_only
    assert providers_for("auto", ["CUDAExecutionProvider", *cpu_only])[0] == "CUDAExecutionProvider"
    assert providers_for("cuda:1", ["CUDAExecutionProvider", *cpu_only])[0] == ("CUDAExecutionProvider", {"device_id": 1})
    with pytest.raises(AttrretError, match="no CUDA provider"):
        providers_for("cuda", cpu_only)
    with pytest.raises(AttrretError, match="unsupported device"):
        providers_for("tpu", cpu_only)


def test_metadata_round_trips(exported):
    info = open_graph(exported).info
    assert GraphInfo.from_metadata(info.to_metadata(), "x") == info
    for key, value in (("attrret.columns", "{not json"), ("attrret.opset", "eighteen"), ("attrret.inputs", "[]"),
                       ("attrret.preprocess.images_24x24", '{"input": "images_24x24", "height": 0}')):
        with pytest.raises(InputError, match="damaged attrret metadata"):
            GraphInfo.from_metadata({**info.to_metadata(), key: value}, "x")


def _with_metadata(graph: Path, out: Path, **changes: str) -> Path:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(graph))
    props = {p.key: p.value for p in model.metadata_props}
    props.update(changes)
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(out))
    return out


@pytest.mark.parametrize("case", ["empty models", "empty weights", "100,000-pixel input", "1e9-pixel width"])
def test_metadata_that_would_misbehave_is_one_error(geo_workdir, exported, tmp_path, case):
    """An empty models list (no header entries, a traceback before) and a claimed input size that
    would allocate until MemoryError are refused when the graph is opened, with no work done."""
    data, _ = geo_workdir
    info = open_graph(exported).info
    first = info.inputs[0]
    pre = json.dumps({**first.to_json(), "height": 100_000}) if case == "100,000-pixel input" else (
        json.dumps({**first.to_json(), "width": 10**9}))
    changes = {"empty models": {"attrret.models": "[]"}, "empty weights": {"attrret.weights": "[]"},
               "100,000-pixel input": {f"attrret.preprocess.{first.name}": pre},
               "1e9-pixel width": {f"attrret.preprocess.{first.name}": pre}}[case]
    bad = _with_metadata(exported, tmp_path / "bad.onnx", **changes)
    proc = cli("predict", "--images", str(data), "-o", str(tmp_path / "index"), "--runtime", "onnx", "--onnx", str(bad),
               "--quiet", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "damaged attrret metadata" in proc.stderr and not (tmp_path / "index").exists()


def test_a_graph_replaced_while_it_opens_is_recorded_as_the_graph_that_runs(exported, tmp_path, monkeypatch):
    """The session and the hash the index records come from one read of the file: a re-export
    landing between the two cannot put the new graph's hash beside rows of the old one."""
    import hashlib

    import onnxruntime as ort

    graph = tmp_path / "g.onnx"
    shutil.copy(exported, graph)
    original = hashlib.sha256(graph.read_bytes()).hexdigest()
    real = ort.InferenceSession

    def replaced_meanwhile(model, *a, **k):
        session = real(model, *a, **k)
        graph.write_bytes(graph.read_bytes() + b"\0")  # the re-export lands now
        return session

    monkeypatch.setattr(ort, "InferenceSession", replaced_meanwhile)
    assert open_graph(graph).sha256 == original
