"""``attrret data crops`` end to end: frames + MOT or COCO detections -> crops and meta.csv ->
predict --meta -> filtered search over the CLI and over HTTP (a real server process)."""

from __future__ import annotations

import csv
import json
import urllib.parse
from pathlib import Path

import pytest
from PIL import Image

from attrret.data.crops import make_crops
from attrret.errors import InputError
from tests.retrieval.conftest import cli, trained  # noqa: F401 - trained: the session fixture of trained models
from tests.serve.conftest import get, start_server, stop_server

#: Per frame, the boxes pasted into it: (track, x, y) of a 24 x 48 crop.
BOXES = {1: [(1, 10, 10), (2, 100, 20)], 2: [(1, 14, 12), (2, 104, 22)], 3: [(1, 18, 14), (3, 150, 30)]}


def make_frames(root: Path, source: Path) -> list[Path]:
    """Three 200 x 100 frames with synthetic crops pasted at the BOXES."""
    crops = sorted((source / "test" / "test_images").iterdir())
    root.mkdir(parents=True)
    out = []
    for frame, boxes in BOXES.items():
        canvas = Image.new("RGB", (200, 100), (90, 90, 90))
        for track, x, y in boxes:
            canvas.paste(Image.open(crops[track]).convert("RGB").resize((24, 48)), (x, y))
        out.append(root / f"{frame:06d}.jpg")
        canvas.save(out[-1])
    return out


def mot_lines() -> str:
    lines = [f"{f},{t},{x},{y},24,48,{0.5 + 0.1 * f}" for f, boxes in BOXES.items() for t, x, y in boxes]
    return "\n".join(lines + ["3,-1,199,99,40,40,0.9"]) + "\n"  # a box mostly outside the frame


def coco_doc() -> dict:
    images = [{"id": 10 + f, "file_name": f"{f:06d}.jpg", "frame_id": f, "date_captured": f"2026-12-01T08:00:0{f}"}
              for f in BOXES]
    anns = [{"image_id": 10 + f, "bbox": [x, y, 24, 48], "category_id": 1 if t != 2 else 3, "score": 0.9, "track_id": t}
            for f, boxes in BOXES.items() for t, x, y in boxes]
    anns.append({"image_id": 11, "bbox": [0, 0, 20, 20], "category_id": 18, "score": 0.99})  # a dog: skipped
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]}


def frames_and_detections(root: Path, data: Path, text: str, name: str = "det.txt",
                          folder: str = "frames") -> tuple[Path, Path]:
    """``root/folder`` of frames (:func:`make_frames`) and ``root/name`` holding ``text``."""
    frames = root / folder
    make_frames(frames, data)
    det = root / name
    det.write_text(text)
    return frames, det


def read_meta(out: Path) -> list[dict]:
    with open(out / "meta.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_mot_crops_with_times_from_fps(trained, tmp_path: Path) -> None:
    data, _ = trained
    frames, det = frames_and_detections(tmp_path, data, mot_lines(), folder="cam3")
    s = make_crops(frames, det, tmp_path / "crops", fps=2, start="2026-12-01T08:00:00+01:00")
    rows = read_meta(tmp_path / "crops")
    assert s.crops == 6 and s.skipped == {"box outside the frame or under 2 pixels": 1}
    assert rows[0] == {"image": "cam3_000001_1.jpg", "camera": "cam3", "time": "2026-12-01T07:00:00Z", "track": "1",
                       "frame": "1", "x": "10", "y": "10", "w": "24", "h": "48", "score": "0.6", "category": "object"}
    assert rows[-1]["time"] == "2026-12-01T07:00:01Z"  # frame 3 at 2 fps
    assert Image.open(tmp_path / "crops" / "images" / "cam3_000002_2.jpg").size == (24, 48)
    best = make_crops(frames, det, tmp_path / "best", per_track="best")
    assert sorted((r["track"], r["frame"]) for r in read_meta(tmp_path / "best")) == [("1", "3"), ("2", "2"), ("3", "3")]
    assert best.tracks == 3


def test_coco_crops_skip_other_categories_and_take_image_times(trained, tmp_path: Path) -> None:
    data, _ = trained
    frames, det = frames_and_detections(tmp_path, data, json.dumps(coco_doc()), "det.json")
    s = make_crops(frames, det, tmp_path / "crops", camera="gate")
    rows = read_meta(tmp_path / "crops")
    assert s.crops == 6 and s.skipped == {"category 'dog' (not a person or a vehicle)": 1}
    assert {r["category"] for r in rows} == {"person", "car"}
    assert {r["time"] for r in rows} == {"2026-12-01T08:00:01Z", "2026-12-01T08:00:02Z", "2026-12-01T08:00:03Z"}


def test_crops_never_replace_a_users_folder(trained, tmp_path: Path) -> None:
    data, _ = trained
    frames, det = frames_and_detections(tmp_path, data, mot_lines())
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="exists and is not empty"):
        make_crops(frames, det, mine)
    with pytest.raises(InputError, match="not a crop set attrret made"):
        make_crops(frames, det, mine, force=True)
    assert (mine / "notes.txt").read_text() == "keep" and not list(tmp_path.glob(".*partial"))
    make_crops(frames, det, tmp_path / "crops")
    (tmp_path / "crops" / "images" / "added.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match="did not write"):
        make_crops(frames, det, tmp_path / "crops", force=True)


@pytest.mark.parametrize("text, says", [
    ("1,2,3\n", ":1: expected frame,id,x,y,w,h"),
    ("0,1,1,1,5,5\n", ":1: frame '0' is not a frame number"),
    ("1,1,nan,1,5,5\n", ":1: x 'nan' is not a finite number"),
])
def test_bad_mot_lines_are_one_error_naming_the_line(trained, tmp_path: Path, text: str, says: str) -> None:
    frames, det = frames_and_detections(tmp_path, trained[0], text)
    with pytest.raises(InputError) as err:
        make_crops(frames, det, tmp_path / "out")
    assert says in str(err.value) and not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", ["mot", "coco"])
def test_detections_to_filtered_search_over_the_cli_and_http(trained, tmp_path: Path, fmt: str) -> None:
    data, work = trained
    frames, det = frames_and_detections(tmp_path, data, mot_lines() if fmt == "mot" else json.dumps(coco_doc()),
                                        "det.txt" if fmt == "mot" else "det.json", folder="cam7")
    crops = tmp_path / "crops"
    extra = ["--fps", "1", "--start", "2026-12-01T08:00:00"] if fmt == "mot" else []
    cli("data", "crops", "--frames", str(frames), "--detections", str(det), "--out", str(crops), *extra)
    index = tmp_path / "index"
    cli("predict", "--images", str(crops / "images"), "--workdir", str(work), "-o", str(index),
        "--meta", str(crops / "meta.csv"), "--quiet")
    after, before = ("2026-12-01T08:00:01", "2026-12-01T08:00:02") if fmt == "mot" else ("2026-12-01T08:00:02", "2026-12-01T08:00:03")
    # the tiny random models may call a crop either kind: one query of each, so one has results
    proc = cli("search", "a man", "a red car", "--index", str(index), "--after", after, "--before", before,
               "--where", "track=1,2", "--json", "-k", "10")
    results = [json.loads(line)["results"] for line in proc.stdout.splitlines()]
    assert sum(map(len, results)) == 3  # frames 2 and 3 are in the time range: tracks 1 and 2, then track 1
    assert all(h["meta"]["track"] in ("1", "2") and after <= h["meta"]["time"][:19] <= before for r in results for h in r)
    server = start_server(index, tmp_path / "serve.log")
    try:
        served = []
        for text in ("a man", "a red car"):
            query = urllib.parse.urlencode({"q": text, "camera": "cam7", "after": after, "before": before, "where": "track=1,2"})
            status, _, body = get(server.url + "api/search?" + query)
            assert status == 200
            served.append(json.loads(body)["results"])
        assert [[h["image"] for h in r] for r in served] == [[h["image"] for h in r] for r in results]
        served = next(r for r in served if r)
        status, _, body = get(server.url + "api/search?" + urllib.parse.urlencode({"q": "a man", "after": "soon"}))
        assert status == 422 and "ISO 8601" in json.loads(body)["detail"]
        status, _, body = get(server.url + "api/search?" + urllib.parse.urlencode({"q": "a man", "where": "colour=red"}))
        assert status == 422 and "no metadata column 'colour'" in json.loads(body)["detail"]
        first = served[0]["image"]
        status, _, body = get(server.url + "api/similar?" + urllib.parse.urlencode({"image": first, "k": 3}))
        assert status == 200 and json.loads(body)["results"][0]["image"] == first
        status, _, _ = get(server.url + "api/similar?" + urllib.parse.urlencode({"image": "/etc/passwd"}))
        assert status == 404
        status, _, body = get(server.url + "api/search?" + urllib.parse.urlencode({"q": "a man", "group_by": "track"}))
        tracks = [h["meta"]["track"] for h in json.loads(body)["results"]]
        assert status == 200 and len(tracks) == len(set(tracks))
    finally:
        assert stop_server(server) == 0
