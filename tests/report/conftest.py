"""A tiny Track-2-like test set (real grammar, real codes, drawn images) and a submission for it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from .pictures import draw_crop

# Vehicles first, then pedestrians, as in every Track-2 file. Codes agree with the captions.
LABEL_LINES = [
    "vehicle_0000001.jpg$red Geely SUV.$This is a red Geely SUV.",
    "vehicle_0000002.jpg$white Balong Heavy Truck Truck.$This is a white Balong Heavy Truck Truck.",
    "vehicle_0000003.jpg$red Geely SUV.$This is a red Geely SUV.",
    "vehicle_0000004.jpg$orange Honda Sedan.$This is an orange Honda Sedan.",
    "090001.jpg$1,0,1,0,0,0,1,0,0,0,1,0,0,1,0,0,0,0,0,0,0$A female pedestrian is someone who walks on foot, "
    "is between 18 and 60 years old, with her body back to the camera and has a shoulderbag. "
    "She is in a tee shirt with short sleeves.",
    "090002.jpg$0,0,0,1,1,0,0,0,0,0,0,1,0,0,1,0,1,0,0,0,0$A walking man who is a minor, with his body facing the "
    "camera and carrying a backpack. He is in a shirt with long sleeves with a logo on the upper.",
    "090003.jpg$1,1,0,0,0,1,0,1,1,1,0,0,0,0,1,0,0,0,0,0,0$A female pedestrian who is aged 60 or older, and is "
    "standing sideways and carrying a handbag. She is wearning a hat,glasses.",
    "090004.jpg$1,0,1,0,1,0,0,0,0,0,0,0,0,1,0,0,0,0,0,0,1$A pedestrian who is female is an adult person aged "
    "18-60, with her body facing the camera. She is in a short sleeve shirt and wearing skirt or dress.",
    "090005.jpg$0,0,1,0,0,0,1,0,0,0,0,0,1,0,1,1,0,0,0,0,0$A male pedestrian who is between 18 and 60 years old, "
    "with his body back to the camera and holds objects in front. He is in a long sleeve shirt with an upper stripe.",
    "090006.jpg$1,0,1,0,0,0,1,0,0,0,1,0,0,1,0,0,0,1,0,0,0$A female pedestrian who is between 18 and 60 years old, "
    "with her body back to the camera and with a shoulderbag. She is in a shirt with short sleeves with an upper plaid.",
]

COLOURS = [(200, 30, 30), (240, 240, 240), (190, 40, 50), (250, 140, 20), (60, 90, 200), (30, 160, 70)]


@dataclass(frozen=True)
class Track2Set:
    root: Path
    labels: Path
    images: Path
    submission: Path
    names: tuple[str, ...]
    captions: tuple[str, ...]


def draw(name: str, i: int) -> Image.Image:
    """A crop-like picture: a tall figure for pedestrians, a wide box with wheels for vehicles."""
    return draw_crop(name.startswith("vehicle_"), COLOURS[i % len(COLOURS)])


def make_track2_set(root: Path) -> Track2Set:
    """Write ``root/test/test_label.txt``, ``root/test/test_images/*.jpg`` and ``root/submission.json``.

    Query j's list is the gallery rotated to start at image 2j (mod 10), so the query's own
    image sits at rank 1 + (-j mod 10): ranks, hits and misses vary from query to query.
    """
    test = root / "test"
    images = test / "test_images"
    images.mkdir(parents=True)
    labels = test / "test_label.txt"
    labels.write_text("\n".join(LABEL_LINES) + "\n", encoding="utf-8")
    names = tuple(line.split("$")[0] for line in LABEL_LINES)
    captions = tuple(line.split("$")[2] for line in LABEL_LINES)
    for i, name in enumerate(names):
        draw(name, i).save(images / name, quality=90)
    results = [{"text": cap, "image_names": list(names[2 * j % 10 :] + names[: 2 * j % 10])} for j, cap in enumerate(captions)]
    submission = root / "submission.json"
    submission.write_text(json.dumps({"results": results}), encoding="utf-8")
    return Track2Set(root, labels, images, submission, names, captions)


@pytest.fixture
def track2_set(tmp_path: Path) -> Track2Set:
    return make_track2_set(tmp_path / "set")
