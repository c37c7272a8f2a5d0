"""Run the benchmarks and collect their tables into one Markdown report.

    .venv/bin/python -m bench                    # every bench/*.py, defaults
    .venv/bin/python -m bench parse rank         # only those
    .venv/bin/python -m bench --update-docs      # also replace the results block of docs/benchmarks.md

Each module's ``main()`` runs with its own defaults; whatever it prints (its Markdown table)
is echoed and collected into ``bench/results/summary.md`` as one section per benchmark, each
stamped with the date, the machine and its load (each module also writes its own JSON under
``bench/results/``). Sections of benchmarks not run this time are kept from the previous
summary, so rerunning one benchmark refreshes only its section. ``--update-docs`` copies
the summary between the ``<!-- bench:begin -->`` / ``<!-- bench:end -->`` markers of
docs/benchmarks.md, so every number there comes from this command. A failing benchmark is reported
and the others still run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import inspect
import io
import os
import platform
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
#: Run order: cheap timing benchmarks first, on an otherwise idle machine.
ORDER = ("parse", "rank", "serve", "predict", "train", "demo", "classifiers_pa100k", "classifiers_synth", "retrieval_pa100k", "quality",
         "freezing", "recipe", "accuracy", "clothing", "budget", "precision")
SECTION = "### `bench/"


def available() -> list[str]:
    here = Path(__file__).parent
    found = {p.stem for p in here.glob("*.py") if not p.stem.startswith("_")}
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


class _Tee(io.TextIOBase):
    """Echo to the real stdout and keep a copy."""

    def __init__(self, out) -> None:
        self.out, self.buf = out, io.StringIO()

    def write(self, s: str) -> int:
        self.out.write(s)
        self.out.flush()
        return self.buf.write(s)


def machine() -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    import torch

    from attrret.classifiers.runtime import resolve_precision

    isa = torch.backends.cpu.get_cpu_capability()
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu or 'unknown CPU'}, {isa}){mem}, "
            f"Python {platform.python_version()}, no GPU used, models in {resolve_precision(None, torch.device('cpu')).describe()}")


def _read_sections(path: Path) -> dict[str, str]:
    """The previous summary's sections by benchmark name (empty when there is none)."""
    if not path.is_file():
        return {}
    out = {}
    for chunk in path.read_text(encoding="utf-8").split(SECTION)[1:]:
        name = chunk.split(".py`", 1)[0]
        out[name] = f"{SECTION}{chunk.rstrip()}\n"
    return out


def update_docs(summary: str, readme: Path = ROOT / "docs" / "benchmarks.md") -> None:
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme}: no {BEGIN} ... {END} block to replace")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    from attrret.io import atomic_write_text

    atomic_write_text(readme, f"{head}{BEGIN}\n{summary.rstrip()}\n{END}{tail}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(available())})")
    ap.add_argument("--update-docs", action="store_true", help="replace docs/benchmarks.md's results block with this run's summary")
    args = ap.parse_args(argv)
    names = args.names or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available())}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT / "src"))
    sections, failed = _read_sections(RESULTS / "summary.md"), []
    host = machine()  # one machine per run; every section this run refreshes is stamped with it
    for name in names:
        print(f"\n## bench/{name}.py", flush=True)
        started = dt.datetime.now(dt.timezone.utc)
        t0 = time.perf_counter()
        tee = _Tee(sys.stdout)
        note = ""
        try:
            module = importlib.import_module(f"bench.{name}")
            fn = module.main
            with contextlib.redirect_stdout(tee):
                # modules whose main takes argv get an empty list: their own defaults, not ours
                rc = fn([]) if inspect.signature(fn).parameters else fn()
            # some mains return their JSON document (tests use it); only an int is an exit status
            if isinstance(rc, int) and not isinstance(rc, bool) and rc:
                note = f"exit {rc}: a target or check not met, see the table"
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            note = "crashed"
        if note:
            failed.append(f"{name} ({note})")
        secs = time.perf_counter() - t0
        print(f"[bench] {name}: {secs:.1f} s", file=sys.stderr, flush=True)
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
        sections[name] = (f"{SECTION}{name}.py`\n\n_`python -m bench {name}`, {started:%Y-%m-%d %H:%M} UTC, {secs / 60:.1f} min, "
                          f"on {host}; load average at the end {load}._{'  **' + note + '**' if note else ''}\n\n{tee.buf.getvalue().strip()}\n")

    order = [n for n in available() if n in sections] + sorted(set(sections) - set(available()))
    summary = "\n".join(["Each section's stamp names when and on which machine it ran (sections refresh one by one). "
                          "JSON beside each table in `bench/results/`.", "",
                          *(sections[n] for n in order)])
    from attrret.io import atomic_write_text

    atomic_write_text(RESULTS / "summary.md", summary + "\n")
    print(f"\n[bench] summary: {RESULTS / 'summary.md'}", file=sys.stderr)
    if args.update_docs:
        update_docs(summary)
        print("[bench] docs/benchmarks.md results block updated", file=sys.stderr)
    if failed:
        print(f"[bench] not met or failed: {'; '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
