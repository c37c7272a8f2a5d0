"""``--schema DIR`` / ``ATTRRET_SCHEMA``: one shared option on every command that uses the schema;
the flag beats the environment, which beats the packaged default; a bad directory is one
:class:`SchemaError` before any work."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from attrret.cli import app
from attrret.cli.options import SCHEMA_ENV, resolve_schema
from attrret.errors import SchemaError
from attrret.schema import SCHEMA_FILES, load_schema

COMMANDS = {("train",), ("predict",), ("rank",), ("evaluate",), ("search",), ("attributes",), ("serve",), ("parse",),
            ("report",), ("baseline", "clip"), ("index", "merge"), ("export", "onnx"), ("data", "import")}


def _commands(group, path=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def umbrella_schema(out: Path) -> Path:
    """The packaged schema plus a pedestrian ``umbrella`` group the lexicon knows ("umbrella")."""
    out.mkdir(parents=True)
    for name in SCHEMA_FILES:
        (out / name).write_text(resources.files("attrret.schema").joinpath(name).read_text(encoding="utf-8"), encoding="utf-8")
    ped = (out / "pedestrian.toml").read_text(encoding="utf-8")
    (out / "pedestrian.toml").write_text(ped + '\n[[groups]]\nname = "umbrella"\nclasses = ["yes", "no"]\n', encoding="utf-8")
    lexicon = resources.files("attrret.parser").joinpath("lexicon.toml").read_text(encoding="utf-8")
    (out / "lexicon.toml").write_text(lexicon + '\n[[pedestrian]]\nset = { umbrella = "yes" }\nphrases = ["umbrella"]\n',
                                      encoding="utf-8")
    return out


def test_every_schema_command_has_the_shared_option():
    have = {}
    for path, cmd in _commands(typer.main.get_command(app)):
        for p in cmd.params:
            if "--schema" in getattr(p, "opts", ()):
                have[path] = p
    assert set(have) == COMMANDS
    assert all(p.envvar == SCHEMA_ENV and p.metavar == "DIR" for p in have.values())


def _parse(runner: CliRunner, args: list[str], env: dict[str, str]):
    return runner.invoke(app, ["parse", "-", *args], input="A pedestrian carrying an umbrella.\n", env=env)


@pytest.fixture
def runner():
    return CliRunner()


def test_flag_beats_env_beats_default(runner, tmp_path):
    good, bad = umbrella_schema(tmp_path / "good"), tmp_path / "missing"
    default = _parse(runner, [], {SCHEMA_ENV: ""})
    assert default.exit_code == 0 and json.loads(default.stdout.splitlines()[0])["unmatched"] == ["umbrella"]
    from_env = _parse(runner, [], {SCHEMA_ENV: str(good)})
    assert from_env.exit_code == 0 and json.loads(from_env.stdout.splitlines()[0])["stated"] == {"umbrella": "yes"}
    flag_wins = _parse(runner, ["--schema", str(good)], {SCHEMA_ENV: str(bad)})
    assert flag_wins.exit_code == 0 and json.loads(flag_wins.stdout.splitlines()[0])["stated"] == {"umbrella": "yes"}
    flag_bad = _parse(runner, ["--schema", str(bad)], {SCHEMA_ENV: str(good)})
    assert isinstance(flag_bad.exception, SchemaError) and str(bad) in str(flag_bad.exception)


def test_resolve_schema(tmp_path):
    assert resolve_schema(None) == load_schema() and resolve_schema(None).directory is None
    good = umbrella_schema(tmp_path / "s")
    schema = resolve_schema(good)
    assert schema.directory == good and schema.task("pedestrian.umbrella").classes == ("yes", "no")
    # the lexicon is checked up front too, though load_schema alone does not read it
    (good / "lexicon.toml").write_text((good / "lexicon.toml").read_text() + '\n[[vehicle]]\nset = { wheels = "4" }\nphrases = ["x"]\n')
    load_schema(good)
    with pytest.raises(SchemaError, match="'wheels' is not a vehicle group"):
        resolve_schema(good)
