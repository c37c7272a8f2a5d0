"""PA-100K: ``annotation.mat`` + the image folder -> source images with Track-2 pedestrian values.

``annotation.mat`` (read with ``scipy.io.loadmat``) holds ``attributes`` (the 26 attribute
names) and, per split, ``<split>_images_name`` and ``<split>_label`` (one 0/1 row of 26 per
image). The Track-2 pedestrian code IS PA-100K's: 21 of the 26 attributes in the same order,
without LowerStripe, LowerPattern, Trousers, Shorts and boots. Three of those five have groups
outside the code (:func:`clothing_values`): Trousers / Shorts / Skirt&Dress give ``lower_type``
(exactly one set; none or several: unknown) and boots gives ``boots``; LowerStripe and
LowerPattern have no group. Attributes are matched by name, so a file with another column order
still maps right. A group whose bits break its
rule on an image (two orientations, no age) is left unknown for that image and counted.
PA-100K's own split is kept: train -> train, val -> val, test -> test.
"""

from __future__ import annotations

import struct
import zlib

from pathlib import Path

import numpy as np

from attrret.data.importers.source import ImportOptions, Source, SourceImage
from attrret.errors import InputError
from attrret.schema import Schema, load_schema
from attrret.schema.codes import decode_groups

__all__ = ["PA100K_ATTRIBUTES", "TRACK2_BIT", "LOWER_TYPE", "clothing_values", "read", "find_annotation"]

PA100K_ATTRIBUTES = (
    "Female", "AgeOver60", "Age18-60", "AgeLess18", "Front", "Side", "Back", "Hat", "Glasses", "HandBag",
    "ShoulderBag", "Backpack", "HoldObjectsInFront", "ShortSleeve", "LongSleeve", "UpperStride", "UpperLogo",
    "UpperPlaid", "UpperSplice", "LowerStripe", "LowerPattern", "LongCoat", "Trousers", "Shorts", "Skirt&Dress", "boots",
)
# PA-100K attribute -> its bit in the 21-bit Track-2 code; the other five have no Track-2 group.
TRACK2_BIT = {name: i for i, name in enumerate(PA100K_ATTRIBUTES[:19])} | {"LongCoat": 19, "Skirt&Dress": 20}

#: PA-100K attribute -> its class of the schema's ``lower_type`` group.
LOWER_TYPE = {"Trousers": "trousers", "Shorts": "shorts", "Skirt&Dress": "skirt"}

_SPLITS = ("train", "val", "test")


def clothing_values(on: set[str], names: set[str], groups: tuple[str, ...]) -> dict[str, str]:
    """The groups outside the Track-2 code that a PA-100K row settles: ``on`` holds its attributes
    set to 1, ``names`` those the file has, ``groups`` the schema's pedestrian groups."""
    values = {}
    if "lower_type" in groups and set(LOWER_TYPE) <= names:
        types = [LOWER_TYPE[a] for a in LOWER_TYPE if a in on]
        if len(types) == 1:
            values["lower_type"] = types[0]
    if "boots" in groups and "boots" in names:
        values["boots"] = "yes" if "boots" in on else "no"
    return values


def find_annotation(src: Path) -> Path:
    """``src`` itself when it is a file, else ``src/annotation.mat`` or ``src/annotation/annotation.mat``."""
    if src.is_file():
        return src
    if not src.is_dir():
        raise InputError("no such file or directory", src)
    for cand in (src / "annotation.mat", src / "annotation" / "annotation.mat"):
        if cand.is_file():
            return cand
    raise InputError("missing annotation.mat (looked for annotation.mat and annotation/annotation.mat)", src)


def _strings(arr, key: str, mat: Path) -> list[str]:
    """A MATLAB cell array of strings as a list of ``str`` (loadmat nests them in object arrays)."""
    out = []
    for e in np.atleast_1d(np.asarray(arr, dtype=object)).ravel():
        while isinstance(e, np.ndarray):
            if e.size != 1:
                raise InputError(f"{key!r} must be a cell array of strings", mat)
            e = e.ravel()[0]
        if not isinstance(e, str):
            raise InputError(f"{key!r} must be a cell array of strings, found {type(e).__name__}", mat)
        out.append(e.strip())
    return out


def _load(mat: Path) -> dict:
    import scipy.io  # lazy: only this importer needs scipy
    from scipy.io.matlab import MatReadError

    try:
        return scipy.io.loadmat(str(mat), squeeze_me=True)
    except (MatReadError, ValueError, TypeError, OSError, NotImplementedError, zlib.error, struct.error, EOFError,
            IndexError, KeyError, UnicodeDecodeError) as exc:  # a damaged file fails deep inside scipy, in many ways
        raise InputError(f"not a readable MATLAB .mat file ({type(exc).__name__}: {str(exc)[:200]})", mat) from None


def _binary(labels: np.ndarray, split: str, images: list[str], names: list[str], mat: Path) -> np.ndarray:
    """``labels`` as 0/1 integers, refusing anything else with the split, row and attribute: a
    NaN, a -1 or a 0.4 is no label (read as 0 or 1 they would train a wrong class silently),
    and text is not a number."""
    try:
        arr = np.asarray(labels, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{split}_label must hold the numbers 0 and 1, found {np.asarray(labels).dtype} values", mat) from None
    bad = ~np.isin(arr, (0.0, 1.0))
    if bad.any():
        i, j = (int(x) for x in np.argwhere(bad)[0])
        raise InputError(f"{split}_label row {i} ({images[i]!r}), attribute {names[j]}: {arr[i, j]!r} is not 0 or 1 "
                         f"({int(bad.sum()):,} such values)", mat)
    return arr.astype(np.int8)


def _image_folder(src: Path, mat: Path, first: str, options: ImportOptions) -> Path:
    """The folder holding the images: ``--images``, else the first usual PA-100K place that has the first image."""
    if options.images is not None:
        return options.images
    bases = [src] if src.is_dir() else []
    bases += [mat.parent] if mat.parent not in bases else []
    cands = [b / sub for b in bases for sub in ("data", "release_data/release_data", "release_data", "images", "")]
    for c in cands:
        if (c / first).is_file():
            return c
    raise InputError(f"image {first!r} not found in {', '.join(str(c) for c in cands)}; give --images DIR", src)


def read(src: Path, options: ImportOptions, schema: Schema | None = None) -> Source:
    schema = schema or load_schema()
    mat = find_annotation(src)
    doc = _load(mat)
    present = [s for s in _SPLITS if f"{s}_images_name" in doc or f"{s}_label" in doc]
    if "attributes" not in doc or not present:
        keys = sorted(k for k in doc if not k.startswith("__"))
        raise InputError("not a PA-100K annotation.mat: expected keys attributes and <split>_images_name, "
                         f"<split>_label for train/val/test; found {', '.join(keys) or 'none'}", mat)
    names = _strings(doc["attributes"], "attributes", mat)
    unknown = [n for n in names if n not in PA100K_ATTRIBUTES]
    if unknown:
        raise InputError(f"unknown PA-100K attribute names: {', '.join(unknown)} "
                         f"(expected some of: {', '.join(PA100K_ATTRIBUTES)})", mat)
    subject = schema.pedestrian
    column_of = {TRACK2_BIT[n]: j for j, n in enumerate(names) if n in TRACK2_BIT}
    # a group is known only when the file has every attribute behind its bits
    known_groups = {g.name for g in subject.groups if all(b in column_of for b in g.bits)}
    source = Source([])
    folder: Path | None = None
    for split in present:
        for key in (f"{split}_images_name", f"{split}_label"):
            if key not in doc:
                raise InputError(f"has {split} data but no {key!r}", mat)
        images = _strings(doc[f"{split}_images_name"], f"{split}_images_name", mat)
        labels = np.asarray(doc[f"{split}_label"])
        if labels.size == len(names) * len(images):
            labels = labels.reshape(len(images), len(names))
        if labels.shape != (len(images), len(names)):
            raise InputError(f"{split}_label has shape {labels.shape}, expected ({len(images)}, {len(names)}): "
                             f"one row per image, one column per attribute", mat)
        labels = _binary(labels, split, images, names, mat)
        if images and folder is None:
            folder = _image_folder(src, mat, images[0], options)
        for i, (image, row) in enumerate(zip(images, labels)):
            bits = [0] * subject.code_bits
            for b, j in column_of.items():
                bits[b] = int(row[j] > 0)
            values, invalid = decode_groups(bits, subject)
            for g in invalid:
                source.skip(f"{g} left unknown: its bits break the group's rule")
            values = {g: c for g, c in values.items() if g in known_groups}
            values |= clothing_values({n for n, x in zip(names, row) if x}, set(names), subject.group_names)
            source.items.append(SourceImage(folder / image, image, "pedestrian", values, split, image,
                                            f"{mat}: {split}_images_name[{i}]"))
    return source
