"""Crop-like test pictures shared by the report and serve tests."""

from __future__ import annotations

from PIL import Image, ImageDraw


def draw_crop(vehicle: bool, colour: tuple[int, int, int]) -> Image.Image:
    """A wide box with wheels for a vehicle, a tall figure for a pedestrian, in ``colour``."""
    if vehicle:
        im = Image.new("RGB", (160, 96), (110, 110, 115))
        d = ImageDraw.Draw(im)
        d.rectangle((14, 30, 146, 72), fill=colour)
        d.rectangle((40, 14, 118, 34), fill=tuple(c // 2 for c in colour))
        for x in (40, 120):
            d.ellipse((x - 12, 62, x + 12, 86), fill=(20, 20, 20))
    else:
        im = Image.new("RGB", (64, 160), (150, 160, 150))
        d = ImageDraw.Draw(im)
        d.ellipse((22, 8, 42, 28), fill=(230, 190, 160))
        d.rectangle((16, 30, 48, 90), fill=colour)
        d.rectangle((18, 90, 30, 150), fill=(40, 40, 60))
        d.rectangle((34, 90, 46, 150), fill=(40, 40, 60))
    return im
