"""Dataset records from a real label folder: order, kinds, and where each came from."""

from pathlib import Path

from attrret.data.records import load_records


def test_pa100k_mini_layout(pa100k_mini: Path):
    records = load_records(pa100k_mini)
    assert len(records) == 1500 and {r.kind for r in records} == {"pedestrian"}
    assert records[0].image == "000001.jpg" and records[0].where.endswith("labels.txt:1")
    assert all(Path(r.path).is_file() for r in records[:20])
