"""Safe image loading and the aspect-preserving resize-and-pad every model input goes through.

Surveillance crops are tall (pedestrians) or wide (vehicles); squashing them to a square
distorts exactly the cues the classifiers need, so images are resized to fit and padded.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from attrret.errors import InputError

__all__ = ["MAX_PIXELS", "load_image", "resize_pad"]

#: Larger images are refused before decoding (a 20000 x 20000 crop would need 1.2 GB as RGB).
MAX_PIXELS = 40_000_000


def load_image(path: str | Path, where: str | None = None) -> Image.Image:
    """Decode ``path`` to an RGB image; any failure is an :class:`InputError` naming the file.

    Grayscale, CMYK, palette, 16-bit and alpha images are converted to 8-bit RGB (alpha is
    composited on grey, the padding colour). ``where`` (e.g. ``labels.txt:12``) is added to
    the message so the user finds the label line too.
    """
    path = Path(path)
    suffix = f" (listed at {where})" if where else ""
    try:
        with warnings.catch_warnings():
            # Pillow warns above ~89 M pixels and refuses above ~179 M; our own limit is lower
            # and its message clearer, so neither Pillow warning nor error reaches the user.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im_cm = Image.open(path)
        with im_cm as im:
            if im.width * im.height > MAX_PIXELS:
                raise InputError(
                    f"image is {im.width}x{im.height}, larger than the {MAX_PIXELS:,} pixel limit{suffix}", path
                )
            im = ImageOps.exif_transpose(im)
            im.load()
            return _to_rgb(im)
    except FileNotFoundError:
        raise InputError(f"image not found{suffix}", path) from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"image is larger than the {MAX_PIXELS:,} pixel limit ({str(exc).split(', could')[0]}){suffix}", path) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"cannot decode image ({type(exc).__name__}: {exc}){suffix}", path) from None


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        im = im.point(lambda v: v / 256).convert("L")
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (128, 128, 128, 255))
        im = Image.alpha_composite(bg, im)
    return im.convert("RGB")


def resize_pad(im: Image.Image, size: int | tuple[int, int], fill: tuple[int, int, int] = (128, 128, 128)) -> Image.Image:
    """Fit ``im`` inside ``size`` (int = square, or ``(height, width)``) keeping its aspect, pad the rest."""
    h, w = (size, size) if isinstance(size, int) else size
    scale = min(w / im.width, h / im.height)
    nw, nh = max(1, round(im.width * scale)), max(1, round(im.height * scale))
    resized = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=2.0)
    canvas = Image.new("RGB", (w, h), fill)
    canvas.paste(resized, ((w - nw) // 2, (h - nh) // 2))
    return canvas
