"""A torch Dataset per task: ``(image tensor, class index)`` for the records whose label is known.

Vehicle labels are incomplete (``white Audi.`` says nothing of the type), so a task keeps
only the records of its subject that know its group; the router task keeps every record
and labels it with its kind. Images go through an optional per-task crop (the published
method crops the top half for hat and glasses), optional label-safe augmentation and flip,
then the aspect-preserving resize-and-pad every model input gets.

A missing or corrupt image is an :class:`InputError` naming the file and the label line;
with ``skip_bad=True`` every image is decoded once up front and the bad ones are dropped
and counted in ``.skipped`` (records and labels are filtered together, so names and labels
never drift apart).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from attrret.data.images import load_image, resize_pad
from attrret.data.records import Record
from attrret.data.transforms import augment_for, hflip
from attrret.errors import InputError
from attrret.schema import Group

__all__ = ["TaskDataset", "DEFAULT_CROPS", "REGIONS", "crop_region", "to_tensor"]

#: Crop boxes as fractions (left, top, right, bottom) of the image.
REGIONS: dict[str, tuple[float, float, float, float]] = {
    "full": (0.0, 0.0, 1.0, 1.0),
    "top_half": (0.0, 0.0, 1.0, 0.5),
    "bottom_half": (0.0, 0.5, 1.0, 1.0),
    "top_third": (0.0, 0.0, 1.0, 1 / 3),
    "upper_body": (0.0, 0.0, 1.0, 0.6),
}

#: Per-task default crops (published method: top half for hat and glasses).
DEFAULT_CROPS: dict[str, str] = {"pedestrian.hat": "top_half", "pedestrian.glasses": "top_half"}


def crop_region(im: Image.Image, region: str | None) -> Image.Image:
    """Crop ``im`` to a named region of :data:`REGIONS` (``None`` or ``full``: unchanged)."""
    if region is None or region == "full":
        return im
    try:
        l, t, r, b = REGIONS[region]
    except KeyError:
        raise ValueError(f"unknown crop region {region!r}; regions: {', '.join(REGIONS)}") from None
    w, h = im.size
    box = (round(l * w), round(t * h), max(round(l * w) + 1, round(r * w)), max(round(t * h) + 1, round(b * h)))
    return im.crop(box)


def to_tensor(im: Image.Image, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """RGB PIL -> normalized float32 CHW tensor."""
    a = torch.from_numpy(np.asarray(im, dtype=np.float32).copy()).permute(2, 0, 1) / 255.0
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
    return (a - m) / s


class TaskDataset(torch.utils.data.Dataset):
    """Yields ``(tensor CHW float32 normalized, class_index)`` for one task.

    ``records`` from :func:`attrret.data.records.load_records`; ``group`` from the schema
    (``schema.task("vehicle.type")``); ``size`` int (square) or ``(height, width)``.
    ``.records`` / ``.labels`` are the kept records and their class indices (same order),
    ``.skipped`` the errors of images dropped by ``skip_bad``.
    """

    def __init__(
        self,
        records: Sequence[Record],
        group: Group,
        size: int | tuple[int, int],
        mean: Sequence[float],
        std: Sequence[float],
        *,
        crop: str | None = None,
        augment: bool = False,
        flip: bool = False,
        skip_bad: bool = False,
    ) -> None:
        if crop is not None and crop not in REGIONS:
            raise ValueError(f"unknown crop region {crop!r}; regions: {', '.join(REGIONS)}")
        self.group = group
        self.size = size
        self.mean, self.std = tuple(mean), tuple(std)
        self.crop = crop
        self.flip = flip
        self._augment = augment_for(group.task) if augment else None
        kept: list[Record] = []
        labels: list[int] = []
        for r in records:
            cls = self._label_of(r)
            if cls is None:
                continue
            kept.append(r)
            labels.append(group.index(cls))
        self.skipped: list[InputError] = []
        if skip_bad:
            ok = []
            for i, r in enumerate(kept):
                try:
                    load_image(r.path, where=r.where)
                    ok.append(i)
                except InputError as exc:
                    self.skipped.append(exc)
            kept = [kept[i] for i in ok]
            labels = [labels[i] for i in ok]
        self.records: list[Record] = kept
        self.labels: list[int] = labels

    def _label_of(self, r: Record) -> str | None:
        if self.group.subject == "router":
            return r.kind
        if r.kind != self.group.subject:
            return None
        return r.values.get(self.group.name)

    def __len__(self) -> int:
        return len(self.records)

    def load(self, i: int, rng: np.random.Generator | None = None) -> Image.Image:
        """The model-ready PIL image of sample ``i`` (augmented when ``rng`` is given and augmentation is on)."""
        r = self.records[i]
        im = crop_region(load_image(r.path, where=r.where), self.crop)
        if rng is not None:
            if self._augment is not None:
                im = self._augment(im, rng)
            if self.flip and rng.random() < 0.5:
                im = hflip(im)
        return resize_pad(im, self.size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rng = None
        if self._augment is not None or self.flip:
            # seeded from torch so torch.manual_seed and DataLoader worker seeding make it reproducible
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)).item()))
        return to_tensor(self.load(i, rng), self.mean, self.std), self.labels[i]
