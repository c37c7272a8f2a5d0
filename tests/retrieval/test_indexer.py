"""Index building with real tiny models: incremental runs, ensembles, TTA, stale refusal."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from attrret.classifiers.engine import Ensemble
from attrret.errors import CheckpointError, InputError
from attrret.retrieval.indexer import build_index, check_fresh, find_members, list_gallery
from attrret.retrieval.index import open_index


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
