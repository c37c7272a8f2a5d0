"""Image metadata in the index: predict --meta, folder cameras, EXIF times, incremental runs,
shards and merge, staleness, and the time rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from attrret.errors import InputError, OptionError
from attrret.retrieval.index import open_index
from attrret.retrieval.meta import NO_TIME, format_time, parse_time, read_meta_file
from tests.retrieval.conftest import cli


def gallery_names(data: Path) -> list[str]:
    return sorted(p.name for p in (data / "test" / "test_images").iterdir())


def write_meta(path: Path, names: list[str], hour: int = 8) -> Path:
    lines = ["image,camera,time,track"] + [f"{n},{i % 3},2026-12-01T{hour:02d}:{i:02d}:00,{i // 4}" for i, n in enumerate(names)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("text, iso", [
    ("2026-12-01T08:15:00", "2026-12-01T08:15:00Z"),  # naive: UTC
    ("2026-12-01 08:15", "2026-12-01T08:15:00Z"),
    ("2026-12-01T09:15:00+01:00", "2026-12-01T08:15:00Z"),  # a zone: converted
    ("2026-12-01T08:15:00.25Z", "2026-12-01T08:15:00.25Z"),
    ("2026-12-01", "2026-12-01T00:00:00Z"),
])
def test_the_time_rule(text: str, iso: str) -> None:
    assert format_time(parse_time(text)) == iso


@pytest.mark.parametrize("bad", ["yesterday", "", "2026-13-01", "08:00"])
def test_a_time_that_is_not_iso_8601_is_refused(bad: str) -> None:
    with pytest.raises(OptionError, match="ISO 8601"):
        parse_time(bad)


@pytest.mark.parametrize("text, says", [
    ("camera,time\n3,2026-12-01\n", "no 'image' column"),
    ("image,time\na.jpg,soon\n", "a.jpg" and ":2: time 'soon' is not an ISO 8601 time"),
    ("image,camera\na.jpg,1\na.jpg,2\n", ":3: image 'a.jpg' is described twice"),
    ("image,camera,camera\na.jpg,1,2\n", "column 'camera' appears twice"),
    ('{"image": "a.jpg", "camera": [1]}\n', "a list is not a metadata value"),
    ('{"image": "a.jpg"}\n[1]\n', ":2: a JSON list, not an object"),
])
def test_bad_metadata_tables_are_one_error_naming_the_line(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / ("m.jsonl" if text.startswith("{") else "m.csv")
    path.write_text(text)
    with pytest.raises(InputError, match=None) as err:
        read_meta_file(path)
    assert says in str(err.value) and str(path) in str(err.value)


def test_meta_is_stored_updated_without_predicting_and_checked_for_staleness(trained, tmp_path: Path) -> None:
    data, work = trained
    names = gallery_names(data)
    meta = write_meta(tmp_path / "meta.csv", names)
    out = tmp_path / "index"
    proc = cli("predict", "--images", str(data), "--workdir", str(work), "-o", str(out), "--meta", str(meta), "--quiet")
    assert f"({len(names)} predicted" in proc.stdout
    index = open_index(out)
    assert index.meta.record(index.names.index(names[5])) == {"camera": "2", "track": "1", "time": "2026-12-01T08:05:00Z"}
    # the table changes: rank refuses the stale metadata; predict takes the new one and predicts nothing
    write_meta(meta, names, hour=9)
    q = tmp_path / "q.txt"
    q.write_text("a man\n")
    stale = cli("rank", "--queries", str(q), "-o", str(tmp_path / "s.json"), "--index", str(out), check=False)
    assert stale.returncode == 1 and "stale metadata" in stale.stderr
    proc = cli("predict", "--images", str(data), "--workdir", str(work), "-o", str(out), "--meta", str(meta), "--quiet")
    assert "(0 predicted" in proc.stdout
    index = open_index(out)
    assert index.meta.record(index.names.index(names[5]))["time"] == "2026-12-01T09:05:00Z"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("meta-")) == [index.header.meta_file]
    # a run without --meta keeps it
    cli("predict", "--images", str(data), "--workdir", str(work), "-o", str(out), "--quiet")
    assert open_index(out).meta.record(0) == index.meta.record(0)
    # filters over the CLI
    proc = cli("search", "a man", "--index", str(out), "--camera", "1", "--after", "2026-12-01T09:00", "--json", "-k", "50")
    hits = json.loads(proc.stdout)["results"]
    assert hits and all(h["meta"]["camera"] == "1" for h in hits)


def test_shards_carry_the_metadata_and_merge_byte_identically(trained, tmp_path: Path) -> None:
    data, work = trained
    meta = write_meta(tmp_path / "meta.csv", gallery_names(data))
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    cli("predict", "--images", str(data), "--workdir", str(work), "-o", str(single), "--meta", str(meta), "--quiet")
    for i in range(2):
        cli("predict", "--images", str(data), "--workdir", str(work), "-o", str(sharded), "--meta", str(meta),
            "--shard", f"{i}/2", "--quiet")
    cli("index", "merge", "-o", str(sharded))
    a, b = open_index(single), open_index(sharded)
    assert a.header.meta_file == b.header.meta_file
    assert (single / a.header.meta_file).read_bytes() == (sharded / b.header.meta_file).read_bytes()


def test_camera_from_folder_and_time_from_exif(trained, tmp_path: Path) -> None:
    data, work = trained
    gallery = tmp_path / "gallery"
    for i, src in enumerate(sorted((data / "test" / "test_images").iterdir())[:6]):
        cam = gallery / f"cam{i % 2}"
        cam.mkdir(parents=True, exist_ok=True)
        im = Image.open(src).convert("RGB")
        exif = Image.Exif()
        if i < 4:
            exif.get_ifd(0x8769)[36867] = f"2026:12:01 08:0{i}:00"  # DateTimeOriginal
            if i == 3:
                exif.get_ifd(0x8769)[36881] = "+02:00"  # OffsetTimeOriginal
        im.save(cam / src.name, exif=exif)
    out = tmp_path / "index"
    cli("predict", "--images", str(gallery), "--workdir", str(work), "-o", str(out), "--camera-from-folder",
        "--time-from-exif", "--quiet")
    index = open_index(out)
    records = [index.meta.record(r) for r in range(len(index))]
    assert {r["camera"] for r in records} == {"cam0", "cam1"}
    times = sorted(r["time"] for r in records if r["time"])
    assert times == ["2026-12-01T06:03:00Z", "2026-12-01T08:00:00Z", "2026-12-01T08:01:00Z", "2026-12-01T08:02:00Z"]
    assert sum(int(index.meta.time[r] == NO_TIME) for r in range(len(index))) == 2
