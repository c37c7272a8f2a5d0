"""Index building with real tiny models: incremental runs, ensembles, TTA, stale refusal."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from attrret.classifiers.engine import Ensemble
from attrret.errors import CheckpointError, InputError
from attrret.io import file_sha256
from attrret.retrieval.indexer import build_index, check_fresh, find_members, list_gallery
from attrret.retrieval.index import open_index
from attrret.schema import load_schema
from tests.retrieval.conftest import pooled_fronts, write_domain_gate


def test_incremental_only_predicts_new_images(trained, tmp_path):
    data, work = trained
    gallery = tmp_path / "g"
    shutil.copytree(data / "test" / "test_images", gallery)
    members = Ensemble.open(find_members(work))
    extra = sorted(gallery.iterdir())[:3]
    held = tmp_path / "later"
    held.mkdir()
    for p in extra:
        shutil.move(p, held / p.name)
    first = build_index(gallery, tmp_path / "idx", members, progress=False)
    assert first.predicted == first.total
    before = open_index(tmp_path / "idx")
    for p in held.iterdir():
        shutil.move(p, gallery / p.name)
    second = build_index(gallery, tmp_path / "idx", members, progress=False)
    assert (second.predicted, second.reused) == (3, first.total)
    after = open_index(tmp_path / "idx")
    keep = [after.names.index(n) for n in before.names]
    assert np.array_equal(np.asarray(after.probs[keep]), np.asarray(before.probs))
    # same result as a fresh full build
    full = build_index(gallery, tmp_path / "full", members, progress=False)
    assert full.predicted == second.total
    assert np.allclose(np.asarray(open_index(tmp_path / "full").probs), np.asarray(after.probs), atol=1e-6)
    # other settings (flip TTA) recompute everything
    assert build_index(gallery, tmp_path / "idx", Ensemble.open(find_members(work), tta="flip"), progress=False).predicted == second.total
    assert open_index(tmp_path / "idx").header.tta == "flip"


def _shifted_copy(models: Path, out: Path, seed: int) -> Path:
    """A second, different member: the same checkpoints with every head bias moved at random."""
    import torch

    from attrret.classifiers.checkpoint import load_checkpoint, save_checkpoint

    shutil.copytree(models, out)
    gen = torch.Generator().manual_seed(seed)
    for d in sorted(p for p in out.iterdir() if (p / "model.pt").is_file()):
        ck = load_checkpoint(d)
        state = dict(ck.state_dict)
        state["head.bias"] = state["head.bias"] + torch.randn(state["head.bias"].shape, generator=gen)
        save_checkpoint(d / "model.pt", ck.meta, state)
    return out


def test_ensemble_is_the_weighted_mean(trained, tmp_path):
    """Two different members, weights 1 and 3 (not summing to 1): every column of the ensemble
    index is (1 p_a + 3 p_b) / 4 of the members' own indexes (ungated: with the router gate, each
    member's own router would route some images elsewhere than the ensemble's)."""
    data, work = trained
    other = _shifted_copy(work / "models", tmp_path / "other", seed=0)
    src = data / "test" / "test_images"
    ia = open_index(build_index(src, tmp_path / "a", Ensemble.open(find_members(None, models=[work / "models"])), progress=False, gate="none").path)
    ib = open_index(build_index(src, tmp_path / "b", Ensemble.open(find_members(None, models=[other])), progress=False, gate="none").path)
    pa, pb = np.asarray(ia.probs, np.float64), np.asarray(ib.probs, np.float64)
    assert np.abs(pa - pb).max() > 0.05  # the members really differ
    ens = find_members(None, models=[work / "models", other], weights=[1.0, 3.0])
    assert [m.weight for m in ens] == [1.0, 3.0]
    ie = open_index(build_index(src, tmp_path / "ens", Ensemble.open(ens), progress=False, gate="none").path)
    assert np.allclose(np.asarray(ie.probs), (1.0 * pa + 3.0 * pb) / 4.0, atol=1e-6)
    assert ie.header.weights == (1.0, 3.0) and len(ie.header.models) == 2 * len(ia.header.models)
    with pytest.raises(CheckpointError, match="2 ensemble members"):
        find_members(None, models=[work / "models", work / "models"], weights=[1.0])
    with pytest.raises(CheckpointError, match="no model set trained at 999x999"):
        find_members(work, img_sizes=[999])
    assert [m.img_sizes for m in find_members(work, img_sizes=[32])] == [((32, 32),)]


def _gate_probability(gate, models: Path, images, flip: bool) -> np.ndarray:
    """Brute force: the gate's logit on each image's pooled front output and (``flip``) on its
    mirror's, averaged, through the sigmoid."""
    z = np.mean([p @ np.asarray(gate.weight) + gate.bias for p in pooled_fronts(models / "pedestrian.gender", images, flip)], axis=0)
    return 1.0 / (1.0 + np.exp(-z))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_gated_member_weighs_each_image_by_its_domain_gate(trained, tmp_path, precision):
    """A member with ``domain_gate.json`` beside its models weighs ``weight * g(image)``: every
    column of the ensemble index is ``(1 p_a + 3 g p_b) / (1 + 3 g)`` per row, ``g`` the gate's
    probability computed by brute force; tasks the gated member lacks are the other member's;
    router gating gives each row's subject the same columns; the gate is found without flags,
    recorded in the header, and a changed gate makes the index stale. Both precisions forced."""
    from attrret.classifiers.runtime import cpu_bf16_is_fast
    from attrret.precisions import MIXED_TOLERANCE

    data, work = trained
    other = _shifted_copy(work / "models", tmp_path / "anchor" / "models", seed=1)
    shutil.rmtree(other / "router")  # the gated member: no router, as the anchor member has none
    src = data / "test" / "test_images"
    images = [p for _, p in list_gallery(src)]
    gate_file, gate = write_domain_gate(other / "pedestrian.gender", tmp_path / "anchor" / "domain_gate.json", 2, images)
    tol = 1e-5 if precision == "fp32" else MIXED_TOLERANCE

    def index(name, members, gate_mode="none"):
        built = build_index(src, tmp_path / name, Ensemble.open(members, precision=precision), progress=False, gate=gate_mode)
        return open_index(built.path)

    ia = index("a", find_members(None, models=[work / "models"]))
    ib = index("b", find_members(None, models=[other]))
    ens = find_members(None, models=[work / "models", other], weights=[1.0, 3.0])
    assert ens[0].domain_gate is None and ens[1].domain_gate == gate_file
    ie = index("ens", ens)
    g = _gate_probability(gate, other, images, ie.header.tta == "flip")[:, None]
    assert g.min() < 0.2 and g.max() > 0.8  # the gate really weighs images differently
    for task in ib.header.columns:
        pa, pb = (np.asarray(i.probs[:, i.cols(task)], np.float64) for i in (ia, ib))
        assert np.abs(np.asarray(ie.probs[:, ie.cols(task)]) - (pa + 3 * g * pb) / (1 + 3 * g)).max() <= tol, task
    assert np.array_equal(np.asarray(ie.probs[:, ie.cols("router")]), np.asarray(ia.probs[:, ia.cols("router")]))
    assert {m["domain_gate"]["sha256"] for m in ie.header.models if m["member"] == 1} == {file_sha256(gate_file)}
    assert not any("domain_gate" in m for m in ie.header.models if m["member"] == 0)
    routed = index("routed", ens, "router")
    kinds = np.asarray(routed.probs[:, routed.cols("router")]).argmax(1)
    rows = np.flatnonzero(kinds == load_schema().router.classes.index("pedestrian"))
    assert len(rows)
    for task in (t for t in ib.header.columns if load_schema().task(t).subject == "pedestrian"):
        assert np.abs(np.asarray(routed.probs[rows, routed.cols(task)]) - np.asarray(ie.probs[rows, ie.cols(task)])).max() <= (
            tol if precision == "fp32" or not cpu_bf16_is_fast() else 2 * tol), task
    check_fresh(ie)
    gate_file.write_text(gate_file.read_text() + "\n")  # another gate file: another hash
    with pytest.raises(CheckpointError, match="stale index: .*domain gate"):
        check_fresh(ie)


def test_a_gated_member_alone_is_its_own_models_and_bad_gates_are_refused(trained, tmp_path):
    """However small its gate's probabilities, a gated member alone predicts what its models do
    (the gate is floored, so no row has 0 / 0); a gate on a front no model has and an unreadable
    gate file are each one clear error."""
    import dataclasses

    from attrret.classifiers.engine import Engine

    data, work = trained
    src = data / "test" / "test_images"
    gate_file, gate = write_domain_gate(work / "models" / "pedestrian.gender", tmp_path / "gate.json", 0, [p for _, p in list_gallery(src)])
    dataclasses.replace(gate, weight=tuple(0.0 for _ in gate.weight), bias=-200.0).save(gate_file)  # sigmoid(-200): 0 in float32
    [m] = find_members(None, models=[work / "models"])
    plain = open_index(build_index(src, tmp_path / "plain", Ensemble.open([m], precision="fp32"), progress=False, gate="none").path)
    alone = open_index(build_index(src, tmp_path / "alone", Ensemble.open([dataclasses.replace(m, domain_gate=gate_file)],
                                                                           precision="fp32"), progress=False, gate="none").path)
    assert np.abs(np.asarray(alone.probs) - np.asarray(plain.probs)).max() <= 1e-6
    dataclasses.replace(gate, front_hash="0" * 20).save(tmp_path / "elsewhere.json")
    with pytest.raises(CheckpointError, match="reads a front none of the ensemble's models has"):
        Engine.build([m, dataclasses.replace(m, domain_gate=tmp_path / "elsewhere.json")])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable domain gate"):
        Engine.build([m, dataclasses.replace(m, domain_gate=tmp_path / "bad.json")])


def test_stale_index_refused(trained, tmp_path):
    data, work = trained
    w2 = tmp_path / "w"
    shutil.copytree(work / "models", w2 / "models")
    build_index(data / "test" / "test_images", tmp_path / "idx", Ensemble.open(find_members(w2)), progress=False)
    idx = open_index(tmp_path / "idx")
    check_fresh(idx)
    ck = w2 / "models" / "router" / "model.pt"
    ck.write_bytes(ck.read_bytes() + b"\0")
    with pytest.raises(CheckpointError, match="stale index"):
        check_fresh(idx)


def test_gallery_sources(trained, tmp_path):
    data, _ = trained
    t2 = list_gallery(data)
    assert [n for n, _ in t2] == sorted(p.name for p in (data / "test" / "test_images").iterdir())
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"{p}\n" for _, p in t2[:2]))
    assert [n for n, _ in list_gallery(lst)] == [n for n, _ in t2[:2]]
    lst.write_text(f"{t2[0][1]}\nmissing.jpg\n")
    with pytest.raises(InputError, match=r"list.txt:2: image 'missing.jpg' not found"):
        list_gallery(lst)
    labelled = list_gallery(data / "test" / "test_label.txt")
    assert len(labelled) == len(t2)
