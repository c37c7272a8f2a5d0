"""Every real Track-2 line: the parser reads back exactly the label's values.

The expected hidden groups are computed here from the CODE, by the grammar's writing rules
(docs/track2.md), not from the parser's own logic: the one carry clause written is the first
present of handbag > shoulder bag > backpack > holds, and a "wearning" caption (form A)
leaves out sleeve, upper and skirt.
"""

from __future__ import annotations

from attrret.data.track2 import read_label_file
from attrret.schema import load_schema


def hidden_by_grammar(values: dict[str, str], caption: str) -> set[str]:
    hidden: set[str] = set()
    if values["handbag"] == "yes":
        hidden |= {"bag", "holding"}
    elif values["bag"] in ("shoulder", "backpack"):
        hidden |= {"holding"}
    if " is wearning " in caption:
        hidden |= {"sleeve", "upper", "skirt"}
    return hidden


def check_lines(parser, path) -> tuple[int, int]:
    schema = load_schema()
    lines = read_label_file(path, schema)
    n_ped = n_veh = 0
    for ln in lines:
        q = parser.parse(ln.caption)
        where = f"{path}:{ln.line}: {ln.caption}"
        assert q.kind == ln.kind, where
        assert q.unmatched == () and q.unsupported == () and q.negated == {} and q.either == {}, where
        assert not any(s.fuzzy for s in q.spans), where
        if ln.kind == "pedestrian":
            n_ped += 1
            hidden = hidden_by_grammar(ln.values, ln.caption)
            coded = {g.name for g in schema.pedestrian.groups if g.bits}  # the 21-bit code's groups
            assert set(q.unknown) & coded == hidden, where
            assert not set(q.stated) & set(q.implied), where
            known = {g: c for g, c in {**q.stated, **q.implied}.items() if g in coded}
            assert known == {g: c for g, c in ln.values.items() if g not in hidden}, where
            # outside the code, the grammar writes one thing: "boots", which the code drops
            outside = {g: c for g, c in q.stated.items() if g not in coded}
            assert outside == ({"boots": "yes"} if "boots" in ln.caption else {}), where
            # gender, age and orientation are always stated in words
            assert {"gender", "age", "orientation"} <= set(q.stated), where
        else:
            n_veh += 1
            assert q.stated == ln.values, where
            assert q.implied == {}, where
            assert set(q.unknown) == {"color", "type", "brand"} - set(ln.values), where
    return n_ped, n_veh


def test_every_val_sample_line_reads_back_to_its_code(parser, val_sample):
    n_ped, n_veh = check_lines(parser, val_sample)
    assert (n_ped, n_veh) == (1300, 700)


def test_every_pa100k_mini_caption_reads_back_to_its_code(parser, pa100k_labels):
    n_ped, n_veh = check_lines(parser, pa100k_labels)
    assert (n_ped, n_veh) == (1500, 0)
