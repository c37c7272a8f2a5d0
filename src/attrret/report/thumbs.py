"""Thumbnails inlined as base64 JPEG data URIs, each image stored once.

The report must work offline from one file, so every thumbnail travels inside it. A result
list of 17,611 queries x 10 names mentions the same gallery images many times; the table
below gives each distinct image one id, and the page refers to ids, so an image costs its
bytes once however often it is returned.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from attrret.data.track2 import check_image_name

__all__ = ["THUMB_HEIGHT", "THUMB_MAX_WIDTH", "thumbnail_data_uri", "ThumbnailTable"]

#: Thumbnails are scaled to this height (pedestrian crops are tall, so 72 px keeps a face and a bag
#: recognisable) and at most this width (vehicle crops are wide).
THUMB_HEIGHT = 72
THUMB_MAX_WIDTH = 96
JPEG_QUALITY = 72


def thumbnail_data_uri(path: Path, height: int = THUMB_HEIGHT, max_width: int = THUMB_MAX_WIDTH) -> str:
    """Decode ``path``, downscale it to fit ``height`` x ``max_width`` and return a JPEG data URI.

    Raises OSError (or PIL's UnidentifiedImageError, a subclass) when the file is missing or
    undecodable; the caller decides whether that is fatal.
    """
    with Image.open(path) as im:
        # draft() lets the JPEG decoder skip detail it would throw away (a large speed-up for big crops).
        im.draft("RGB", (max_width * 2, height * 2))
        im = ImageOps.exif_transpose(im)
        im = im.convert("RGB")
        scale = min(height / im.height, max_width / im.width, 1.0)
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        im = im.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass
class ThumbnailTable:
    """Image name -> id, and id -> data URI (None when the image could not be read).

    Built once per report by :func:`attrret.report.build_report`; not shared.
    """

    folder: Path | None
    names: list[str] = field(default_factory=list)
    uris: list[str | None] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    _ids: dict[str, int] = field(default_factory=dict)

    def id(self, name: str) -> int:
        """The id of ``name``, decoding its thumbnail on first use."""
        found = self._ids.get(name)
        if found is not None:
            return found
        uri = None
        if self.folder is not None:
            try:
                uri = thumbnail_data_uri(self.folder / check_image_name(name))
            except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
                uri = None  # a bad name, a missing or undecodable file: shown as a placeholder
        if uri is None:
            self.missing.append(name)
        self._ids[name] = len(self.names)
        self.names.append(name)
        self.uris.append(uri)
        return self._ids[name]
