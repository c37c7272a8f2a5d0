"""Commands that run no model import no torch (torch alone takes about a second to import).

Each command runs in a fresh interpreter through ``attrret.cli.main``; afterwards ``torch`` must
not be in ``sys.modules``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.retrieval.conftest import make_index

PROBE = """
import sys
from attrret.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("TORCH" if "torch" in sys.modules else "NO-TORCH", file=sys.stderr)
"""


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""})


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("startup")
    make_index(root / "index", {"a.jpg": {"router": [1.0, 0.0]}, "b.jpg": {}})
    (root / "q.txt").write_text("a man with a hat\na red car\n")
    return root


@pytest.mark.parametrize("args", [
    ("--help",), ("--version",), ("parse", "{q}"), ("search", "a man with a hat", "--index", "{index}"),
    ("rank", "--queries", "{q}", "--index", "{index}", "-o", "{out}"), ("attributes", "--index", "{index}"),
    ("train", "--help"), ("predict", "--help"),
])
def test_commands_that_run_no_model_import_no_torch(index, args):
    values = {"q": str(index / "q.txt"), "index": str(index / "index"), "out": str(index / "sub.json")}
    proc = run(*(a.format(**values) for a in args))
    assert proc.stderr.strip().splitlines()[-1] == "NO-TORCH", proc.stderr[-2000:]


def test_the_probe_sees_torch_when_a_command_imports_it(index):
    """The guard on the test: a command that does load torch is reported as such."""
    proc = subprocess.run([sys.executable, "-c", "import torch, sys; " + PROBE.replace("main(sys.argv[1:])", "main(['--version'])")],
                          capture_output=True, text=True)
    assert proc.stderr.strip().splitlines()[-1] == "TORCH"


@pytest.mark.parametrize("args", [("--help",), ("--version",)])
def test_commands_that_read_no_file_of_attrret_import_no_pydantic(index, args):
    """The validation layer's models load when attrret reads one of its files, not at start-up
    (a command that parses options loads it anyway: typer coerces values with pydantic)."""
    values = {"q": str(index / "q.txt")}
    probe = PROBE.replace('"TORCH" if "torch" in sys.modules else "NO-TORCH"', '"PYDANTIC" if "pydantic" in sys.modules else "NO-PYDANTIC"')
    proc = subprocess.run([sys.executable, "-c", probe, *(a.format(**values) for a in args)], capture_output=True, text=True,
                          env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    assert proc.stderr.strip().splitlines()[-1] == "NO-PYDANTIC", proc.stderr[-2000:]
