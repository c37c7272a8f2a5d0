"""``generate``: write a complete synthetic Track-2-format benchmark folder.

Layout (exactly Track-2, vehicles first in every file)::

    DIR/train/train_images/  DIR/train/train_label.txt   (vehicle labels INCOMPLETE)
    DIR/val/val_images/      DIR/val/val_label.txt
    DIR/test/test_images/    DIR/test/test_text.txt      (one caption per test image)
                             DIR/test/test_label.txt     (full attributes)
                             DIR/test/test_gt.txt        (organisers' text$img1$img2...)
    DIR/synth.json           config, counts, schema fingerprint: the completion marker

Everything is written into a sibling ``.DIR.partial`` folder that is renamed onto ``DIR``
only when complete, so an interrupted run never leaves a folder that looks finished.
Attribute values and captions are drawn in the main process from one seeded generator;
each image has its own seed (``SeedSequence([seed, kind, index])``), so the output is
byte-identical for a seed whatever the number of workers.
"""

from __future__ import annotations

import multiprocessing
import os
import string
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from attrret.data.captions import clothing_sentence, pedestrian_caption, vehicle_caption
from attrret.data.synth.pedestrian import render_pedestrian
from attrret.data.synth.priors import sample_pedestrian, sample_vehicle, train_vehicle_label
from attrret.data.synth.relevance import relevant_sets
from attrret.data.layout import (check_replaceable, discard, job_progress, label_line, marker_json, partial_folder, publish, seal,
                                 unknown_line)
from attrret.data.track2 import unknown_file, write_gt
from attrret.errors import InputError
from attrret.io import atomic_write_text
from attrret.schema import Schema, load_schema
from attrret.data.synth.vehicle import render_vehicle

__all__ = ["SynthConfig", "SynthSummary", "SynthItem", "plan", "generate", "marker_config", "MARKER"]

MARKER = "synth.json"


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Defaults: the demo set (2,400 images, well under a minute on 2 cores)."""

    pedestrians: int = 1200
    vehicles: int = 1200
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    seed: int = 0
    workers: int = 2
    preview: bool = False
    jpeg_quality: int = 92

    def __post_init__(self) -> None:
        if self.pedestrians < 0 or self.vehicles < 0 or self.pedestrians + self.vehicles == 0:
            raise InputError("need at least one pedestrian or vehicle (counts must be >= 0)")
        if not (0 <= self.test_fraction < 1 and 0 <= self.val_fraction < 1 and self.test_fraction + self.val_fraction < 1):
            raise InputError("test and val fractions must be in [0, 1) and sum to less than 1")
        if self.workers < 1:
            raise InputError("workers must be >= 1")


@dataclass(frozen=True)
class SynthItem:
    """One planned image: where it goes, its full values, the label written, its caption and seed;
    ``said``: the values of groups outside the Track-2 code its caption states (relevance reads them)."""

    split: str
    kind: str
    image: str
    values: dict[str, str]
    label: dict[str, str]
    caption: str
    seed: tuple[int, int, int]
    said: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SynthSummary:
    """What was written: image counts per split and kind, and how long it took."""

    out: Path
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    preview: Path | None = None

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())


def _split_sizes(n: int, config: SynthConfig) -> dict[str, int]:
    n_test = int(round(n * config.test_fraction))
    n_val = int(round(n * config.val_fraction))
    return {"train": n - n_test - n_val, "val": n_val, "test": n_test}


def plan(config: SynthConfig, schema: Schema | None = None) -> list[SynthItem]:
    """Every image to generate, in file order (per split: vehicles first, then pedestrians)."""
    schema = schema or load_schema()
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 7]))
    letters = np.array(list(string.ascii_lowercase))
    used: set[str] = set()
    by_split: dict[str, list[SynthItem]] = {"train": [], "val": [], "test": []}
    # vehicles
    index = 0
    test_no = 0
    for split, n in _split_sizes(config.vehicles, config).items():
        for _ in range(n):
            test = split == "test"
            values = sample_vehicle(rng, test, schema)
            label = dict(values) if test else train_vehicle_label(values, rng)
            caption = vehicle_caption(label, rng, schema)
            if test:
                test_no += 1
                name = f"vehicle_{test_no:07d}.jpg"
            else:
                name = "".join(rng.choice(letters, 10)) + ".jpg"
                while name in used:
                    name = "".join(rng.choice(letters, 10)) + ".jpg"
                used.add(name)
            by_split[split].append(SynthItem(split, "vehicle", name, values, label, caption, (config.seed, 0, index)))
            index += 1
    # pedestrians: PA-100K-like names, test from 090001 when the train/val numbers leave room
    sizes = _split_sizes(config.pedestrians, config)
    number = 1
    index = 0
    for split, n in sizes.items():
        if split == "test" and number <= 90000 and number + n <= 100000:
            number = max(number, 90001)
        for _ in range(n):
            values = sample_pedestrian(rng, schema)
            caption = pedestrian_caption(values, rng)
            extra, said = clothing_sentence(values, rng)  # groups outside the code, when the schema has them
            caption = f"{caption} {extra}" if extra else caption
            by_split[split].append(SynthItem(split, "pedestrian", f"{number:06d}.jpg", values, dict(values), caption,
                                             (config.seed, 1, index), said))
            number += 1
            index += 1
    return by_split["train"] + by_split["val"] + by_split["test"]


def _render_one(job: tuple[str, dict[str, str], tuple[int, int, int], str, int]) -> None:
    kind, values, seed, path, quality = job
    rng = np.random.default_rng(np.random.SeedSequence(list(seed)))
    im = render_vehicle(values, rng) if kind == "vehicle" else render_pedestrian(values, rng)
    im.save(path, format="JPEG", quality=quality)


def generate(out: Path, config: SynthConfig = SynthConfig(), progress: bool = False, *, force: bool = False,
             on_progress: Callable[[int, int], None] | None = None) -> SynthSummary:
    """Generate the benchmark into ``out`` (must not exist unless ``force``); returns the counts.

    ``progress`` shows a rich progress bar on stderr; ``on_progress(done, total)`` is called
    as images are written (for other front ends).
    """
    start = time.perf_counter()
    schema = load_schema()
    out = Path(os.path.abspath(out))
    _check_replaceable(out, force)
    tmp = partial_folder(out)
    try:
        return _generate(tmp, out, config, schema, progress, on_progress, start)
    except BaseException:
        discard(tmp)  # no hidden partial folder is left behind, a full disk included
        raise


def _generate(tmp: Path, out: Path, config: SynthConfig, schema, progress: bool, on_progress, start: float) -> SynthSummary:
    """Render the set into ``tmp`` and publish it at ``out``."""
    items = plan(config, schema)
    for split in ("train", "val", "test"):
        (tmp / split / f"{split}_images").mkdir(parents=True, exist_ok=True)
    jobs = [(it.kind, it.values, it.seed, str(tmp / it.split / f"{it.split}_images" / it.image), config.jpeg_quality) for it in items]
    _run_jobs(jobs, config.workers, progress, on_progress)

    counts: dict[str, dict[str, int]] = {}
    for split in ("train", "val", "test"):
        rows = [it for it in items if it.split == split]
        counts[split] = {k: sum(it.kind == k for it in rows) for k in ("vehicle", "pedestrian")}
        if rows:
            label_file = tmp / split / f"{split}_label.txt"
            atomic_write_text(label_file, "".join(label_line(it.image, it.kind, it.label, it.caption, schema) for it in rows))
            side = [x for it in rows if (x := unknown_line(it.image, it.kind, it.label, schema))]
            if side:  # the groups outside the Track-2 code
                atomic_write_text(unknown_file(label_file), "".join(side))
    test = [it for it in items if it.split == "test"]
    if test:
        atomic_write_text(tmp / "test" / "test_text.txt", "".join(it.caption + "\n" for it in test))
        rel = relevant_sets([(it.kind, it.values) for it in test], schema, [it.said for it in test])
        write_gt(tmp / "test" / "test_gt.txt", [(it.caption, [test[j].image for j in r]) for it, r in zip(test, rel)])
    preview = None
    if config.preview:
        from attrret.data.synth.preview import contact_sheet

        contact_sheet(tmp, tmp / "preview.png")
        preview = out / "preview.png"
    seconds = time.perf_counter() - start
    marker = {"config": asdict(config), "counts": counts, "schema": schema.fingerprint, "seconds": round(seconds, 2)}
    seal(tmp, MARKER, marker)
    publish(tmp, out, marker=MARKER, layout=_LAYOUT, what="synthetic set")
    return SynthSummary(out, counts, seconds, preview)


def marker_config(out: Path) -> dict | None:
    """The ``SynthConfig`` (as a dict) recorded in ``out/synth.json``, or ``None`` when ``out``
    holds no valid completion marker: then attrret did not make it, or did not finish it."""
    config = (marker_json(out, MARKER) or {}).get("config")
    return config if isinstance(config, dict) else None


# What a synthetic set holds at its top level; --force replaces nothing else.
_LAYOUT = frozenset({"train", "val", "test", MARKER, "preview.png"})


def _check_replaceable(out: Path, force: bool) -> None:
    """Refuse an output folder that is not an earlier synthetic set (see :func:`check_replaceable`)."""
    if force and out.is_dir() and not out.is_symlink() and any(out.iterdir()) and marker_json(out, MARKER) is not None \
            and marker_config(out) is None:
        raise InputError("output folder is not a synthetic set attrret made (no valid synth.json); "
                         "refusing to replace it, name a new folder", out)
    check_replaceable(out, force, marker=MARKER, layout=_LAYOUT, what="synthetic set")


def _run_jobs(jobs: list, workers: int, progress: bool, on_progress: Callable[[int, int], None] | None) -> None:
    with job_progress("rendering", len(jobs), progress, on_progress) as done:
        if workers > 1 and len(jobs) > 50:
            ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
            with ctx.Pool(workers) as pool:
                for i, _ in enumerate(pool.imap_unordered(_render_one, jobs, chunksize=16), 1):
                    done(i)
        else:
            for i, job in enumerate(jobs, 1):
                _render_one(job)
                done(i)
