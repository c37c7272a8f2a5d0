"""Contact sheet of a generated set: test crops with their full attributes, for a person to check."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from attrret.data.track2 import read_label_file
from attrret.io import atomic_path

__all__ = ["contact_sheet"]

_SHORT = {
    "gender": {"female": "F", "male": "M"},
    "age": {"over60": "60+", "18-60": "adult", "under18": "<18"},
}


def _lines(kind: str, values: dict[str, str]) -> list[str]:
    if kind == "vehicle":
        return [values.get("color", "?"), values.get("type", "?"), values.get("brand", "?")]
    first = f"{_SHORT['gender'][values['gender']]} {_SHORT['age'][values['age']]} {values['orientation']}"
    flags = [g for g in ("hat", "glasses", "handbag", "holding", "coat", "skirt") if values[g] == "yes"]
    second = f"{values['sleeve']}" + ("" if values["upper"] == "none" else f" {values['upper']}")
    bag = "" if values["bag"] == "none" else values["bag"]
    return [first, second, " ".join([bag, *flags]).strip() or "-"]


def contact_sheet(root: Path, out: Path, per_kind: int = 12, cell: tuple[int, int] = (120, 190)) -> Path:
    """Write a PNG grid of the first ``per_kind`` test vehicles and pedestrians with captions."""
    root = Path(root)
    labels = read_label_file(root / "test" / "test_label.txt")
    chosen = [ll for ll in labels if ll.kind == "vehicle"][:per_kind] + [ll for ll in labels if ll.kind == "pedestrian"][:per_kind]
    cols = per_kind
    rows = -(-len(chosen) // cols) if chosen else 1
    cw, ch = cell
    text_h = 36
    sheet = Image.new("RGB", (cols * cw, rows * (ch + text_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=10)
    for k, ll in enumerate(chosen):
        im = Image.open(root / "test" / "test_images" / ll.image).convert("RGB")
        im.thumbnail((cw - 4, ch - 4))
        x, y = (k % cols) * cw, (k // cols) * (ch + text_h)
        sheet.paste(im, (x + (cw - im.width) // 2, y + (ch - im.height) // 2))
        for j, line in enumerate(_lines(ll.kind, ll.values)):
            draw.text((x + 2, y + ch + j * 11), line[:22], fill=(0, 0, 0), font=font)
    with atomic_path(out, ".png") as tmp:
        sheet.save(tmp, format="PNG")
    return out
