"""PETA release layout -> source images with Track-2 pedestrian values.

``SRC/<subset>/archive/`` holds the subset's images and one ``Label.txt`` (Latin-1), one line
per identity: ``<id> attribute attribute ...``. An image's identity key is its file name up
to the first ``_`` (CUHK: the whole file name), so every image of a person gets that
person's labels. The mapping onto attrret's groups (the one behind
``shared/data/peta-mini/values.jsonl``; docs/import.md has the table):

- gender, age, hat, glasses (sunglasses only), bag, sleeve, upper (no splice), skirt: mapped;
- lower_type: Trousers, Jeans, Capri and Suits are trousers, Shorts and HotPants shorts, the
  two skirts skirt (none or two kinds: unknown); hair: Long / Short / Bald (exactly one);
  boots: footwearBoots; upper_color_* and lower_color_*: the garment's colours are yes, the
  other colours no (a garment with no colour listed: its colours unknown);
- orientation, handbag, holding, coat: PETA has no such attribute; they stay unknown.

Images with both a backpack and a messenger bag are skipped (which one is "the" bag?), as
are images whose identity has no label line. PETA has no split: the writer splits by
identity (``subset/key``), so no person is in two splits.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

from attrret.data.importers.source import ImportOptions, Source, SourceImage
from attrret.errors import InputError
from attrret.schema import Schema, load_schema, member_name
from attrret.validation import Record, load

__all__ = ["PETA_ATTRIBUTES", "map_attributes", "identity_key", "read"]

_COLOURS = ("Black", "Blue", "Brown", "Green", "Grey", "Orange", "Pink", "Purple", "Red", "White", "Yellow")
#: The rare attributes PETA's ReadMe names beside its 61 binary ones (too rare for its own
#: benchmarks, but present in Label.txt: peta-train's stopped the importer at accessoryShawl).
PETA_RARE = frozenset({"accessoryFaceMask", "accessoryShawl", "lowerBodyLogo", "lowerBodyThickStripes"})
# PETA's vocabulary, as its ReadMe lists it: 61 binary attributes, 4 colour attributes of 11
# colours each, and the rare ones above.
PETA_ATTRIBUTES = PETA_RARE | frozenset({
    "personalLess15", "personalLess30", "personalLess45", "personalLess60", "personalLarger60",
    "personalMale", "personalFemale",
    "accessoryHat", "accessoryMuffler", "accessoryNothing", "accessorySunglasses", "accessoryHeadphone",
    "accessoryHairBand", "accessoryKerchief",
    "carryingBackpack", "carryingMessengerBag", "carryingOther", "carryingNothing", "carryingPlasticBags",
    "carryingBabyBuggy", "carryingShoppingTro", "carryingUmbrella", "carryingFolder", "carryingLuggageCase",
    "carryingSuitcase",
    "hairLong", "hairShort", "hairBald",
    "upperBodyCasual", "upperBodyFormal", "upperBodyJacket", "upperBodyLogo", "upperBodyPlaid",
    "upperBodyShortSleeve", "upperBodyLongSleeve", "upperBodyNoSleeve", "upperBodyThinStripes",
    "upperBodyThickStripes", "upperBodyTshirt", "upperBodyOther", "upperBodyVNeck", "upperBodySuit",
    "upperBodySweater",
    "lowerBodyCasual", "lowerBodyFormal", "lowerBodyJeans", "lowerBodyShorts", "lowerBodyShortSkirt",
    "lowerBodyTrousers", "lowerBodyLongSkirt", "lowerBodyCapri", "lowerBodyHotPants", "lowerBodySuits",
    "lowerBodyPlaid", "lowerBodyLogo", "lowerBodyThinStripes", "lowerBodyThickStripes",
    "footwearBoots", "footwearLeatherShoes", "footwearSandals", "footwearShoes", "footwearSneakers",
    "footwearStocking",
} | {f"{part}{c}" for part in ("upperBody", "lowerBody", "hair", "footwear") for c in _COLOURS})

_IMAGE_SUFFIXES = {".bmp", ".png", ".jpg", ".jpeg"}
_AGE = {"personalLess15": "under18", "personalLess30": "18-60", "personalLess45": "18-60",
        "personalLess60": "18-60", "personalLarger60": "over60"}
_PATTERN = {"upperBodyThinStripes": "stripe", "upperBodyThickStripes": "stripe", "upperBodyLogo": "logo",
            "upperBodyPlaid": "plaid"}
BOTH_BAGS = "both a backpack and a messenger bag"
_LOWER_TYPE = {"lowerBodyTrousers": "trousers", "lowerBodyJeans": "trousers", "lowerBodyCapri": "trousers",
               "lowerBodySuits": "trousers", "lowerBodyShorts": "shorts", "lowerBodyHotPants": "shorts",
               "lowerBodyShortSkirt": "skirt", "lowerBodyLongSkirt": "skirt"}
_HAIR = {"hairLong": "long", "hairShort": "short", "hairBald": "bald"}
#: PETA's garment prefix -> the schema's multi-label colour group.
_COLOUR_GROUPS = {"upperBody": "upper_color", "lowerBody": "lower_color"}


def _one(attrs: set[str], mapping: dict[str, str]) -> str | None:
    """The one class ``attrs`` name through ``mapping``; None when they name none or several."""
    found = {mapping[a] for a in attrs if a in mapping}
    return found.pop() if len(found) == 1 else None


def map_attributes(attrs: set[str]) -> dict[str, str] | None:
    """PETA attributes -> ``{group: class}`` for the groups they settle; ``None``: skip the image."""
    if {"carryingBackpack", "carryingMessengerBag"} <= attrs:
        return None
    values: dict[str, str] = {}
    female, male = "personalFemale" in attrs, "personalMale" in attrs
    if female != male:
        values["gender"] = "female" if female else "male"
    ages = {_AGE[a] for a in attrs if a in _AGE}
    if len(ages) == 1:
        values["age"] = ages.pop()
    values["hat"] = "yes" if "accessoryHat" in attrs else "no"
    values["glasses"] = "yes" if "accessorySunglasses" in attrs else "no"
    values["bag"] = ("backpack" if "carryingBackpack" in attrs
                     else "shoulder" if "carryingMessengerBag" in attrs else "none")
    short = bool({"upperBodyShortSleeve", "upperBodyNoSleeve"} & attrs)
    long = "upperBodyLongSleeve" in attrs
    if short != long:
        values["sleeve"] = "short" if short else "long"
    patterns = {_PATTERN[a] for a in attrs if a in _PATTERN}
    if len(patterns) <= 1:
        values["upper"] = patterns.pop() if patterns else "none"
    values["skirt"] = "yes" if {"lowerBodyShortSkirt", "lowerBodyLongSkirt"} & attrs else "no"
    for group, mapping in (("lower_type", _LOWER_TYPE), ("hair", _HAIR)):
        cls = _one(attrs, mapping)
        if cls is not None:
            values[group] = cls
    values["boots"] = "yes" if "footwearBoots" in attrs else "no"
    for part, family in _COLOUR_GROUPS.items():
        colours = {c.lower() for c in _COLOURS if f"{part}{c}" in attrs}
        if colours:
            values |= {member_name(family, c.lower()): "yes" if c.lower() in colours else "no" for c in _COLOURS}
    return values


def identity_key(subset: str, file_name: str) -> str:
    """The ``Label.txt`` key of an image: the name up to the first ``_``; CUHK: the whole name."""
    return file_name if subset == "CUHK" else file_name.split("_", 1)[0]


#: What an identity with two different Label.txt lines maps to: its images are skipped, counted.
CONFLICT: set[str] = {"<two different Label.txt lines>"}
TWO_LINES = "two different Label.txt lines for the image's identity"
#: The longest identity key read (PETA's are a few characters; a 5,000-digit one is damage).
MAX_KEY = 64


def _image_key(key: str) -> str:
    if not re.fullmatch(rf"[A-Za-z0-9_.-]{{1,{MAX_KEY}}}", key):
        raise ValueError(f"{key[:40]!r}{'...' if len(key) > 40 else ''} is not a PETA image key "
                         f"(ASCII letters, digits, '_', '-' or '.', at most {MAX_KEY} characters)")
    return key


def _known(attributes: list[str]) -> list[str]:
    bad = sorted(set(attributes) - PETA_ATTRIBUTES)
    if bad:
        raise ValueError(f"unknown PETA attribute {bad[0]!r} (docs/import.md lists the vocabulary)")
    return attributes


class LabelLine(Record):
    """One ``Label.txt`` line: an identity key (ASCII letters, digits, ``_``, ``-`` or ``.``, at
    most MAX_KEY characters: a 5,000-digit key is damage) and PETA attribute names."""

    key: Annotated[str, AfterValidator(_image_key)]
    attributes: Annotated[list[str], AfterValidator(_known)]


def _read_labels(path: Path) -> dict[str, set[str]]:
    if not path.is_file():
        raise InputError("missing Label.txt (PETA lists each subset's labels there)", path)
    labels: dict[str, set[str]] = {}
    conflicted: set[str] = set()
    for no, line in enumerate(path.read_bytes().decode("latin-1").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        line = load(LabelLine, {"key": fields[0], "attributes": fields[1:]}, "",
                    error=lambda message: InputError(message, path, no))
        key, attrs = line.key, set(line.attributes)
        if key in labels and labels[key] != attrs:  # two lines disagree: neither can be trusted
            conflicted.add(key)
        labels.setdefault(key, attrs)
    for key in conflicted:
        labels[key] = CONFLICT
    return labels


def _subsets(src: Path) -> list[tuple[str, Path]]:
    if not src.is_dir():
        raise InputError("no such folder (expected the PETA release: <subset>/archive/ + Label.txt)", src)
    if (src / "archive").is_dir():  # one subset given directly
        return [(src.name, src / "archive")]
    found = sorted((p.name, p / "archive") for p in src.iterdir() if (p / "archive").is_dir())
    if not found:
        raise InputError("no PETA subsets: expected SRC/<subset>/archive/ with images and Label.txt", src)
    return found


def read(src: Path, options: ImportOptions, schema: Schema | None = None) -> Source:
    """PETA's groups are the packaged schema's pedestrian groups by name; under a custom
    ``schema`` the values of groups it lacks are left out."""
    groups = set((schema or load_schema()).pedestrian.group_names)
    source = Source([])
    for subset, archive in _subsets(src):
        labels = _read_labels(archive / "Label.txt")
        by_number = {int(k): v for k, v in labels.items() if k.isascii() and k.isdigit()}
        for image in sorted(p for p in archive.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file()):
            key = identity_key(subset, image.name)
            attrs = labels.get(key)
            if attrs is None and key.isascii() and key.isdigit() and len(key) <= MAX_KEY:  # "1" in Label.txt for "001_..."
                attrs = by_number.get(int(key))
            if attrs is None:
                source.skip("no Label.txt line for the image's identity")
                continue
            if attrs is CONFLICT:
                source.skip(TWO_LINES)
                continue
            values = map_attributes(attrs)
            if values is None:
                source.skip(BOTH_BAGS)
                continue
            values = {g: c for g, c in values.items() if g in groups}
            source.items.append(SourceImage(image, f"{subset}_{image.name}", "pedestrian", values, None,
                                            f"{subset}/{key}", str(archive / "Label.txt")))
    return source
