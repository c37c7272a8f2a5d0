"""Writing a Track-2 folder: the pieces shared by the synthetic generator and the importers.

Both build the whole folder in a hidden sibling ``.DIR.partial`` and rename it onto ``DIR``
only when it is complete (an interrupted run never leaves a folder that looks finished), and
both refuse to replace a folder they did not make: a set carries a JSON completion marker
(``synth.json``, ``import.json``), and ``--force`` replaces only an empty folder or one with
that marker and nothing at its top level beyond the set's own layout.

Label lines need a complete 21-bit code for a pedestrian, but imported labels may leave
groups unknown (PETA has no orientation). Such groups are written with their last class
(``no`` / ``none`` / ...) in the code and listed in ``<split>/<split>_unknown.jsonl``, which
:func:`attrret.data.track2.read_label_file` applies, so every reader sees them as unknown.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from attrret.errors import InputError
from attrret.schema import Schema
from attrret.schema.codes import values_to_code21, values_to_vehicle_text

__all__ = ["marker_json", "check_replaceable", "partial_folder", "publish", "label_line", "unknown_line", "job_progress"]


@contextlib.contextmanager
def job_progress(label: str, total: int, progress: bool,
                 on_progress: Callable[[int, int], None] | None) -> Iterator[Callable[[int], None]]:
    """``done(i)``: report that ``i`` of ``total`` images are written, on a transient bar on stderr
    (with ``progress``) and to ``on_progress(i, total)`` (library callers, tests). The one
    progress loop of the folders attrret writes image by image (synth, import)."""
    bar = task = None
    if progress:
        from rich.console import Console
        from rich.progress import Progress

        bar = Progress(console=Console(stderr=True), transient=True)
        bar.start()
        task = bar.add_task(label, total=total)

    def done(i: int) -> None:
        if bar is not None:
            bar.update(task, completed=i)
        if on_progress:
            on_progress(i, total)

    try:
        yield done
    finally:
        if bar is not None:
            bar.stop()


def marker_json(out: Path, marker: str) -> dict | None:
    """The JSON object in ``out/marker``, or ``None`` when it is missing or not a JSON object."""
    try:
        doc = json.loads((out / marker).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def check_replaceable(out: Path, force: bool, *, marker: str, layout: Iterable[str], what: str,
                      empty_ok: bool = False) -> None:
    """Refuse an output folder that attrret may not replace.

    An empty folder is replaced with ``force``, or always with ``empty_ok``. ``force`` also
    replaces an earlier set of the same kind: one that carries a valid ``marker`` and nothing
    at its top level beyond ``layout``. Anything else (the current
    directory, a user's own folder, a set someone added files to) is refused, so attrret never
    deletes what it did not create. ``what`` names the set in messages ("synthetic set").
    """
    if Path.cwd().is_relative_to(out):  # the current directory, one above it, or the root
        raise InputError(f"refusing to write the {what} over the current directory or one above it; "
                         "name a new folder", out)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise InputError("output path exists and is not a folder; name a new folder", out)
    entries = {p.name for p in out.iterdir()}
    if not entries and (force or empty_ok):  # an empty folder (made beforehand): nothing to lose
        return
    if not force:
        state = "exists and is not empty" if empty_ok else "exists"
        raise InputError(f"output folder {state} (use --force to replace an earlier {what})", out)
    if marker_json(out, marker) is None:
        article = "an" if what[0] in "aeiou" else "a"
        raise InputError(f"output folder is not {article} {what} attrret made (no valid {marker}); "
                         "refusing to replace it, name a new folder", out)
    foreign = sorted(entries - set(layout) - {marker})
    if foreign:
        raise InputError(f"output folder holds files attrret did not create ({', '.join(foreign[:3])}); "
                         "refusing to replace it", out)


def partial_folder(out: Path) -> Path:
    """A fresh ``.DIR.partial`` beside ``out`` (a leftover of an interrupted run is removed)."""
    tmp = out.parent / f".{out.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def publish(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` onto ``out`` (already checked by :func:`check_replaceable`)."""
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def _filled(values: Mapping[str, str], schema: Schema) -> dict[str, str]:
    """Pedestrian values with each unknown group set to its last class (the code needs them all)."""
    return {g.name: values.get(g.name, g.classes[-1]) for g in schema.pedestrian.groups}


def label_line(image: str, kind: str, values: Mapping[str, str], caption: str, schema: Schema) -> str:
    """One ``image$attribute$caption`` line; unknown pedestrian groups are filled (see the module note)."""
    if kind == "vehicle":
        attribute = values_to_vehicle_text(values, schema)
    else:
        attribute = ",".join(map(str, values_to_code21(_filled(values, schema), schema.pedestrian)))
    return f"{image}${attribute}${caption}\n"


def unknown_line(image: str, kind: str, values: Mapping[str, str], schema: Schema) -> str | None:
    """The ``<split>_unknown.jsonl`` line of a pedestrian with unknown groups, else ``None``."""
    if kind != "pedestrian":
        return None
    unknown = [g for g in schema.pedestrian.group_names if g not in values]
    return json.dumps({"image": image, "unknown": unknown}) + "\n" if unknown else None
