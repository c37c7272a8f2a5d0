"""Bad and unusual images through ``attrret predict`` and ``attrret train``.

Odd but valid modes (grayscale, CMYK, alpha, 16-bit) are converted to 8-bit RGB and work;
undecodable files stop the run with one error naming the image and write nothing; an image
over :data:`attrret.data.images.MAX_PIXELS` is refused from its header, before decoding.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from .conftest import TINY_TRAIN, VEH, attrret, broken_images, error_line, huge_png, leftovers, make_folder, odd_images


def test_odd_modes_predict_like_rgb(tiny, tmp_path):
    _, work, _ = tiny
    odd = odd_images(tmp_path / "gallery")
    proc = attrret("predict", "--images", tmp_path / "gallery", "--workdir", work, "-o", tmp_path / "idx", "--quiet")
    assert proc.returncode == 0, proc.stderr
    from attrret.retrieval.index import open_index

    idx = open_index(tmp_path / "idx")
    assert sorted(idx.names) == sorted(p.name for p in odd.values())
    for task in ("router", "pedestrian.gender"):
        p = np.asarray(idx.task_probs(task))
        assert np.isfinite(p).all() and np.allclose(p.sum(axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("case", ["zero-byte", "truncated JPEG", "not an image"])
def test_undecodable_image_stops_predict_and_writes_nothing(tiny, tmp_path, case):
    _, work, _ = tiny
    gallery = tmp_path / "gallery"
    make_folder(gallery, n_ped=2, n_veh=0)
    bad = broken_images(gallery / "images", case)[case]
    out = tmp_path / "idx"
    proc = attrret("predict", "--images", gallery / "images", "--workdir", work, "-o", out, "--quiet")
    error_line(proc, f"{bad}: cannot decode image")
    assert not (out / "header.json").exists() and leftovers(tmp_path) == []


def test_missing_image_in_a_list_file_names_the_line(tiny, tmp_path):
    _, work, _ = tiny
    make_folder(tmp_path / "g", n_ped=1, n_veh=0)
    listing = tmp_path / "gallery.txt"
    listing.write_text("g/images/000001.jpg\ng/images/nope.jpg\n")
    proc = attrret("predict", "--images", listing, "--workdir", work, "-o", tmp_path / "idx", "--quiet")
    error_line(proc, f"{listing}:2: image 'g/images/nope.jpg' not found")
    assert not (tmp_path / "idx").exists()


def test_huge_image_is_refused_by_predict(tiny, tmp_path):
    _, work, _ = tiny
    (tmp_path / "gallery").mkdir()
    big = huge_png(tmp_path / "gallery" / "huge.png")
    proc = attrret("predict", "--images", tmp_path / "gallery", "--workdir", work, "-o", tmp_path / "idx", "--quiet")
    error_line(proc, f"{big}: image is larger than the 40,000,000 pixel limit")
    assert "DecompressionBomb" not in proc.stderr and not (tmp_path / "idx").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="address-space limit via resource.setrlimit")
def test_huge_image_is_refused_without_decoding_it(tmp_path):
    """Under a 512 MiB address-space limit (the 20000 x 20000 image needs 400 MB as greyscale,
    1.2 GB as RGB), loading fails with the pixel-limit message, not a MemoryError. A 10000 x
    10000 image (under Pillow's own bomb limit) gets the same treatment and no Pillow warning."""
    big = huge_png(tmp_path / "huge.png")
    mid = huge_png(tmp_path / "mid.png", side=10000)
    code = textwrap.dedent(f"""
        import resource, warnings
        resource.setrlimit(resource.RLIMIT_AS, (512 * 2**20, 512 * 2**20))
        warnings.simplefilter("error")
        from attrret.data.images import load_image
        from attrret.errors import InputError
        for p in ({str(big)!r}, {str(mid)!r}):
            try:
                load_image(p)
            except InputError as exc:
                print(exc)
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{big}: image is larger than the 40,000,000 pixel limit (Image size (400000000 pixels)")
    assert lines[1] == f"{mid}: image is 10000x10000, larger than the 40,000,000 pixel limit"


def _train_folder(tmp_path, case):
    data = make_folder(tmp_path / "data", n_ped=6, n_veh=2)
    bad = broken_images(data / "images", case)[case]
    with open(data / "labels.txt", "a") as f:
        f.write(f"{bad.name}$white Audi.${VEH}\n")
    return data, bad


def test_undecodable_image_stops_train_and_writes_no_model(tmp_path):
    data, bad = _train_folder(tmp_path, "truncated JPEG")
    work = tmp_path / "w"
    proc = attrret("train", "--task", "router", "--data", data, "--workdir", work, "--epochs", "1", *TINY_TRAIN)
    error_line(proc, f"{bad}: cannot decode image")
    assert not (work / "models").exists() and leftovers(work) == []


def test_skip_bad_also_skips_undecodable_images_in_train(tmp_path):
    data, bad = _train_folder(tmp_path, "zero-byte")
    work = tmp_path / "w"
    proc = attrret("train", "--task", "router", "--data", data, "--workdir", work, "--epochs", "1", "--skip-bad", *TINY_TRAIN)
    assert proc.returncode == 0, proc.stderr
    assert f"{bad}" in proc.stderr and "warning" in proc.stderr
    assert "cannot decode image" in proc.stderr and "labels.txt:" in proc.stderr  # names the label line
    assert (work / "models" / "router" / "model.pt").is_file()
