"""The on-disk index: name order, memory map, refusal of foreign/damaged indexes, atomic replace."""

import json

import numpy as np
import pytest

from attrret.errors import CheckpointError
from attrret.retrieval.index import open_index, write_index
from attrret.schema import load_schema

PED = {"pedestrian.gender": [0.9, 0.1]}


def test_rows_sorted_by_name_and_memory_mapped(index_factory):
    idx = index_factory({"b.jpg": {"pedestrian.gender": [0.2, 0.8]}, "a.jpg": PED})
    assert idx.names == ("a.jpg", "b.jpg")
    assert isinstance(idx.probs, np.memmap)
    assert np.allclose(idx.task_probs("pedestrian.gender"), [[0.9, 0.1], [0.2, 0.8]])
    assert idx.header.width == idx.probs.shape[1] == load_schema().pedestrian.width + 11 + 6 + 65 + 2


def test_foreign_schema_and_non_index_refused(index_factory, tmp_path):
    idx = index_factory({"a.jpg": PED})
    hp = idx.path / "header.json"
    doc = json.loads(hp.read_text())
    doc["schema"] = "0000000000000000"
    hp.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="schema 0000000000000000"):
        open_index(idx.path)
    with pytest.raises(CheckpointError, match="not an attrret index"):
        open_index(tmp_path)
    doc["format"] = "something-else"
    hp.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="format"):
        open_index(idx.path)


def test_refuses_to_write_into_a_foreign_directory(index_factory, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    idx = index_factory({"a.jpg": PED})
    with pytest.raises(CheckpointError, match="not an attrret index"):
        write_index(tmp_path / "mine", idx.probs, list(idx.names), list(idx.files), idx.header)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_interrupted_rewrite_keeps_the_old_index(index_factory, monkeypatch):
    idx = index_factory({"a.jpg": PED})
    import attrret.retrieval.index as mod

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, "atomic_write_text", boom)  # dies after probs-*.npy, before the header
    with pytest.raises(KeyboardInterrupt):
        write_index(idx.path, np.zeros((2, idx.header.width), np.float32), ["x.jpg", "y.jpg"], [{}, {}], idx.header)
    again = open_index(idx.path)
    assert again.names == ("a.jpg",)
    assert np.allclose(again.task_probs("pedestrian.gender"), [[0.9, 0.1]])


def test_rewrite_removes_unreferenced_files(index_factory):
    idx = index_factory({"a.jpg": PED})
    write_index(idx.path, np.zeros((1, idx.header.width), np.float32), ["z.jpg"], [{}], idx.header)
    files = sorted(p.name.split("-")[0] for p in idx.path.iterdir() if not p.name.startswith(".attrret-"))  # locks
    assert files == ["header.json", "names", "probs"]
    assert open_index(idx.path).names == ("z.jpg",)


def test_damaged_index_refused(index_factory):
    idx = index_factory({"a.jpg": PED})
    (idx.path / idx.header.probs_file).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="damaged"):
        open_index(idx.path)


def test_image_sizes_are_height_x_width_and_old_square_sizes_still_read(index_factory):
    """Headers record each model input as [H, W]; one from before rectangles (``[160]``) is 160 x 160."""
    idx = index_factory({"a.jpg": PED})
    hp = idx.path / "header.json"
    doc = json.loads(hp.read_text())
    assert idx.header.img_sizes == ((32, 32),) and doc["img_sizes"] == [[32, 32]]
    doc["img_sizes"] = [[256, 128], [128, 192]]
    hp.write_text(json.dumps(doc))
    assert open_index(idx.path).header.img_sizes == ((256, 128), (128, 192))
    doc["img_sizes"] = [160]
    hp.write_text(json.dumps(doc))
    assert open_index(idx.path).header.img_sizes == ((160, 160),)
    for bad in ([[256, 0]], [[256]], [[256, 128, 3]], ["256x128"]):
        doc["img_sizes"] = bad
        hp.write_text(json.dumps(doc))
        with pytest.raises(CheckpointError, match=r"img_sizes\[0\]: must be \[height, width\] in pixels"):
            open_index(idx.path)
