"""A query row's unknown groups: a multi-label group reads as one name, not eleven colours."""

from __future__ import annotations

from attrret.parser import CaptionParser
from attrret.report.content import query_row
from attrret.report.thumbs import ThumbnailTable
from attrret.schema import load_schema


def test_a_wholly_unknown_multi_label_group_is_listed_once_by_name(tmp_path):
    schema = load_schema()
    families = {g.name: g.family for g in schema.pedestrian.groups if g.family}
    parser = CaptionParser(grammar_table=False)

    def unknown(text: str) -> list[str]:
        row = query_row(parser.parse(text), [], thumbs=ThumbnailTable(tmp_path), facts=lambda n: None,
                        is_relevant=None, scores=None, families=families)
        return row["u"]

    u = unknown("a woman with a backpack")
    assert "upper_color" in u and "lower_color" in u and not any(g.startswith("upper_color_") for g in u)
    assert "hair" in u and "gender" not in u
    u = unknown("a woman in a red top")  # a colour group the query speaks of: its other colours are not "unknown"
    assert "upper_color" not in u and "lower_color" in u
