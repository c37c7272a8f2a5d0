"""The validation layer: every field of every file attrret reads back is checked before use.

Property tests over real files written by attrret's own writers (an index, a shard, a trained
checkpoint, an export's metadata, an import source): every leaf value of each file is replaced
in turn by values of other kinds, out of range, non-finite or repeated. The reader either
accepts the file (the value was a valid one) or raises exactly one :class:`AttrretError` that
names the file and the field. And no field accepts everything: each is checked.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from attrret.errors import AttrretError, InputError
from attrret.retrieval.index import open_index
from attrret.retrieval.shards import Shard, ShardSpec, read_shard, write_shard
from attrret.validation import MAX_INPUT_SIDE, describe, field_path
from tests.retrieval.conftest import make_index

#: Replacements for a leaf: other kinds, out of range, not finite, huge, empty.
BAD = (True, "x", "", -1, 0, 1.5, math.nan, math.inf, 10**12, None, [], {}, [1, 1], MAX_INPUT_SIDE + 1)


def leaves(doc: object, path: tuple = ()) -> Iterator[tuple]:
    """Every leaf of a JSON document (and every list or object, which may be replaced whole)."""
    if path:
        yield path
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from leaves(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:2]):  # the first two entries: the same type as the rest
            yield from leaves(v, (*path, i))


def replaced(doc: object, path: tuple, value: object) -> object:
    out = copy.deepcopy(doc)
    at = out
    for p in path[:-1]:
        at = at[p]
    at[path[-1]] = value
    return out


def shown(path: tuple) -> str:
    """How an error names a field: ``models[0].path`` (field_path's form)."""
    return field_path(path)


def check_every_leaf(doc: dict, read: Callable[[dict], object], where: Path | str, skip: tuple = ()) -> None:
    """The property: for each leaf and each bad value, ``read`` accepts, or refuses with one
    error naming ``where`` (the file; or its folder, for a check across files such as a schema
    that differs or a row count the data files do not have) and, when it names the file itself,
    the field; every top-level field refuses something."""
    folder = str(Path(where).parent)
    refused: set = set()
    for path in leaves(doc):
        if path[0] in skip:
            continue
        for bad in BAD:
            try:
                read(replaced(doc, path, bad))
            except AttrretError as exc:
                message = str(exc)
                assert folder in message, (path, bad, message)
                if str(where) in message:  # the field, by its key, its leaf's key, or its first word
                    names = {shown(path[:1]), str(path[-1]), str(path[0]).split("_")[0]}
                    assert any(n in message for n in names), (path, bad, message)
                assert "\n" not in message, message
                refused.add(path[0])
    checked = {p[0] for p in leaves(doc)} - set(skip)
    assert refused == checked, f"fields that accepted every bad value: {sorted(checked - refused, key=str)}"


# --------------------------------------------------------------------------- index and shards
@pytest.fixture()
def index(tmp_path: Path):
    return make_index(tmp_path / "index", {"a.jpg": {"router": [1.0, 0.0]}, "b.jpg": {}, "c.jpg": {}})


def test_every_index_header_field_is_checked(index) -> None:
    hp = index.path / "header.json"
    doc = json.loads(hp.read_text())
    doc["models"] = [{"task": "router", "path": "/m/router/model.pt", "sha256": "ab" * 32, "relpath": "m"}]

    def read(d: dict) -> object:
        hp.write_text(json.dumps(d))
        return open_index(index.path)

    read(doc)  # the unmodified document is valid
    check_every_leaf(doc, read, hp)


def test_every_names_file_field_is_checked(index) -> None:
    path = index.path / index.header.names_file
    doc = json.loads(path.read_text())

    def read(d: dict) -> object:
        path.write_text(json.dumps(d))
        return open_index(index.path)

    check_every_leaf(doc, read, path)


def test_every_shard_manifest_field_is_checked(index, tmp_path: Path) -> None:
    from dataclasses import replace

    planned = replace(index.header, probs_file="", names_file="")
    shard = Shard(ShardSpec(0, 1), 8, "plan-digest", planned, index.names, index.files, np.asarray(index.probs), 3, 0, 1)
    folder = write_shard(tmp_path / "index.shard-0-of-1", shard)
    sp = folder / "shard.json"
    doc = json.loads(sp.read_text())
    assert read_shard(folder).names == index.names

    def read(d: dict) -> object:
        sp.write_text(json.dumps(d))
        return read_shard(folder)

    check_every_leaf(doc, read, sp)


# --------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A real trained task (timm's tiny random test_efficientnet, 1 epoch, 32 px)."""
    from attrret.classifiers.train import TrainConfig, train_tasks
    from tests.classifiers.tiny_classifier_data import make_folder

    root = tmp_path_factory.mktemp("ck")
    data = make_folder(root / "data", n_ped=8, n_veh=4)
    train_tasks(TrainConfig(task="pedestrian.gender", data=str(data), workdir=str(root / "w"), img_size=32, epochs=1,
                            batch_size=8, backbone="timm:test_efficientnet", pretrained=False, device="cpu"),
                progress=False)
    return root / "w" / "models" / "pedestrian.gender" / "model.pt"


def test_every_checkpoint_metadata_field_is_checked(checkpoint: Path, tmp_path: Path) -> None:
    from attrret.classifiers.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(checkpoint)
    path = tmp_path / "model.pt"

    def read(meta: dict) -> object:
        save_checkpoint(path, meta, ck.stored)
        return load_checkpoint(path)

    read(ck.meta)
    # free-form records a checkpoint keeps for people (metrics, the training config, provenance)
    free = ("metrics", "config", "history", "calibration", "created", "attrret_version", "train_data", "data")
    check_every_leaf(ck.meta, read, path, skip=tuple(k for k in ck.meta if k in free))


def test_checkpoint_defaults_of_older_files_are_written_once(checkpoint: Path, tmp_path: Path) -> None:
    """A checkpoint from before temperature, crop, front and tail_norm reads with their defaults."""
    from attrret.classifiers.checkpoint import FRONT_STORED, load_checkpoint, save_checkpoint

    ck = load_checkpoint(checkpoint)
    old = {k: v for k, v in ck.meta.items() if k not in ("temperature", "crop", "front", "tail_norm")}
    save_checkpoint(tmp_path / "model.pt", old, ck.stored)
    info = load_checkpoint(tmp_path / "model.pt").info
    assert (info.temperature, info.crop, info.front, info.tail_norm) == (1.0, "full", FRONT_STORED, None)


# --------------------------------------------------------------------------- ONNX metadata
def graph_props() -> dict[str, str]:
    from attrret.export.onnx import GraphInfo, GraphInput

    info = GraphInfo(schema="f" * 16, inputs=(GraphInput("image_64x32", 64, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),),
                     columns={"router": (0, 2)}, classes={"router": ("pedestrian", "vehicle")},
                     models=({"member": 0, "task": "router", "sha256": "ab" * 32, "weight": 1.0},), weights=(1.0,))
    return info.to_metadata()


def test_every_onnx_metadata_field_is_checked() -> None:
    from attrret.export.onnx import GraphInfo

    props = graph_props()
    doc = {k: json.loads(v) if k != "attrret.format" and v[:1] in "[{" else v for k, v in props.items()}

    def read(d: dict) -> object:
        return GraphInfo.from_metadata({k: v if isinstance(v, str) else json.dumps(v) for k, v in d.items()}, "g.onnx")

    assert read(doc).inputs[0].hw == (64, 32)
    refused: set[str] = set()
    for path in leaves(doc):
        for bad in BAD:
            try:
                read(replaced(doc, path, bad))
            except InputError as exc:
                assert str(exc).startswith("g.onnx: ") and "\n" not in str(exc), str(exc)
                refused.add(path[0])
    assert refused == set(doc), sorted(set(doc) - refused)


def test_onnx_metadata_that_sizes_an_allocation_is_bounded() -> None:
    from attrret.export.onnx import GraphInfo

    props = graph_props()
    pre = json.loads(props["attrret.preprocess.image_64x32"])
    props["attrret.preprocess.image_64x32"] = json.dumps({**pre, "height": 100_000})
    with pytest.raises(InputError, match=r"preprocess.image_64x32.height: Input should be less than or equal to 4096"):
        GraphInfo.from_metadata(props, "g.onnx")


# --------------------------------------------------------------------------- import sources
def test_every_source_record_field_is_checked(tmp_path: Path) -> None:
    from attrret.data.importers.source import SourceImage
    from attrret.schema import load_schema

    schema = load_schema()
    doc = {"name": "a.jpg", "kind": "pedestrian", "values": {"gender": "female"}, "split": "train", "identity": "7"}

    def read(d: dict) -> object:
        return SourceImage(tmp_path / "a.jpg", where="labels.csv:3", **d).checked(schema)

    read(doc)
    check_every_leaf(doc, read, "labels.csv:3")  # where the source lists it stands for the file
    for name in ("../a.jpg", "a/b.jpg", "a$b.jpg", "x" * 300):  # names that leave the folder or break a label line
        with pytest.raises(InputError, match="labels.csv:3: name"):
            read({**doc, "name": name})


# --------------------------------------------------------------------------- the error itself
def test_an_error_names_the_field_path_and_what_was_there() -> None:
    from pydantic import ValidationError

    from attrret.retrieval.index_files import HeaderFile

    with pytest.raises(ValidationError) as err:
        HeaderFile.model_validate({"format": "attrret-index/1", "schema": "s", "count": 1, "columns": {"router": [0, 2]},
                                   "models": [{"task": "router", "path": 5, "sha256": "x"}], "img_sizes": [[32, 32]],
                                   "tta": "flip", "weights": [1.0], "probs_file": "probs-a.npy", "names_file": "names-a.json"})
    assert describe(err.value) == "models[0].path: Input should be a valid string, got 5"
