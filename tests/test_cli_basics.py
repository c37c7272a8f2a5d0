"""The command-line frame: instant help, no heavy imports at start-up, exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ATTRRET = Path(sys.executable).with_name("attrret")


def sh(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(list(args), input=stdin, capture_output=True, timeout=120)


def test_help_lists_the_commands_and_exits_0():
    proc = sh(str(ATTRRET), "--help")
    assert proc.returncode == 0, proc.stderr.decode()
    assert "parse" in proc.stdout.decode()
    assert sh(sys.executable, "-m", "attrret", "--help").returncode == 0


def test_usage_errors_exit_2():
    assert sh(str(ATTRRET), "no-such-command").returncode == 2
    proc = sh(str(ATTRRET), "parse")  # missing INPUT
    assert proc.returncode == 2 and "INPUT" in proc.stderr.decode().upper()
    assert sh(str(ATTRRET), "parse", "x.txt", "--fuzzy-cutoff", "0").returncode == 2


def test_domain_error_is_one_line_and_exit_1(tmp_path):
    proc = sh(str(ATTRRET), "parse", str(tmp_path / "missing.txt"))
    assert proc.returncode == 1
    assert proc.stderr.decode().splitlines() == [f"attrret: error: {tmp_path / 'missing.txt'}: file not found"]


def test_start_up_imports_no_heavy_library():
    code = (
        "import sys, json, attrret.cli, attrret.parser, attrret.parser.query, attrret.schema.codes;"
        "print(json.dumps(sorted(m for m in ('spacy', 'torch', 'timm', 'open_clip', 'rapidfuzz') if m in sys.modules)))"
    )
    proc = sh(sys.executable, "-c", code)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout) == []


def test_version_prints_the_installed_distribution_version():
    from importlib import metadata

    proc = sh(str(ATTRRET), "--version")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == f"attrret {metadata.version('attrret')}"
    assert sh(str(ATTRRET), "-V").stdout == proc.stdout
