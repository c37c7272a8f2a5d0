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
import errno
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from attrret.errors import InputError
from attrret.io import atomic_write_text
from attrret.schema import Schema
from attrret.schema.codes import values_to_code21, values_to_vehicle_text

__all__ = ["marker_json", "check_replaceable", "partial_folder", "publish", "discard", "seal", "FILES_KEY", "label_line", "unknown_line",
           "job_progress"]


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
    doc = marker_json(out, marker)
    if doc is None:
        article = "an" if what[0] in "aeiou" else "a"
        raise InputError(f"output folder is not {article} {what} attrret made (no valid {marker}); "
                         "refusing to replace it, name a new folder", out)
    foreign = sorted(entries - set(layout) - {marker})
    if foreign:
        raise InputError(f"output folder holds files attrret did not create ({', '.join(foreign[:3])}); "
                         "refusing to replace it", out)
    _check_owned(out, doc, marker)


#: The key of a set's marker that lists every file attrret wrote into it (path -> [size, mtime_ns]).
FILES_KEY = "files"


def _listing(folder: Path, skip: str) -> dict[str, list[int]]:
    """Every file and symlink under ``folder`` (not following links), as ``relpath -> [size, mtime_ns]``."""
    out: dict[str, list[int]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [*filenames, *(d for d in dirnames if os.path.islink(os.path.join(dirpath, d)))]:
            full = Path(dirpath) / name
            rel = full.relative_to(folder).as_posix()
            if rel == skip:
                continue
            st = full.lstat()
            out[rel] = [st.st_size, st.st_mtime_ns]
    return out


def seal(tmp: Path, marker: str, doc: dict) -> None:
    """Write the completion ``marker`` of a finished set in ``tmp`` with the list of every file
    in it (:data:`FILES_KEY`): what a later ``--force`` may replace, and nothing else."""
    atomic_write_text(tmp / marker, json.dumps({**doc, FILES_KEY: _listing(tmp, marker)}, indent=2, default=str) + "\n")


def _check_owned(out: Path, doc: dict, marker: str) -> None:
    """Refuse to replace ``out`` when it holds a file its marker does not list as attrret's (a
    file a user added, in any subfolder, or one changed since), or when the marker lists none
    (a folder that merely holds a marker file, or a set of an attrret from before the list)."""
    listed = doc.get(FILES_KEY)
    if not isinstance(listed, dict):  # a hand-made marker, or one from before the list: not provably attrret's
        raise InputError(f"output folder's {marker} does not list the files attrret wrote (hand-made, or from an older "
                         "attrret); refusing to replace it: remove it yourself or name a new folder", out)
    for rel, stat in _listing(out, marker).items():
        if listed.get(rel) != stat:
            why = "a file attrret did not write" if rel not in listed else "a file changed since attrret wrote it"
            raise InputError(f"output folder holds {why} ({rel}); refusing to replace it, name a new folder", out)


def partial_folder(out: Path) -> Path:
    """A fresh ``.DIR.partial`` beside ``out`` (a leftover of an interrupted run is removed)."""
    tmp = out.parent / f".{out.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def publish(tmp: Path, out: Path, *, marker: str, layout: Iterable[str], what: str) -> None:
    """Move the finished ``tmp`` onto ``out`` atomically against anything that appeared there since
    :func:`check_replaceable` ran: an earlier set is moved aside and checked again (every file
    still attrret's), the new one renamed onto a path that must be free (an empty folder is
    fine; a filled one is refused), and only then the old set removed. On refusal ``tmp`` is removed."""
    aside = None
    try:
        if out.is_dir() and not out.is_symlink() and any(out.iterdir()):
            check_replaceable(out, True, marker=marker, layout=layout, what=what)
            aside = out.parent / f".{out.name}.replaced-{os.getpid()}"
            os.rename(out, aside)
            check_replaceable(aside, True, marker=marker, layout=layout, what=what)  # nothing added in between
        try:
            os.rename(tmp, out)  # onto a missing or empty folder only: a filled one raises
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise InputError(f"something was written at the output path while the {what} was being made; "
                                 "refusing to replace it, name a new folder", out) from None
            raise
    except BaseException:
        if aside is not None and aside.exists() and not out.exists():
            os.rename(aside, out)  # put the earlier set back where it was
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def discard(tmp: Path) -> None:
    """Remove a partial folder after a failure (a full disk, an error, an interrupt): never raises."""
    shutil.rmtree(tmp, ignore_errors=True)


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
    """The ``<split>_unknown.jsonl`` line of a pedestrian whose label line cannot say everything,
    else ``None``: ``unknown``, the code's groups it leaves unknown, and ``values``, its known
    groups outside the code (:mod:`attrret.data.track2`)."""
    if kind != "pedestrian":
        return None
    groups = schema.pedestrian.groups
    unknown = [g.name for g in groups if g.bits and g.name not in values]
    extra = {g.name: values[g.name] for g in groups if not g.bits and g.name in values}
    if not unknown and not extra:
        return None
    return json.dumps({"image": image, "unknown": unknown, **({"values": extra} if extra else {})}) + "\n"
