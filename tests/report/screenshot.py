"""Screenshot a report page in headless Chromium (how docs/report_screenshot.png is made).

    .venv/bin/python -m tests.report.screenshot REPORT.html OUT.png [--height 1400] [--open-task vehicle.color] [--js CODE]

Waits until the page's thumbnails have decoded; ``--open-task`` unfolds one confusion chart.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.report.cdp import Browser, chromium_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1400)
    ap.add_argument("--open-task", action="append", default=[], help="unfold this task's confusion chart")
    ap.add_argument("--js", action="append", default=[], help="JS to run before the capture (e.g. set a filter)")
    args = ap.parse_args(argv)
    binary = chromium_path()
    if binary is None:
        print("chromium not installed", file=sys.stderr)
        return 1
    with Browser(binary, width=args.width, height=args.height) as b:
        b.open(args.report)
        for task in args.open_task:
            b.evaluate(f"document.querySelector('details[data-task={json.dumps(task)}]').open = true")
        for js in args.js:
            b.evaluate(js)
        print(b.evaluate("window.attrretReport.ready"))
        b.screenshot(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
