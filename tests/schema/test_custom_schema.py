"""A custom schema end to end: a toy schema directory (the packaged files plus a pedestrian
``umbrella`` group and a ``beige`` vehicle colour), a tiny labelled set for it, then train,
predict, parse, rank and search with ``--schema DIR`` (or ``ATTRRET_SCHEMA``), through real
processes. Pieces of one schema are refused under the other, naming both schemas.

The new group reaches training through the Track-2 label line: the toy schema declares
``code_bits = 22`` and gives ``umbrella`` bit 21, so a pedestrian label carries a 22-field code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attrret.classifiers.checkpoint import load_checkpoint
from attrret.schema import SCHEMA_FILES, load_schema
from attrret.errors import SchemaError
from attrret.schema.codes import code21_to_values, values_to_code21

UMBRELLA = '''
[[groups]]
name = "umbrella"
classes = ["yes", "no"]
bits = [21]
'''

UMBRELLA_LEXICON = '''
[[pedestrian]]
set = { umbrella = "yes" }
phrases = ["umbrella", "umbrellas", "carrying an umbrella", "parasol"]
'''


def attrret(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m attrret ARGS`` in a process of its own (exit codes and stderr as a user sees them)."""
    full = {k: v for k, v in os.environ.items() if k != "ATTRRET_SCHEMA"}
    full.update({"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})})
    return subprocess.run([sys.executable, "-m", "attrret", *map(str, args)], capture_output=True, text=True, env=full,
                          stdin=subprocess.DEVNULL)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (proc.args, proc.stdout, proc.stderr)
    return proc


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The run's one ``attrret: error:`` line (exit 1, no traceback, nothing after it)."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("attrret: error:")]
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr
    return errors[0]


def packaged_schema_dir(out: Path) -> Path:
    """A copy of the packaged schema directory: its three TOMLs and the parser's lexicon."""
    out.mkdir(parents=True)
    for name in SCHEMA_FILES:
        (out / name).write_text(resources.files("attrret.schema").joinpath(name).read_text(encoding="utf-8"), encoding="utf-8")
    lexicon = resources.files("attrret.parser").joinpath("lexicon.toml").read_text(encoding="utf-8")
    (out / "lexicon.toml").write_text(lexicon, encoding="utf-8")
    return out


def make_toy_schema(out: Path) -> Path:
    """The packaged schema plus ``pedestrian.umbrella`` (bit 21 of a 22-bit code) and the vehicle colour ``beige``."""
    packaged_schema_dir(out)
    ped = (out / "pedestrian.toml").read_text(encoding="utf-8")
    assert "code_bits = 21\n" in ped
    (out / "pedestrian.toml").write_text(ped.replace("code_bits = 21\n", "code_bits = 22\n") + UMBRELLA, encoding="utf-8")
    veh = (out / "vehicle.toml").read_text(encoding="utf-8")
    assert veh.count('  "yellow",\n]') == 1
    (out / "vehicle.toml").write_text(veh.replace('  "yellow",\n]', '  "yellow",\n  "beige",\n]'), encoding="utf-8")
    # "beige" is a synonym of brown in the packaged lexicon: as a class of its own it must leave
    # that entry (class names are phrases of their own; a phrase declared twice is refused).
    lex = (out / "lexicon.toml").read_text(encoding="utf-8")
    assert lex.count('"tan", "beige", "bronze"') == 1
    (out / "lexicon.toml").write_text(lex.replace('"tan", "beige", "bronze"', '"tan", "bronze"') + UMBRELLA_LEXICON,
                                      encoding="utf-8")
    return out


def make_data(out: Path, schema, n_ped: int = 24, n_veh: int = 16) -> Path:
    """``labels.txt`` + ``images/`` under ``schema``: pedestrians (a dark canopy on top when they
    carry an umbrella) with full codes, vehicles coloured by their label ("beige Audi.")."""
    rng = np.random.default_rng(0)
    (out / "images").mkdir(parents=True)
    lines = []
    colors = {"beige": (220, 205, 160), "red": (200, 30, 30), "blue": (30, 40, 200)}
    brands = schema.vehicle.group("brand").classes[:3]
    types = schema.vehicle.group("type").classes[:2]
    for i in range(n_ped):
        values = {g.name: g.classes[int(rng.integers(g.size))] for g in schema.pedestrian.groups if g.bits}
        if "umbrella" in values:
            values["umbrella"] = "yes" if i % 2 == 0 else "no"
        px = rng.integers(90, 160, size=(32, 16, 3)).astype(np.uint8)
        if i % 2 == 0:
            px[:8] = 20
        name = f"p{i:03d}.png"
        Image.fromarray(px).save(out / "images" / name)
        code = ",".join(map(str, values_to_code21(values, schema.pedestrian)))
        lines.append(f"{name}${code}$A pedestrian.")
    names = list(colors) if "beige" in schema.vehicle.group("color").classes else ["red", "blue"]
    for i in range(n_veh):
        color = names[i % len(names)]
        px = np.full((16, 24, 3), colors[color], np.uint8) + rng.integers(0, 12, size=(16, 24, 3)).astype(np.uint8)
        name = f"v{i:03d}.png"
        Image.fromarray(px).save(out / "images" / name)
        lines.append(f"{name}${color} {brands[i % len(brands)]} {types[i % len(types)]}.$A {color} car.")
    (out / "labels.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


TRAIN = ("--backbone", "timm:test_efficientnet", "--random-init", "--img-size", "32", "--epochs", "1",
         "--batch-size", "16", "--quiet")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy schema, its data, and the umbrella, colour and router models trained under it."""
    root = tmp_path_factory.mktemp("toy")
    sdir = make_toy_schema(root / "schema")
    schema = load_schema(sdir)
    data, work = make_data(root / "data", schema), root / "w"
    for task in ("pedestrian.umbrella", "vehicle.color", "router"):
        ok(attrret("train", "--task", task, "--data", data, "--workdir", work, *TRAIN, "--schema", sdir))
    return sdir, schema, data, work


def test_toy_schema_loads_with_the_new_group_and_class(tmp_path):
    schema = load_schema(make_toy_schema(tmp_path / "s"))
    assert schema.task("pedestrian.umbrella").classes == ("yes", "no")
    assert "beige" in schema.task("vehicle.color").classes
    assert schema.pedestrian.code_bits == 22 and schema.pedestrian.width == load_schema().pedestrian.width + 2
    assert schema.fingerprint != load_schema().fingerprint
    assert schema.source == str((tmp_path / "s").resolve()) and load_schema().source == "packaged"
    assert schema.lexicon_path == tmp_path / "s" / "lexicon.toml"
    # a copy of the packaged files is the packaged schema: same fingerprint, equal values
    same = load_schema(packaged_schema_dir(tmp_path / "p"))
    assert same.fingerprint == load_schema().fingerprint and same == load_schema()


def test_train_predict_rank_search_with_the_toy_schema(toy, tmp_path):
    sdir, schema, data, work = toy
    ck = load_checkpoint(work / "models" / "pedestrian.umbrella", schema=schema)
    assert ck.classes == ("yes", "no")
    assert ck.meta["schema_fingerprint"] == schema.fingerprint and ck.meta["schema_source"] == str(sdir.resolve())
    assert len(load_checkpoint(work / "models" / "vehicle.color", schema=schema).classes) == 12

    # predict: the gallery is the labelled folder itself (its 22-field codes read with the toy schema)
    idx = tmp_path / "idx"
    ok(attrret("predict", "--images", data, "--workdir", work, "-o", idx, "--quiet", "--schema", sdir))
    header = json.loads((idx / "header.json").read_text())
    assert header["schema"] == schema.fingerprint and header["schema_source"] == str(sdir.resolve())
    cols = {t: b - a for t, (a, b) in header["columns"].items()}
    assert cols == {"pedestrian.umbrella": 2, "vehicle.color": 12, "router": 2}
    assert header["count"] == 40

    # parse: the new phrase and the new class
    queries = tmp_path / "queries.txt"
    queries.write_text("A pedestrian carrying an umbrella.\nThis is a beige car.\n", encoding="utf-8")
    parsed = [json.loads(ln) for ln in ok(attrret("parse", queries, "--schema", sdir)).stdout.splitlines()]
    assert parsed[0]["kind"] == "pedestrian" and parsed[0]["stated"] == {"umbrella": "yes"} and not parsed[0]["unmatched"]
    assert parsed[1]["kind"] == "vehicle" and parsed[1]["stated"] == {"color": "beige"}
    # the packaged schema knows neither: umbrella is an unmatched word, beige reads as brown
    plain = [json.loads(ln) for ln in ok(attrret("parse", queries)).stdout.splitlines()]
    assert plain[0]["unmatched"] == ["umbrella"] and plain[1]["stated"] == {"color": "brown"}

    # rank: both queries are answered from the toy columns
    sub, explain = tmp_path / "sub.json", tmp_path / "explain.jsonl"
    # (soft kind gate: every image is ranked, whatever a one-epoch router says)
    ok(attrret("rank", "--queries", queries, "--index", idx, "-o", sub, "--explain", explain, "--kind-gate", "soft",
               "--schema", sdir))
    results = json.loads(sub.read_text())["results"]
    assert [r["text"] for r in results] == queries.read_text().splitlines()
    assert all(len(r["image_names"]) == 10 for r in results)
    rows = [json.loads(ln) for ln in explain.read_text().splitlines()]
    assert "umbrella" in json.dumps(rows[0]) and "color" in json.dumps(rows[-1])

    # search, with the schema from the environment this time
    out = ok(attrret("search", "a person with an umbrella", "a beige car", "--index", idx, "--json", "-k", "3",
                     env={"ATTRRET_SCHEMA": str(sdir)}))
    found = [json.loads(ln) for ln in out.stdout.splitlines()]
    assert found[0]["query"]["stated"] == {"umbrella": "yes"} and found[1]["query"]["stated"] == {"color": "beige"}
    assert found[0]["results"][0]["predicted"]["umbrella"] in ("yes", "no")
    assert found[1]["results"][0]["predicted"]["color"] in schema.task("vehicle.color").classes

    # evaluate: the labels (22-field codes, beige cars) are the relevance, read with the toy schema
    labelled = tmp_path / "labelled.json"
    ok(attrret("rank", "--queries", data / "labels.txt", "--index", idx, "-o", labelled, "--kind-gate", "soft",
               "--schema", sdir))
    scores = json.loads(ok(attrret("evaluate", "-s", labelled, "--labels", data / "labels.txt", "--json",
                                   "--schema", sdir)).stdout)
    assert scores["pedestrian"]["n"] == 24 and scores["vehicle"]["n"] == 16
    # report (per-attribute accuracy from the index) and attributes: the new group has its rows
    page = tmp_path / "report.html"
    ok(attrret("report", "-s", labelled, "--labels", data / "labels.txt", "--images", data / "images", "--index", idx,
               "-o", page, "--schema", sdir))
    assert "pedestrian.umbrella" in page.read_text(encoding="utf-8")
    records = [json.loads(ln) for ln in ok(attrret("attributes", "--index", idx, "--schema", sdir)).stdout.splitlines()]
    assert len(records) == 40 and any("pedestrian.umbrella" in r["groups"] for r in records)
    assert any(r["groups"].get("vehicle.color", {}).get("probs", {}).get("beige") is not None for r in records)

    # the same index under the packaged schema: refused, naming both schemas
    err = error_line(attrret("rank", "--queries", queries, "--index", idx, "-o", tmp_path / "sub2.json"))
    assert f"index was made under schema {schema.fingerprint} ({sdir.resolve()})" in err
    assert f"the schema in use is {load_schema().fingerprint} (packaged)" in err
    assert not (tmp_path / "sub2.json").exists()
    err = error_line(attrret("serve", "--index", idx, "--port", "0"))
    assert f"index was made under schema {schema.fingerprint}" in err
    # and the toy checkpoints under the packaged schema
    err = error_line(attrret("predict", "--images", data, "--workdir", work, "-o", tmp_path / "idx2", "--quiet"))
    assert f"was made under schema {schema.fingerprint} ({sdir.resolve()})" in err and "(packaged)" in err
    assert not (tmp_path / "idx2").exists()


def test_default_schema_checkpoint_under_the_toy_schema(toy, tmp_path):
    """A router trained with the packaged schema, used with --schema TOY: one error naming both
    fingerprints and where each schema is; nothing written."""
    sdir, schema, _, _ = toy
    data, work = make_data(tmp_path / "plain", load_schema(), n_ped=8, n_veh=8), tmp_path / "w0"
    ok(attrret("train", "--task", "router", "--data", data, "--workdir", work, *TRAIN))
    out = tmp_path / "idx"
    err = error_line(attrret("predict", "--images", data / "images", "--workdir", work, "-o", out, "--quiet",
                             "--schema", sdir))
    assert f"checkpoint of router was made under schema {load_schema().fingerprint} (packaged)" in err
    assert f"but the schema in use is {schema.fingerprint} ({sdir.resolve()})" in err
    assert not out.exists()
    # toy labels (22-field codes) under the packaged schema: the label line is named
    err = error_line(attrret("train", "--task", "router", "--data", toy[2], "--workdir", tmp_path / "w1", *TRAIN))
    assert "labels.txt:1: code has 22 fields, expected 21" in err


def test_a_group_without_bits_stays_unknown_in_the_code(tmp_path):
    """A custom group with no code bits: label codes decode without it (unknown), and a code
    is written from the other groups."""
    sdir = packaged_schema_dir(tmp_path / "s")
    with open(sdir / "pedestrian.toml", "a", encoding="utf-8") as f:
        f.write('\n[[groups]]\nname = "scarf"\nclasses = ["yes", "no"]\n')
    schema = load_schema(sdir)
    code = "1,0,1,0,1,0,0,0,0,1,0,0,0,1,0,0,0,0,0,0,0"
    values = code21_to_values(code, schema.pedestrian)
    assert "scarf" not in values and values == code21_to_values(code, load_schema().pedestrian)
    assert values_to_code21({**values, "scarf": "yes"}, schema.pedestrian) == tuple(map(int, code.split(",")))


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('name = "brand"', 'name = "make"'), "needs the groups color, type, brand"),
    (lambda t: t.replace('subject = "vehicle"', 'subject = "truck"'), "subject must be 'vehicle'"),
    (lambda t: t.replace('name = "type"', 'name = "body.type"'), "a word without '.'"),
    (lambda t: t.replace('  "yellow",\n]', '  "yellow",\n  "sky blue",\n]'), "color classes must be one word each"),
])
def test_vehicle_file_rules(tmp_path, edit, message):
    sdir = packaged_schema_dir(tmp_path / "s")
    (sdir / "vehicle.toml").write_text(edit((sdir / "vehicle.toml").read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(SchemaError, match=message):
        load_schema(sdir)


@pytest.mark.parametrize("breakage, message", [
    ("missing", "vehicle.toml: missing; a schema directory holds"),
    ("toml", "vehicle.toml: not valid TOML"),
    ("lexicon group", "'raincoat' is not a pedestrian group"),
    ("lexicon twice", "phrase 'beige' is declared twice"),
    ("no lexicon", "lexicon.toml: missing"),
    ("no dir", "not a schema directory"),
])
def test_a_bad_schema_directory_is_one_clear_error(tmp_path, breakage, message):
    sdir = make_toy_schema(tmp_path / "s")
    if breakage == "missing":
        (sdir / "vehicle.toml").unlink()
    elif breakage == "toml":
        (sdir / "vehicle.toml").write_text("subject = \n", encoding="utf-8")
    elif breakage == "lexicon group":
        with open(sdir / "lexicon.toml", "a", encoding="utf-8") as f:
            f.write('\n[[pedestrian]]\nset = { raincoat = "yes" }\nphrases = ["mackintosh"]\n')
    elif breakage == "lexicon twice":
        shutil.copy(resources.files("attrret.parser").joinpath("lexicon.toml"), sdir / "lexicon.toml")
    elif breakage == "no lexicon":
        (sdir / "lexicon.toml").unlink()
    elif breakage == "no dir":
        sdir = tmp_path / "nowhere"
    err = error_line(attrret("parse", "-", "--schema", sdir))
    assert message in err, err


def test_resume_never_reuses_a_task_of_another_schema(tmp_path):
    """``train --resume`` skips a finished task only when it was trained under the same schema:
    under another one it trains again, and the checkpoint then records the new schema."""
    from attrret.classifiers.train import TrainConfig, train_tasks

    sdir = packaged_schema_dir(tmp_path / "s")  # + a group without bits: the same labels, another vocabulary
    with open(sdir / "pedestrian.toml", "a", encoding="utf-8") as f:
        f.write('\n[[groups]]\nname = "scarf"\nclasses = ["yes", "no"]\n')
    other = load_schema(sdir)
    data = make_data(tmp_path / "data", load_schema(), n_ped=8, n_veh=8)
    cfg = TrainConfig(task="router", data=str(data), workdir=str(tmp_path / "w"), backbone="timm:test_efficientnet",
                      pretrained=False, img_size=32, epochs=1, batch_size=8, resume=True)
    assert not train_tasks(cfg, progress=False)[0].skipped
    assert train_tasks(cfg, progress=False)[0].skipped  # same schema: already trained
    again = train_tasks(cfg, progress=False, schema=other)[0]
    assert not again.skipped
    ck = load_checkpoint(tmp_path / "w" / "models" / "router", schema=other)
    assert ck.meta["schema_fingerprint"] == other.fingerprint and ck.meta["config"]["schema"] == other.fingerprint


def test_clip_baseline_records_its_schema(toy, tmp_path):
    """The CLIP baseline checkpoint is refused under another schema, naming both."""
    import torch

    from attrret.baseline.clip import load_clip, save_clip, train_clip
    from attrret.baseline.config import ClipConfig
    from attrret.data.records import load_records
    from attrret.errors import CheckpointError

    sdir, schema, data, _ = toy
    records = load_records(data, "all", schema=schema)
    trained = train_clip(records, ClipConfig(pretrained=False, image_size=32, trainable_stages=1, embed_dim=32, text_width=32,
                                             text_layers=1, text_heads=2, batch_size=16, epochs=1, threads=1, seed=0))
    path = tmp_path / "clip.pt"
    save_clip(path, trained, schema)
    doc = torch.load(path, weights_only=True)
    assert doc["schema_fingerprint"] == schema.fingerprint and doc["schema_source"] == str(sdir.resolve())
    assert load_clip(path, schema).config == trained.config
    with pytest.raises(CheckpointError, match=rf"made under schema {schema.fingerprint} \(.*\), but the schema in use is "
                                              rf"{load_schema().fingerprint} \(packaged\)"):
        load_clip(path)
