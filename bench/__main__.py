"""Run the benchmarks: ``python -m bench`` runs every ``bench/*.py`` module's ``main()``;
``python -m bench parse quality`` runs only those. Each module is run with no arguments
(its defaults); a failing benchmark is reported and the others still run."""

from __future__ import annotations

import importlib
import inspect
import sys
import time
import traceback
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(p.stem for p in here.glob("*.py") if not p.stem.startswith("_"))


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available())}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        print(f"\n## bench/{name}.py", flush=True)
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            fn = module.main
            # modules whose main takes argv get an empty list: their own defaults, not ours
            fn([]) if inspect.signature(fn).parameters else fn()
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            failed.append(name)
        print(f"[bench] {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    if failed:
        print(f"[bench] failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
