"""One reader for every labelled image folder attrret accepts.

- a Track-2 folder: ``train/train_label.txt`` + ``train/train_images/``, ``val/...``,
  and (synthetic sets) ``test/test_label.txt`` + ``test/test_images/``;
- a ``labels.txt`` + ``images/`` pair (like ``pa100k-mini``);
- a label file given directly (images in ``images/`` beside it, or beside the file).

Each record keeps the label file and line it came from, so a later error on the image
(missing, corrupt) can name both, and names and labels can never drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from attrret.data.images import load_image
from attrret.data.track2 import read_label_file
from attrret.errors import InputError
from attrret.schema import Schema, load_schema

__all__ = ["Record", "SPLITS", "find_label_files", "load_records"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Record:
    """A labelled image. ``values`` holds the known groups only; unknown groups are absent."""

    path: Path
    image: str
    kind: str
    values: dict[str, str]
    caption: str
    label_file: Path
    line: int

    @property
    def where(self) -> str:
        return f"{self.label_file}:{self.line}"


def find_label_files(root: str | Path, split: str = "train") -> list[tuple[Path, Path]]:
    """Return ``[(label_file, image_dir), ...]`` for ``split`` (``train``, ``val``, ``test``, ``all``).

    ``root`` is a Track-2 folder (``<split>/<split>_label.txt`` + ``<split>_images/``), a
    ``labels.txt`` + ``images/`` folder, or one label file: a Track-2 ``<split>_label.txt``
    reads its images from ``<split>_images/`` beside it, any other from ``images/`` beside
    it, else from its own folder.
    """
    root = Path(root)
    if root.is_file():
        t2 = root.parent / (root.stem.removesuffix("_label") + "_images")
        images = root.parent / "images"
        if root.stem.endswith("_label") and t2.is_dir():
            return [(root, t2)]
        return [(root, images if images.is_dir() else root.parent)]
    if not root.is_dir():
        raise InputError("no such file or directory", root)
    if (root / "labels.txt").is_file():
        return [(root / "labels.txt", root / "images")]
    wanted = SPLITS if split == "all" else (split,)
    if split != "all" and split not in SPLITS:
        raise InputError(f"unknown split {split!r}; use one of {', '.join(SPLITS)} or all")
    found = []
    for s in wanted:
        label = root / s / f"{s}_label.txt"
        if label.is_file():
            found.append((label, root / s / f"{s}_images"))
    if not found:
        raise InputError(
            f"no labels for split {split!r}: expected a Track-2 folder "
            f"({'/'.join(wanted)}/<split>_label.txt) or labels.txt + images/",
            root,
        )
    return found


def load_records(
    root: str | Path,
    split: str = "train",
    *,
    schema: Schema | None = None,
    check_images: bool = True,
    skip_bad: bool = False,
    on_skip: Callable[[InputError], None] | None = None,
    decode: bool = False,
) -> list[Record]:
    """Read every labelled image of ``split`` under ``root``, in file order.

    With ``check_images`` a missing image file is an error naming the label line, or, with
    ``skip_bad``, is reported through ``on_skip`` and left out. ``decode`` also decodes every
    image once (zero-byte, truncated, corrupt or oversized files are then caught here, at
    their label line, instead of mid-training); it costs one full read of the images.
    """
    schema = schema or load_schema()
    out: list[Record] = []
    for label_file, image_dir in find_label_files(root, split):
        for ll in read_label_file(label_file, schema, skip_bad=skip_bad, on_skip=on_skip):
            path = image_dir / ll.image
            if check_images and not path.is_file():
                err = InputError(f"image {ll.image!r} not found in {image_dir}", label_file, ll.line)
                if not skip_bad:
                    raise err
                if on_skip:
                    on_skip(err)
                continue
            if check_images and decode:
                try:
                    load_image(path, where=f"{label_file}:{ll.line}")
                except InputError as err:
                    if not skip_bad:
                        raise
                    if on_skip:
                        on_skip(err)
                    continue
            out.append(Record(path, ll.image, ll.kind, ll.values, ll.caption, label_file, ll.line))
    return out
