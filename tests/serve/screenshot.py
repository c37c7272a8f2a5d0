"""Screenshot the search page of a real ``attrret serve`` (how docs/serve_screenshot.png is made).

    .venv/bin/python -m tests.serve.screenshot docs/serve_screenshot.png [--query Q] [--k 18]
    .venv/bin/python -m tests.serve.screenshot docs/serve_filters.png --camera 1,2 \\
        --after 2026-12-01T08:05 --before 2026-12-01T08:40 --group-by track

Builds a small gallery of drawn pedestrians and vehicles whose pictures show their attributes
(hair and skirt, hat, glasses, backpack / shoulder bag / handbag, shirt colour; body colour,
shape and brand plate), writes an index whose probabilities mostly agree with the pictures
(a few confident mistakes, so conflicts show), starts ``python -m attrret serve`` on a free
port, types the query into the box, waits for the chips, presses Enter, waits until every
thumbnail decoded, and captures the viewport.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tests.report.cdp import Browser, chromium_path
from tests.serve.conftest import start_server, stop_server

QUERY = "a woman carrying a handbag, no backpack, not wearing glasses, with an umbrella"
SHIRTS = {"red": (196, 40, 40), "blue": (50, 90, 190), "green": (40, 150, 80), "yellow": (230, 190, 40),
          "white": (235, 235, 235), "black": (40, 40, 45), "orange": (240, 130, 30), "purple": (120, 60, 150)}
CAR = {"black": (30, 30, 35), "blue": (40, 80, 190), "brown": (120, 75, 40), "green": (40, 140, 70), "grey": (128, 128, 132),
       "orange": (240, 130, 30), "pink": (235, 140, 170), "purple": (120, 60, 150), "red": (200, 30, 35),
       "white": (238, 238, 238), "yellow": (235, 200, 40)}


def draw_pedestrian(v: dict, shirt: tuple[int, int, int], rng: np.random.Generator) -> Image.Image:
    w, h = 96, 240
    bg = tuple(int(x) for x in rng.integers(140, 175, 3))
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    skin = (230, 190, 160)
    hair = (60, 40, 30)
    female = v["gender"] == "female"
    if female:
        d.rectangle((32, 14, 64, 70), fill=hair)  # long hair behind the head
    d.ellipse((34, 12, 62, 42), fill=skin)
    if not female:
        d.chord((34, 10, 62, 30), 180, 360, fill=hair)
    if v["hat"] == "yes":
        d.rectangle((30, 8, 66, 16), fill=(30, 30, 60))
        d.rectangle((36, 0, 60, 10), fill=(30, 30, 60))
    if v["glasses"] == "yes":
        d.rectangle((37, 24, 47, 29), outline=(10, 10, 10), width=2)
        d.rectangle((49, 24, 59, 29), outline=(10, 10, 10), width=2)
    if v["bag"] == "backpack":
        d.rounded_rectangle((56, 50, 82, 110), 6, fill=(70, 50, 30))
    d.rectangle((26, 46, 70, 128), fill=shirt)  # torso
    sleeve = 128 if v["sleeve"] == "long" else 72
    for x0 in (14, 70):
        d.rectangle((x0, 48, x0 + 12, sleeve), fill=shirt)
        d.rectangle((x0, sleeve, x0 + 12, 132), fill=skin)
    if v["bag"] == "shoulder":
        d.line((30, 48, 70, 118), fill=(90, 60, 30), width=3)
        d.rectangle((62, 110, 84, 134), fill=(90, 60, 30))
    if v["handbag"] == "yes":
        d.rectangle((6, 126, 26, 146), fill=(150, 30, 80))
        d.arc((8, 116, 24, 132), 180, 360, fill=(150, 30, 80), width=2)
    if v["skirt"] == "yes":
        d.polygon([(26, 128), (70, 128), (80, 176), (16, 176)], fill=(90, 40, 110))
        for x0 in (32, 54):
            d.rectangle((x0, 176, x0 + 10, 226), fill=skin)
    else:
        for x0 in (28, 50):
            d.rectangle((x0, 128, x0 + 18, 226), fill=(45, 45, 70))
    for x0 in (26, 50):
        d.rectangle((x0, 226, x0 + 20, 234), fill=(20, 20, 20))
    return im


def draw_vehicle(v: dict) -> Image.Image:
    w, h = 240, 140
    im = Image.new("RGB", (w, h), (105, 108, 112))
    d = ImageDraw.Draw(im)
    body = CAR[v["color"]]
    dark = tuple(c // 2 for c in body)
    glass = (150, 190, 215)
    t = v["type"]
    if t == "Bus":
        d.rounded_rectangle((10, 20, 230, 112), 8, fill=body)
        for x in range(20, 220, 30):
            d.rectangle((x, 30, x + 22, 58), fill=glass)
    elif t == "Truck":
        d.rectangle((10, 24, 160, 108), fill=dark)
        d.rounded_rectangle((162, 40, 230, 108), 6, fill=body)
        d.rectangle((190, 48, 224, 72), fill=glass)
    elif t in ("Microbus", "Minivan"):
        d.rounded_rectangle((16, 34, 224, 108), 14, fill=body)
        d.rectangle((36, 42, 200, 68), fill=glass)
    else:  # SUV (tall) or Sedan (low)
        top = 30 if t == "SUV" else 46
        d.rounded_rectangle((14, top + 28, 226, 108), 10, fill=body)
        d.polygon([(60, top + 30), (80, top), (170, top), (195, top + 30)], fill=body)
        d.polygon([(72, top + 28), (86, top + 6), (164, top + 6), (182, top + 28)], fill=glass)
    for x in (60, 180):
        d.ellipse((x - 17, 94, x + 17, 128), fill=(20, 20, 20))
        d.ellipse((x - 7, 104, x + 7, 118), fill=(150, 150, 150))
    d.rectangle((96, 84, 144, 98), fill=(245, 245, 230))
    d.text((100, 85), v["brand"][:7], fill=(20, 20, 20))
    return im


def make_gallery(root: Path, n_ped: int = 40, n_veh: int = 16, seed: int = 3) -> Path:
    """Draw the gallery and write its index (module doc); returns the index folder."""
    from attrret.retrieval.index import IndexHeader, write_index
    from attrret.retrieval.meta import ImageMeta, parse_time
    from attrret.retrieval.indexer import task_columns
    from attrret.schema import load_schema

    schema = load_schema()
    rng = np.random.default_rng(seed)
    columns = task_columns(None, schema)
    at = max(stop for _, stop in columns.values())
    gallery = root / "gallery"
    gallery.mkdir(parents=True)
    names, rows, files = [], [], []
    brands = ["Toyota", "Honda", "Geely", "BMW", "Audi", "Volkswagen", "Buick", "Hyundai", "Nissan", "Ford"]
    for i in range(n_ped + n_veh):
        kind = "pedestrian" if i < n_ped else "vehicle"
        subject = schema.subject(kind)
        values = {g.name: g.classes[int(rng.integers(g.size))] for g in subject.groups}
        if kind == "pedestrian":
            if values["gender"] == "male":
                values["skirt"] = "no"
            if i % 4 == 0:  # enough women with a handbag and no backpack to fill the first rows
                values.update(gender="female", handbag="yes", glasses="no", bag=("none", "shoulder")[i % 8 // 4])
            shirt_name = "red" if i % 3 == 0 else list(SHIRTS)[int(rng.integers(len(SHIRTS)))]
            im = draw_pedestrian(values, SHIRTS[shirt_name], rng)
            name = f"ped_{i + 1:04d}.jpg"
        else:
            values["brand"] = brands[int(rng.integers(len(brands)))]
            values["color"] = list(CAR)[int(rng.integers(len(CAR)))]
            im = draw_vehicle(values)
            name = f"vehicles/veh_{i + 1:04d}.jpg"
        path = gallery / name
        path.parent.mkdir(parents=True, exist_ok=True)
        im.save(path, quality=90)
        row = np.zeros(at, np.float32)
        for g in schema.tasks:
            a, b = columns[g.task]
            if g.task == schema.router.task:
                truth = list(g.classes).index(kind)
            elif g.task.startswith(kind + "."):
                truth = list(g.classes).index(values[g.task.split(".", 1)[1]])
            else:
                truth = None
            x = rng.gamma(0.6, size=g.size)
            x = x / x.sum()
            if truth is not None:
                wrong = rng.random() < 0.12  # a confident mistake now and then: conflicts show
                hot = int(rng.integers(g.size)) if wrong else truth
                p = rng.uniform(0.55, 0.97)
                x = x * (1 - p)
                x[hot] += p
            row[a:b] = x
        st = path.stat()
        names.append(name)
        rows.append(row)
        files.append({"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    header = IndexHeader(schema=schema.fingerprint, count=len(names), columns=columns, models=(), img_sizes=(224,),
                         tta="flip", weights=(1.0,), source=str(gallery))
    index = root / "index"
    t0 = parse_time("2026-12-01T08:00:00")  # camera 1-4, a few seconds apart, three crops per track
    meta = [{"camera": str(1 + i % 4), "time": t0 + int(i * 37e9), "track": str(i // 3)} for i in range(len(names))]
    write_index(index, np.stack(rows), names, files, header, meta=ImageMeta.from_rows(meta))
    return index


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--query", default=QUERY)
    ap.add_argument("--k", type=int, default=18)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1000)
    ap.add_argument("--camera", default="", help="the Cameras filter, e.g. 1,2")
    ap.add_argument("--after", default="", help="the After filter, e.g. 2026-12-01T08:00")
    ap.add_argument("--before", default="", help="the Before filter")
    ap.add_argument("--group-by", default="", help="the One per select, e.g. track")
    args = ap.parse_args(argv)
    binary = chromium_path()
    if binary is None:
        print("chromium not installed", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="attrret-shot-") as tmp:
        index = make_gallery(Path(tmp))
        server = start_server(index, Path(tmp) / "serve.stderr")
        try:
            with Browser(binary, width=args.width, height=args.height) as b:
                b.navigate(server.url)
                b.wait_for("document.getElementById('health').textContent.endsWith('images')")
                b.evaluate(f"document.getElementById('k').value = '{args.k}'")
                for field, value in (("camera", args.camera), ("after", args.after), ("before", args.before),
                                     ("group", args.group_by)):
                    if value:
                        b.evaluate(f"document.getElementById('{field}').value = {json.dumps(value)}")
                b.insert_text("#q", args.query)
                b.wait_for("document.querySelectorAll('#chips .chip').length > 1")
                b.press_key("Enter")
                b.wait_for("(() => { const imgs = Array.from(document.querySelectorAll('#results img')); "
                           "return document.getElementById('status').dataset.state === 'done' && imgs.length > 0 && "
                           "imgs.every(i => i.complete && i.naturalWidth > 0); })()")
                b.evaluate("document.activeElement.blur()")
                b.screenshot(args.out)
                print(b.evaluate("document.getElementById('status').textContent"))
        finally:
            stop_server(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
