"""Crops from a detector's output: video frames + boxes -> crop images + a metadata table.

``attrret data crops --frames DIR --detections FILE --out OUT`` reads:

- **MOT** text (``.txt``, ``.csv``; MOTChallenge's ``det.txt`` / ``gt.txt`` and tracker
  outputs): ``frame,id,x,y,w,h,score,...`` per line, frames counted from 1, boxes in pixels
  (left, top, width, height). ``id`` is the track (-1: none). Frame N is the image of DIR whose
  file stem is the number N (``000001.jpg``, MOT's ``img1/`` layout), else the N-th image in
  name order.
- **COCO-style JSON**: ``{"images": [{"id", "file_name", ...}], "annotations": [{"image_id",
  "bbox": [x, y, w, h], "category_id", "score"?, "track_id"?}], "categories": [{"id", "name"}]}``.
  Only people and road vehicles are cut out (``person``, ``pedestrian``; ``car``, ``bus``,
  ``truck``, ``van``, ``motorcycle``); other categories are counted and skipped. An image's
  ``frame_id`` (else its position in ``images``) is its frame number.

It writes ``OUT/images/<camera>_<frame>_<track or detection>.jpg`` and ``OUT/meta.csv`` (image,
camera, time, track, frame, x, y, w, h, score, category), the table ``attrret predict --images
OUT/images --meta OUT/meta.csv`` reads. Times come from ``--start`` and ``--fps`` (frame N at
start + (N - 1) / fps), from ``--timestamps FILE`` (``frame,time`` per line), or, for COCO,
from each image's ``date_captured``; none of these: no time column.
``--per-track best`` keeps one crop per track, its highest-scoring box.

Safety as every writer here: the set is built in a hidden ``.OUT.partial`` beside OUT and
renamed into place when complete, under a lock, with a ``crops.json`` marker listing every file
written; ``--force`` replaces only such a set, never a user's folder.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time as clock
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from attrret.errors import InputError, OptionError
from attrret.retrieval.meta import format_time, parse_time

__all__ = ["Detection", "CropsSummary", "read_mot", "read_coco", "make_crops", "MARKER", "CATEGORIES", "FORMATS", "PER_TRACK"]

MARKER = "crops.json"
#: Detection file formats and --per-track choices (the CLI lists them from here).
FORMATS = ("mot", "coco")
PER_TRACK = ("all", "best")
META = "meta.csv"
_LAYOUT = frozenset({"images", META})
#: COCO category names that are cut out, and the subject each is.
CATEGORIES = {"person": "pedestrian", "pedestrian": "pedestrian", "car": "vehicle", "bus": "vehicle",
              "truck": "vehicle", "van": "vehicle", "motorcycle": "vehicle"}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: The most detections one file may list (a MOT file of a day of 30 fps video has fewer).
MAX_DETECTIONS = 5_000_000


@dataclass(frozen=True)
class Detection:
    """One box: its frame number, track ("" when none), box in pixels, score and category."""

    frame: int
    track: str
    x: float
    y: float
    w: float
    h: float
    score: float
    category: str
    frame_file: str = ""  # COCO: the image's file name; MOT: found by frame number
    time: int | None = None  # ns UTC, when the source says (COCO date_captured)


@dataclass
class CropsSummary:
    out: Path
    crops: int
    frames: int
    tracks: int
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _number(text: str, what: str, src: Path, line: int) -> float:
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"{what} {text.strip()[:40]!r} is not a number", src, line) from None
    if not math.isfinite(v):
        raise InputError(f"{what} {text.strip()!r} is not a finite number", src, line)
    return v


def read_mot(src: Path) -> list[Detection]:
    """MOT text (module doc); one :class:`InputError` naming the line for anything else."""
    out = []
    try:
        text = src.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", src) from None
    for line, s in enumerate(text.splitlines(), 1):
        if not s.strip() or s.lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in s.split(",")]
        if len(cells) < 6:
            raise InputError(f"expected frame,id,x,y,w,h[,score,...], found {len(cells)} field(s)", src, line)
        frame = _number(cells[0], "frame", src, line)
        if frame != int(frame) or frame < 1:
            raise InputError(f"frame {cells[0]!r} is not a frame number (1, 2, ...)", src, line)
        track = _number(cells[1], "id", src, line)
        x, y, w, h = (_number(c, n, src, line) for c, n in zip(cells[2:6], "xywh"))
        score = _number(cells[6], "score", src, line) if len(cells) > 6 and cells[6] else 1.0
        out.append(Detection(int(frame), "" if track < 0 else str(int(track)) if track == int(track) else cells[1],
                             x, y, w, h, score, "object"))
        if len(out) > MAX_DETECTIONS:
            raise InputError(f"more than {MAX_DETECTIONS:,} detections", src, line)
    return out


def read_coco(src: Path) -> tuple[list[Detection], dict[str, int]]:
    """COCO-style JSON (module doc): its detections of people and vehicles, and the counts of
    what was skipped (other categories)."""
    try:
        doc = json.loads(src.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a COCO JSON file ({exc})", src) from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations", "categories")):
        raise InputError("not a COCO JSON object (expected lists 'images', 'annotations' and 'categories')", src)
    cats = {}
    for c in doc["categories"]:
        if not isinstance(c, dict) or "id" not in c or not isinstance(c.get("name"), str):
            raise InputError(f"a category without an id and a name: {str(c)[:60]}", src)
        cats[c["id"]] = c["name"].strip().lower()
    images = {}
    for pos, im in enumerate(doc["images"], 1):
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            raise InputError(f"an image without an id and a file_name: {str(im)[:60]}", src)
        frame = im.get("frame_id", pos)
        if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
            raise InputError(f"image {im['file_name']!r}: frame_id {frame!r} is not a frame number", src)
        stamp = im.get("date_captured")
        try:
            t = parse_time(stamp) if isinstance(stamp, str) and stamp.strip() else None
        except OptionError as exc:
            raise InputError(f"image {im['file_name']!r}: date_captured: {exc}", src) from None
        images[im["id"]] = (im["file_name"], frame, t)
    out, skipped = [], {}
    for i, a in enumerate(doc["annotations"]):
        where = f"annotation {i}"
        if not isinstance(a, dict) or a.get("image_id") not in images:
            raise InputError(f"{where}: no image_id of the images list", src)
        box = a.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) and not isinstance(v, bool)
                                                                 and math.isfinite(v) for v in box)):
            raise InputError(f"{where}: bbox must be [x, y, w, h] in pixels, got {str(box)[:60]}", src)
        name = cats.get(a.get("category_id"))
        if name is None:
            raise InputError(f"{where}: category_id {a.get('category_id')!r} is not a listed category", src)
        if name not in CATEGORIES:
            skipped[f"category {name!r} (not a person or a vehicle)"] = skipped.get(f"category {name!r} (not a person or a vehicle)", 0) + 1
            continue
        score = a.get("score", 1.0)
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
            raise InputError(f"{where}: score {score!r} is not a number", src)
        track = a.get("track_id", a.get("instance_id"))
        file_name, frame, t = images[a["image_id"]]
        out.append(Detection(frame, "" if track is None or track == -1 else str(track), *map(float, box), float(score),
                             name, file_name, t))
        if len(out) > MAX_DETECTIONS:
            raise InputError(f"more than {MAX_DETECTIONS:,} detections", src)
    return out, skipped


def _frame_files(frames: Path) -> dict[int, Path]:
    """Frame number -> image: by numeric file stem when every image has one, else by name order from 1."""
    files = sorted(p for p in frames.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError("no frame images (.jpg, .png, ...) in this folder", frames)
    if all(p.stem.isdigit() for p in files):
        return {int(p.stem): p for p in files}
    return {i: p for i, p in enumerate(files, 1)}


def _timestamps(path: Path) -> dict[int, int]:
    """``frame,time`` lines (a header line is allowed) -> frame -> ns."""
    out = {}
    for line, row in enumerate(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))), 1):
        if not row or (line == 1 and not row[0].strip().isdigit()):
            continue
        if len(row) < 2 or not row[0].strip().isdigit():
            raise InputError("expected frame,time", path, line)
        try:
            out[int(row[0])] = parse_time(row[1])
        except OptionError as exc:
            raise InputError(str(exc), path, line) from None
    return out


def make_crops(frames: str | Path, detections: str | Path, out: str | Path, *, fmt: str | None = None,
               camera: str | None = None, fps: float | None = None, start: str | None = None,
               timestamps: str | Path | None = None, per_track: str = "all", min_score: float = 0.0,
               force: bool = False, progress: bool = False,
               on_progress: Callable[[int, int], None] | None = None) -> CropsSummary:
    """Cut the detections of ``detections`` out of the frames in ``frames`` into ``out`` (module doc)."""
    from attrret.data.layout import check_replaceable, discard, partial_folder
    from attrret.locks import LOCK_PREFIX, file_lock

    began = clock.perf_counter()
    frames, detections, out = Path(frames).absolute(), Path(detections).absolute(), Path(out).absolute()
    if not frames.is_dir():
        raise InputError("no such folder of frames", frames)
    if not detections.is_file():
        raise InputError("no such detections file", detections)
    if out == frames or frames.is_relative_to(out):
        raise InputError("the output folder holds the frames; name a new folder", out)
    fmt = fmt or ("coco" if detections.suffix.lower() == ".json" else "mot")
    if fmt not in FORMATS:
        raise OptionError(f"unknown detections format {fmt!r}; use {' or '.join(FORMATS)}")
    if per_track not in PER_TRACK:
        raise OptionError(f"--per-track {per_track!r}; use {' or '.join(PER_TRACK)}")
    if (fps is None) != (start is None):
        raise OptionError("--fps and --start go together: frame N is at start + (N - 1) / fps")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise OptionError(f"--fps must be a number > 0, got {fps}")
    t0 = parse_time(start, "--start") if start is not None else None
    stamps = _timestamps(Path(timestamps)) if timestamps is not None else {}
    camera = camera or frames.name
    if "/" in camera or "\\" in camera or not camera.strip():
        raise OptionError(f"--camera {camera!r}: a camera name has no '/'")
    skipped: dict[str, int] = {}
    if fmt == "coco":
        dets, skipped = read_coco(detections)
        by_name = {p.name: p for p in frames.iterdir()}
    else:
        dets = read_mot(detections)
        by_number = _frame_files(frames)
    dets = [d for d in dets if d.score >= min_score]
    if per_track == "best":
        best: dict[str, Detection] = {}
        rest = []
        for d in dets:
            if not d.track:
                rest.append(d)
            elif d.track not in best or (d.score, -d.frame) > (best[d.track].score, -best[d.track].frame):
                best[d.track] = d
        dets = sorted([*best.values(), *rest], key=lambda d: (d.frame, d.track))
    with file_lock(out.parent / f"{LOCK_PREFIX}crops-{out.name}.lock", waiting=f"waiting for another crops run into {out}"):
        check_replaceable(out, force, marker=MARKER, layout=_LAYOUT, what="crop set", empty_ok=True)
        tmp = partial_folder(out)
        try:
            return _write(tmp, out, frames, dets, skipped, camera, fps, t0, stamps, fmt, per_track, min_score,
                          by_name if fmt == "coco" else None, None if fmt == "coco" else by_number, progress,
                          on_progress, began, detections)
        except BaseException:
            discard(tmp)
            raise


def _write(tmp, out, frames, dets, skipped, camera, fps, t0, stamps, fmt, per_track, min_score, by_name, by_number,
           progress, on_progress, began, detections) -> CropsSummary:
    from PIL import Image

    from attrret.data.layout import job_progress, publish, seal

    images = tmp / "images"
    images.mkdir()
    rows = []
    counts = dict(skipped)

    def skip(reason: str) -> None:
        counts[reason] = counts.get(reason, 0) + 1

    order = sorted(range(len(dets)), key=lambda i: (dets[i].frame, dets[i].frame_file))
    with job_progress("cutting crops", len(order), progress, on_progress) as done:
        current, frame_image = None, None
        for n, i in enumerate(order, 1):
            d = dets[i]
            path = by_name.get(d.frame_file) if by_name is not None else by_number.get(d.frame)
            if path is None:
                skip("frame image not found")
                done(n)
                continue
            if path != current:
                try:
                    with Image.open(path) as im:
                        frame_image = im.convert("RGB")
                except (OSError, ValueError) as exc:
                    raise InputError(f"cannot decode the frame ({type(exc).__name__}: {exc})", path) from None
                current = path
            W, H = frame_image.size
            left, top = max(0, math.floor(d.x)), max(0, math.floor(d.y))
            right, bottom = min(W, math.ceil(d.x + d.w)), min(H, math.ceil(d.y + d.h))
            if right - left < 2 or bottom - top < 2:
                skip("box outside the frame or under 2 pixels")
                done(n)
                continue
            name = f"{camera}_{d.frame:06d}_{d.track or f'd{i}'}.jpg"
            frame_image.crop((left, top, right, bottom)).save(images / name, quality=95)
            t = d.time if d.time is not None else stamps.get(d.frame)
            if t is None and t0 is not None:
                t = t0 + round((d.frame - 1) / fps * 1e9)
            rows.append({"image": name, "camera": camera, "time": format_time(t) if t is not None else "",
                         "track": d.track, "frame": d.frame, "x": f"{d.x:g}", "y": f"{d.y:g}", "w": f"{d.w:g}",
                         "h": f"{d.h:g}", "score": f"{d.score:g}", "category": d.category})
            done(n)
    if not rows:
        raise InputError("no crops: every detection was skipped (" + ", ".join(f"{v} x {k}" for k, v in counts.items()) + ")",
                         detections)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (tmp / META).write_text(buf.getvalue(), encoding="utf-8")
    seconds = clock.perf_counter() - began
    seal(tmp, MARKER, {"format": fmt, "frames": str(frames), "detections": str(detections), "camera": camera,
                       "per_track": per_track, "min_score": min_score, "crops": len(rows), "skipped": counts})
    publish(tmp, out, marker=MARKER, layout=_LAYOUT, what="crop set")
    return CropsSummary(out, len(rows), len({r["frame"] for r in rows}), len({r["track"] for r in rows if r["track"]}),
                        counts, seconds)
