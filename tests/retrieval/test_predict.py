"""Index building with real tiny models: incremental runs, ensembles, TTA, stale refusal."""

import shutil

import numpy as np
import pytest

from attrret.errors import CheckpointError, InputError
from attrret.retrieval.predict import build_index, check_fresh, find_members, list_gallery
from attrret.retrieval.index import open_index


def test_incremental_only_predicts_new_images(trained, tmp_path):
    data, work = trained
    gallery = tmp_path / "g"
    shutil.copytree(data / "test" / "test_images", gallery)
    members = find_members(work)
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
    # other settings (no TTA) recompute everything
    assert build_index(gallery, tmp_path / "idx", members, tta_flip=False, progress=False).predicted == second.total
    assert open_index(tmp_path / "idx").header.tta == "none"


def test_ensemble_is_the_weighted_mean(trained, tmp_path):
    data, work = trained
    a = find_members(work)[0]
    src = data / "test" / "test_images"
    one = build_index(src, tmp_path / "one", [a], progress=False)
    ens = find_members(None, models=[work / "models", work / "models"], weights=[0.25, 0.75])
    assert [m.weight for m in ens] == [0.25, 0.75]
    build_index(src, tmp_path / "ens", ens, progress=False)
    i1, i2 = open_index(one.path), open_index(tmp_path / "ens")
    assert np.allclose(np.asarray(i1.probs), np.asarray(i2.probs), atol=1e-5)
    assert i2.header.weights == (0.25, 0.75) and len(i2.header.models) == 2 * len(i1.header.models)
    with pytest.raises(CheckpointError, match="2 ensemble members"):
        find_members(None, models=[work / "models", work / "models"], weights=[1.0])
    with pytest.raises(CheckpointError, match="no model set trained at 999px"):
        find_members(work, img_sizes=[999])
    assert [m.img_size for m in find_members(work, img_sizes=[32])] == [32]


def test_stale_index_refused(trained, tmp_path):
    data, work = trained
    w2 = tmp_path / "w"
    shutil.copytree(work / "models", w2 / "models")
    build_index(data / "test" / "test_images", tmp_path / "idx", find_members(w2), progress=False)
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
