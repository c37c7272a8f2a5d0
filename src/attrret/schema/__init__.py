"""The attribute schema: the one registry every other part of attrret derives from.

The vocabulary lives in the TOML files beside this module (``pedestrian.toml``,
``vehicle.toml``, ``router.toml``). Head sizes, one-hot column layout, code bits, the
parser's class vocabulary and index columns are all read from here, so adding an attribute
group is one edit to a data file. ``Schema.fingerprint`` hashes the vocabulary so that
checkpoints and indexes built under another vocabulary are refused instead of misread.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from attrret.geometry import CROPS, HW, parse_hw

__all__ = ["Group", "Subject", "Schema", "load_schema", "SUBJECTS"]

#: Subjects an image or caption can be about, in router-class order.
SUBJECTS: tuple[str, ...] = ("pedestrian", "vehicle")


@dataclass(frozen=True)
class Group:
    """One attribute group = one single-task classifier (e.g. ``pedestrian.hat``)."""

    subject: str
    name: str
    classes: tuple[str, ...]
    bits: tuple[int, ...] = ()
    # Training hints (``hints`` of the group, defaults from the file's ``[hints]`` table). They
    # change how a task trains, not what its columns mean, so they are not part of the fingerprint.
    photometric: bool = True  # brightness/contrast jitter keeps the label true (not for colours)
    input: HW | None = None  # the default model input H x W (``input = "256x128"``); None: the backbone's native square
    crop: str = "full"  # the default input region (attrret.geometry.CROPS)

    @property
    def task(self) -> str:
        """Task name used on the command line and in checkpoints."""
        return self.name if self.subject == self.name else f"{self.subject}.{self.name}"

    @property
    def size(self) -> int:
        return len(self.classes)

    def index(self, cls: str) -> int:
        try:
            return self.classes.index(cls)
        except ValueError:
            raise KeyError(f"{cls!r} is not a class of {self.task} (classes: {', '.join(self.classes)})") from None


@dataclass(frozen=True)
class Subject:
    """All groups of one subject, with the derived column layout of their concatenated code."""

    name: str
    groups: tuple[Group, ...]
    code_bits: int | None = None
    offsets: dict[str, int] = field(init=False, compare=False, hash=False)
    _by_name: dict[str, Group] = field(init=False, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        offsets, at = {}, 0
        for g in self.groups:
            offsets[g.name] = at
            at += g.size
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "_by_name", {g.name: g for g in self.groups})

    @property
    def width(self) -> int:
        """Number of columns of the concatenated one-hot code (30 for pedestrians)."""
        return sum(g.size for g in self.groups)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    def group(self, name: str) -> Group:
        g = self._by_name.get(name)
        if g is not None:
            return g
        raise KeyError(f"{name!r} is not a {self.name} group (groups: {', '.join(self.group_names)})")

    def columns(self, name: str) -> slice:
        """Columns of group ``name`` in the concatenated code."""
        start = self.offsets[name]
        return slice(start, start + self.group(name).size)


@dataclass(frozen=True)
class Schema:
    pedestrian: Subject
    vehicle: Subject
    router: Group

    @property
    def subjects(self) -> dict[str, Subject]:
        return {"pedestrian": self.pedestrian, "vehicle": self.vehicle}

    @property
    def tasks(self) -> tuple[Group, ...]:
        """Every trainable task: the 12 pedestrian groups, the 3 vehicle groups, then the router."""
        return self.pedestrian.groups + self.vehicle.groups + (self.router,)

    def task(self, name: str) -> Group:
        for g in self.tasks:
            if g.task == name:
                return g
        raise KeyError(f"unknown task {name!r}; tasks are: {', '.join(g.task for g in self.tasks)}")

    def select_tasks(self, spec: str) -> tuple[Group, ...]:
        """Resolve a task spec: a task name, ``pedestrian``, ``vehicle`` or ``all`` (router included)."""
        if spec == "all":
            return self.tasks
        if spec in self.subjects:
            return self.subjects[spec].groups
        return (self.task(spec),)

    def subject(self, name: str) -> Subject:
        try:
            return self.subjects[name]
        except KeyError:
            raise KeyError(f"unknown subject {name!r}; subjects are: {', '.join(SUBJECTS)}") from None

    def as_dict(self) -> dict:
        return {
            "router": list(self.router.classes),
            **{
                s.name: {"code_bits": s.code_bits, "groups": [[g.name, list(g.classes), list(g.bits)] for g in s.groups]}
                for s in (self.pedestrian, self.vehicle)
            },
        }

    @property
    def fingerprint(self) -> str:
        """Short stable hash of the vocabulary, stored in every checkpoint and index."""
        blob = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


_HINTS = {"photometric", "input", "crop"}


def _read_hints(hints: dict, where: str) -> dict:
    """The :class:`Group` fields a ``hints`` table sets, checked: a typo or a bad value is an
    error naming the file, not a default silently used."""
    unknown = sorted(set(hints) - _HINTS)
    if unknown:
        raise ValueError(f"{where}: unknown hints {unknown}; known: {sorted(_HINTS)}")
    out = dict(hints)
    if "photometric" in out and not isinstance(out["photometric"], bool):
        raise ValueError(f"{where}: hint photometric must be true or false, got {out['photometric']!r}")
    if "input" in out:
        try:
            out["input"] = parse_hw(out["input"])
        except ValueError as exc:
            raise ValueError(f"{where}: hint input: {exc}") from None
    if "crop" in out and out["crop"] not in CROPS:
        raise ValueError(f"{where}: hint crop must be one of {', '.join(CROPS)}, got {out['crop']!r}")
    return out


def _read_subject(data: dict, source: str) -> tuple[str, tuple[Group, ...], int | None]:
    subject = data["subject"]
    code_bits = data.get("code_bits")
    defaults = _read_hints(data.get("hints", {}), source)  # the file's [hints]: every group's defaults
    groups = []
    for raw in data["groups"]:
        hints = {**defaults, **_read_hints(raw.get("hints", {}), f"{source}: group {raw['name']!r}")}
        g = Group(subject, raw["name"], tuple(raw["classes"]), tuple(raw.get("bits", ())), **hints)
        if len(set(g.classes)) != g.size or g.size < 2:
            raise ValueError(f"{source}: group {g.name!r} needs at least two distinct classes")
        if g.bits:
            if code_bits is None:
                raise ValueError(f"{source}: group {g.name!r} has bits but the subject declares no code_bits")
            ok = (len(g.bits) == 1 and g.size == 2) or len(g.bits) in (g.size, g.size - 1)
            if not ok:
                raise ValueError(f"{source}: group {g.name!r}: {len(g.bits)} bits cannot encode {g.size} classes")
        groups.append(g)
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: duplicate group names")
    if code_bits is not None:
        used = sorted(b for g in groups for b in g.bits)
        if used != list(range(code_bits)):
            raise ValueError(f"{source}: bits must cover 0..{code_bits - 1} exactly once")
    return subject, tuple(groups), code_bits


def _load_toml(directory: Path | None, name: str) -> tuple[dict, str]:
    if directory is None:
        text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
        return tomllib.loads(text), f"attrret/schema/{name}"
    path = Path(directory) / name
    return tomllib.loads(path.read_text(encoding="utf-8")), str(path)


def load_schema(directory: Path | None = None) -> Schema:
    """Load the schema from ``directory`` (default: the packaged TOML files)."""
    if directory is None:
        return _default_schema()
    return _build(directory)


@cache
def _default_schema() -> Schema:
    # Immutable value built from packaged data: caching it is not mutable global state.
    return _build(None)


def _build(directory: Path | None) -> Schema:
    subjects = {}
    for fname in ("pedestrian.toml", "vehicle.toml"):
        data, source = _load_toml(directory, fname)
        name, groups, code_bits = _read_subject(data, source)
        subjects[name] = Subject(name, groups, code_bits)
    data, source = _load_toml(directory, "router.toml")
    _, (router,), _ = _read_subject(data, source)
    if router.classes != SUBJECTS:
        raise ValueError(f"{source}: router classes must be {SUBJECTS}")
    return Schema(subjects["pedestrian"], subjects["vehicle"], router)
