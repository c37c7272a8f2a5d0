"""Foreign checkpoints and indexes through ``attrret predict`` / ``attrret rank``.

A checkpoint from another schema is refused naming both fingerprints; a checkpoint that is an
arbitrary pickle is refused by weights-only loading without running it; an index whose models
changed since it was built (other models than the ones now in the workdir) is refused by rank
and fully recomputed by predict; an index from another schema is refused naming both.
"""

from __future__ import annotations

import json
import shutil

import torch

from attrret.classifiers.checkpoint import load_checkpoint, save_checkpoint
from attrret.schema import load_schema

from .conftest import attrret, error_line, leftovers

FOREIGN = "0123456789abcdef"


def test_checkpoint_from_another_schema_is_refused(tiny, tmp_path):
    _, work, _ = tiny
    ck = load_checkpoint(work / "models" / "router")
    save_checkpoint(tmp_path / "m" / "router" / "model.pt", {**ck.meta, "schema_fingerprint": FOREIGN}, ck.state_dict)
    data, out = tiny[0], tmp_path / "idx"
    proc = attrret("predict", "--images", data, "--models", tmp_path / "m", "-o", out, "--quiet")
    error_line(proc, "model.pt: checkpoint of router was made under schema " + FOREIGN,
               f"but the schema in use is {load_schema().fingerprint} (packaged)", "--schema DIR")
    assert not out.exists()


class _Payload:
    """Unpickling this object would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_arbitrary_pickle_is_refused_without_running_it(tiny, tmp_path):
    data, _, _ = tiny
    marker = tmp_path / "pwned"
    (tmp_path / "m" / "router").mkdir(parents=True)
    torch.save({"format": "attrret-classifier/1", "meta": {}, "state_dict": {}, "x": _Payload(marker)},
               tmp_path / "m" / "router" / "model.pt")
    proc = attrret("predict", "--images", data, "--models", tmp_path / "m", "-o", tmp_path / "idx", "--quiet")
    error_line(proc, "model.pt: not a weights-only attrret checkpoint")
    assert not marker.exists() and not (tmp_path / "idx").exists()
    torch.load(tmp_path / "m" / "router" / "model.pt", weights_only=False)  # the payload is live:
    assert marker.exists()  # an unsafe loader would have run it


def test_index_built_by_other_models(tiny, tmp_path):
    """Retrained models (here: the router's weights changed) make the index stale: rank refuses
    it rather than mixing old probabilities with new models; predict recomputes every image."""
    data, work, _ = tiny
    w2 = tmp_path / "w"
    shutil.copytree(work / "models", w2 / "models")
    idx, sub, q = tmp_path / "idx", tmp_path / "sub.json", tmp_path / "q.txt"
    q.write_text("A female pedestrian.\n")
    assert attrret("predict", "--images", data, "--workdir", w2, "-o", idx, "--quiet").returncode == 0
    ck = load_checkpoint(w2 / "models" / "router")
    save_checkpoint(ck.path, ck.meta, {k: v + 0.01 if v.is_floating_point() else v for k, v in ck.state_dict.items()})
    header = (idx / "header.json").read_bytes()
    error_line(attrret("rank", "--queries", q, "--index", idx, "-o", sub),
               f"{idx}: stale index: router model {ck.path.resolve()} changed since the index was built; re-run attrret predict")
    assert not sub.exists() and (idx / "header.json").read_bytes() == header
    proc = attrret("predict", "--images", data, "--workdir", w2, "-o", idx, "--quiet")
    assert proc.returncode == 0 and "built with other models/settings; recomputing every image" in proc.stderr
    assert "(18 predicted, 0 reused" in proc.stdout
    assert attrret("rank", "--queries", q, "--index", idx, "-o", sub).returncode == 0


def test_index_from_another_schema_is_refused(tiny, tmp_path):
    _, _, index = tiny
    idx, sub, q = tmp_path / "idx", tmp_path / "sub.json", tmp_path / "q.txt"
    shutil.copytree(index, idx)
    head = json.loads((idx / "header.json").read_text())
    (idx / "header.json").write_text(json.dumps({**head, "schema": FOREIGN}))
    q.write_text("A female pedestrian.\n")
    error_line(attrret("rank", "--queries", q, "--index", idx, "-o", sub),
               f"{idx}: index was made under schema {FOREIGN}", f"but the schema in use is {load_schema().fingerprint} (packaged)")
    assert not sub.exists() and leftovers(tmp_path) == []
