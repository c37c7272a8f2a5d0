"""Read the embedded query data back out of a report page (shared by the report tests)."""

from __future__ import annotations

import json
import re
from pathlib import Path

DATA_RE = re.compile(r'<script type="application/json" id="report-data">(.*?)</script>', re.S)


def page_data(path: Path) -> dict:
    blocks = DATA_RE.findall(Path(path).read_text(encoding="utf-8"))
    assert len(blocks) == 1, f"expected one data block, found {len(blocks)}"
    return json.loads(blocks[0])
