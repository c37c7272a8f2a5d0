"""One meaning per flag: ``-q`` is ``--quiet``, ``--weights`` is a trunk weights file, one random-init
flag, and choices as Enums that match the library's lists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from attrret.cli import app

ATTRRET = Path(sys.executable).with_name("attrret")


def _options(group, path: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # a group (typer may vendor its own click)
            yield from _options(cmd, (*path, name))
        else:
            for param in cmd.params:
                if param.param_type_name == "option":
                    yield (*path, name), param


OPTIONS = list(_options(typer.main.get_command(app)))


def attrret(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ATTRRET), *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})


def test_short_q_is_quiet_everywhere():
    with_q = [(cmd, p.opts) for cmd, p in OPTIONS if "-q" in p.opts]
    assert with_q and all("--quiet" in opts for _, opts in with_q), with_q
    rank = {o for cmd, p in OPTIONS if cmd == ("rank",) for o in p.opts}
    assert {"--queries", "-Q"} <= rank and "-q" not in rank


def test_weights_is_only_a_trunk_weights_file():
    assert [cmd for cmd, p in OPTIONS if "--weights" in p.opts] == [("train",)]
    # ensemble member weights, where an ensemble is chosen: predict, and export onnx (the same members)
    assert sorted(cmd for cmd, p in OPTIONS if "--member-weights" in p.opts) == [("export", "onnx"), ("predict",)]


def test_one_random_init_flag():
    names = {(cmd, o) for cmd, p in OPTIONS for o in (*p.opts, *p.secondary_opts)}
    assert {("train",), ("baseline", "clip")} == {cmd for cmd, o in names if o == "--random-init"}
    assert not [cmd for cmd, o in names if o == "--no-pretrained"]


def test_renamed_flags_are_usage_errors(tmp_path):
    proc = attrret("predict", "--images", tmp_path, "--weights", "1,2")
    assert proc.returncode == 2 and "No such option" in proc.stderr and "--weights" in proc.stderr
    proc = attrret("rank", "-q", tmp_path / "q.txt", "-o", tmp_path / "s.json")
    assert proc.returncode == 2 and "No such option" in proc.stderr
    proc = attrret("baseline", "clip", "--data", tmp_path / "missing", "--no-pretrained")
    assert proc.returncode == 2 and "No such option" in proc.stderr


def test_new_flags_are_accepted(tmp_path):
    # each stops at a domain error (exit 1) after its options were accepted
    proc = attrret("predict", "--images", tmp_path, "--workdir", tmp_path / "w", "--member-weights", "1", "-q")
    assert proc.returncode == 1 and proc.stderr.startswith("attrret: error:"), proc.stderr
    proc = attrret("rank", "-Q", tmp_path / "q.txt", "-o", tmp_path / "s.json", "--index", tmp_path / "none")
    assert proc.returncode == 1 and proc.stderr.startswith("attrret: error:"), proc.stderr
    proc = attrret("baseline", "clip", "--data", tmp_path / "missing", "--random-init")
    assert proc.returncode == 1 and "missing" in proc.stderr, proc.stderr


def test_choices_match_the_library():
    from attrret.classifiers import train as lib_train
    from attrret.classifiers.preprocess import CROPS
    from attrret.classifiers.recipes import RECIPES
    from attrret.cli import parse, retrieval, train
    from attrret.parser.caption_files import FORMATS
    from attrret.retrieval.ranker import GATES, SCORINGS
    from attrret.retrieval.topk import BACKENDS

    def values(enum) -> tuple[str, ...]:
        return tuple(m.value for m in enum)

    assert values(train.Crop) == tuple(CROPS)
    assert values(train.TailNorm) == lib_train._TAIL_NORMS and values(train.Balance) == lib_train._BALANCES
    assert values(train.Recipe) == tuple(RECIPES)
    assert values(retrieval.Backend) == BACKENDS and values(retrieval.Scoring) == SCORINGS
    assert values(retrieval.KindGate) == GATES and values(parse.InputFormat) == FORMATS
    assert all(isinstance(m, str) for m in retrieval.Backend)


def test_sizes_are_one_form_on_every_flag(tmp_path):
    """``--img-size`` (train) and ``--img-sizes`` (predict) read sizes with the same parser: HxW
    or N, and anything else is a usage error (exit 2) naming the flag and the accepted form."""
    for args, flag in ((("train", "--task", "router", "--data", tmp_path, "--img-size", "256by128"), "--img-size"),
                       (("predict", "--images", tmp_path, "--workdir", tmp_path, "--img-sizes", "256x128,320x"), "--img-sizes")):
        proc = attrret(*args)
        err = " ".join(proc.stderr.replace("│", " ").split())
        assert proc.returncode == 2 and f"Invalid value for {flag}:" in err and "expected HxW (height x width" in err, err
    proc = attrret("predict", "--images", tmp_path, "--workdir", tmp_path, "--img-sizes", "256x128,320", "-q")
    assert proc.returncode == 1 and "no model set trained at 256x128" in proc.stderr, proc.stderr  # accepted, then looked for
