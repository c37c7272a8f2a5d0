import base64
import io
from pathlib import Path

from PIL import Image

from attrret.report.thumbs import THUMB_HEIGHT, THUMB_MAX_WIDTH, ThumbnailTable, thumbnail_data_uri


def decode(uri: str) -> Image.Image:
    head, _, data = uri.partition(",")
    assert head == "data:image/jpeg;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_tall_and_wide_crops_fit_the_box_keeping_their_aspect(tmp_path: Path):
    Image.new("RGB", (100, 400), (200, 0, 0)).save(tmp_path / "tall.jpg")
    Image.new("RGB", (900, 300), (0, 0, 200)).save(tmp_path / "wide.png")
    tall = decode(thumbnail_data_uri(tmp_path / "tall.jpg"))
    wide = decode(thumbnail_data_uri(tmp_path / "wide.png"))
    assert tall.format == "JPEG" and tall.size == (18, THUMB_HEIGHT)
    assert wide.size == (THUMB_MAX_WIDTH, round(300 * THUMB_MAX_WIDTH / 900))
    r, g, b = tall.convert("RGB").getpixel((9, 36))
    assert r > 150 and g < 60 and b < 60


def test_small_images_are_not_upscaled(tmp_path: Path):
    Image.new("RGB", (20, 30)).save(tmp_path / "s.jpg")
    assert decode(thumbnail_data_uri(tmp_path / "s.jpg")).size == (20, 30)


def test_table_stores_each_image_once_and_records_missing_ones(tmp_path: Path):
    Image.new("RGB", (40, 80)).save(tmp_path / "a.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path.parent / "outside.jpg").write_bytes((tmp_path / "a.jpg").read_bytes())
    table = ThumbnailTable(tmp_path)
    ids = [table.id(n) for n in ["a.jpg", "gone.jpg", "a.jpg", "broken.jpg", "../outside.jpg", "gone.jpg"]]
    assert ids == [0, 1, 0, 2, 3, 1]
    assert table.names == ["a.jpg", "gone.jpg", "broken.jpg", "../outside.jpg"]
    assert table.uris[0] is not None and table.uris[1:] == [None, None, None]
    assert table.missing == ["gone.jpg", "broken.jpg", "../outside.jpg"]


def test_no_folder_means_no_thumbnails():
    table = ThumbnailTable(None)
    assert table.id("x.jpg") == 0 and table.uris == [None] and table.missing == ["x.jpg"]
