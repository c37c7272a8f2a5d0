"""The attribute schema: the one registry every other part of attrret derives from.

The vocabulary lives in the TOML files beside this module (``pedestrian.toml``,
``vehicle.toml``, ``router.toml``). Head sizes, one-hot column layout, code bits, the
parser's class vocabulary and index columns are all read from here, so adding an attribute
group is one edit to a data file. ``Schema.fingerprint`` hashes the vocabulary so that
checkpoints and indexes built under another vocabulary are refused instead of misread.

Multi-label groups. A garment may have several colours (PETA labels a black-and-white top
both black and white), so a colour is not one class of a softmax group. A ``multilabel = true``
table declares such a group; it is read as one yes/no :class:`Group` per class, named
``<group>_<class>`` (``upper_color_black``) and carrying the family name (``Group.family``).
Everything downstream (labels, training, columns, ranking, export) then handles ordinary
two-class groups; the family tells training to learn its classes in one network (one
classifier for one attribute, :mod:`attrret.classifiers.train`), the parser and the search page
that they belong together, and the ranker how "black or grey" reads (its module doc has the maths).

A custom schema is a directory holding the same three files plus the parser's
``lexicon.toml`` (docs/schema.md): ``load_schema(DIR)``. The loaded :class:`Schema` remembers
its directory, so the lexicon is found beside it and an error can say which schema made what.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from attrret.errors import CheckpointError, SchemaError

__all__ = ["Group", "Subject", "Schema", "load_schema", "member_name", "family_labels", "SUBJECTS", "SCHEMA_FILES", "LEXICON_FILE", "PACKAGED",
           "VEHICLE_LABEL_GROUPS"]

#: Subjects an image or caption can be about, in router-class order.
SUBJECTS: tuple[str, ...] = ("pedestrian", "vehicle")

#: The files of a schema directory: the vocabulary, then the parser's lexicon.
SCHEMA_FILES: tuple[str, ...] = ("pedestrian.toml", "vehicle.toml", "router.toml")
LEXICON_FILE = "lexicon.toml"

#: How the packaged schema is named where a schema directory would be (``Schema.source``).
PACKAGED = "packaged"

#: Vehicle groups every schema has: Track-2 vehicle labels are ``[colour] [brand] [type].`` text.
VEHICLE_LABEL_GROUPS: tuple[str, ...] = ("color", "type", "brand")


def member_name(family: str, label: str) -> str:
    """The yes/no group of class ``label`` of a multi-label group: ``upper_color_red`` (module doc)."""
    return f"{family}_{label}"


def family_labels(values: Mapping[str, str], family: str) -> list[str]:
    """The classes of multi-label group ``family`` that ``values`` (``{group: class}``) says yes
    to, in the order of ``values``: ``{"upper_color_red": "yes", ...}`` -> ``["red", ...]``. It
    reads names by :func:`member_name`'s rule, so it needs no schema (renderers, caption writers)."""
    prefix = member_name(family, "")
    return [g[len(prefix):] for g, v in values.items() if v == "yes" and g.startswith(prefix)]


@dataclass(frozen=True)
class Group:
    """One attribute group = one single-task classifier (e.g. ``pedestrian.hat``)."""

    subject: str
    name: str
    classes: tuple[str, ...]
    bits: tuple[int, ...] = ()
    # The multi-label group this yes/no group is one class of ("upper_color" for
    # "upper_color_black"), or "" for a group of its own (module doc: multi-label groups).
    family: str = ""
    # How a group trains is not vocabulary: attrret.classifiers.recipes (recipes.toml) holds it.

    @property
    def label(self) -> str:
        """The class this group stands for in its family ("black"), or "" for a group of its own."""
        return self.name[len(self.family) + 1:] if self.family else ""

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
    #: Multi-label groups: family name -> its yes/no groups, one per class, in schema order.
    families: dict[str, tuple[Group, ...]] = field(init=False, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        offsets, at = {}, 0
        families: dict[str, list[Group]] = {}
        for g in self.groups:
            offsets[g.name] = at
            at += g.size
            if g.family:
                families.setdefault(g.family, []).append(g)
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "_by_name", {g.name: g for g in self.groups})
        object.__setattr__(self, "families", {f: tuple(gs) for f, gs in families.items()})

    @property
    def width(self) -> int:
        """Number of columns of the concatenated one-hot code (30 for pedestrians)."""
        return sum(g.size for g in self.groups)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    def family_group(self, family: str, label: str) -> Group:
        """The yes/no group of class ``label`` of multi-label group ``family`` ("upper_color", "red")."""
        return self.group(member_name(family, label))

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
    # Where it was read from (None: the packaged files). Not part of the vocabulary: two
    # directories with equal files are the same schema (equal fingerprints, equal values).
    directory: Path | None = field(default=None, compare=False)

    @property
    def source(self) -> str:
        """The schema directory (absolute), or ``packaged``: recorded beside the fingerprint in
        what is made with it, so a refusal can say which schema to use instead."""
        return PACKAGED if self.directory is None else str(Path(self.directory).resolve())

    @property
    def lexicon_path(self) -> Path | None:
        """The parser's lexicon of this schema: ``DIR/lexicon.toml`` (None: the packaged one)."""
        return None if self.directory is None else Path(self.directory) / LEXICON_FILE

    def check_made_with(self, fingerprint: str, source: object, what: str, fix: str) -> None:
        """Refuse ``what`` (a checkpoint, an index, ...) made under another schema, with a
        :class:`CheckpointError` naming both schemas (fingerprint and directory) and ``fix``.

        ``source`` is the directory the piece recorded (absent in pieces from before custom
        schemas: they were made with the packaged one, or say nothing)."""
        if fingerprint == self.fingerprint:
            return
        made = f"schema {fingerprint}" + (f" ({source})" if isinstance(source, str) and source else "")
        raise CheckpointError(f"{what} was made under {made}, but the schema in use is {self.fingerprint} "
                              f"({self.source}); {fix} (--schema DIR / ATTRRET_SCHEMA select the schema)")

    @property
    def subjects(self) -> dict[str, Subject]:
        return {"pedestrian": self.pedestrian, "vehicle": self.vehicle}

    @property
    def tasks(self) -> tuple[Group, ...]:
        """Every trainable task: the pedestrian groups, the vehicle groups, then the router."""
        return self.pedestrian.groups + self.vehicle.groups + (self.router,)

    def task(self, name: str) -> Group:
        for g in self.tasks:
            if g.task == name:
                return g
        raise KeyError(f"unknown task {name!r}; tasks are: {', '.join(g.task for g in self.tasks)}")

    def select_tasks(self, spec: str) -> tuple[Group, ...]:
        """Resolve a task spec: a task name, a multi-label group (``pedestrian.upper_color``: its
        yes/no groups), ``pedestrian``, ``vehicle`` or ``all`` (router included)."""
        if spec == "all":
            return self.tasks
        if spec in self.subjects:
            return self.subjects[spec].groups
        subject, _, family = spec.partition(".")
        if subject in self.subjects and family in self.subjects[subject].families:
            return self.subjects[subject].families[family]
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
                s.name: {"code_bits": s.code_bits,
                         "groups": [[g.name, list(g.classes), list(g.bits), *([g.family] if g.family else [])]
                                    for g in s.groups]}
                for s in (self.pedestrian, self.vehicle)
            },
        }

    @property
    def fingerprint(self) -> str:
        """Short stable hash of the vocabulary, stored in every checkpoint and index."""
        blob = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


#: Schemas written before training settings left the vocabulary carry ``hints``; say where they go.
_MOVED = ("{where}: training hints are no longer part of the schema: move them to recipes.toml in the schema "
          "directory ([subject.<subject>] or [task.\"<task>\"] tables with the same keys; see docs/schema.md)")


def _read_subject(data: dict, source: str, expected: str) -> tuple[str, tuple[Group, ...], int | None]:
    subject = data.get("subject")
    if subject != expected:
        raise SchemaError(f"{source}: subject must be {expected!r}, got {subject!r}")
    code_bits = data.get("code_bits")
    if code_bits is not None and (not isinstance(code_bits, int) or isinstance(code_bits, bool) or code_bits < 1):
        raise SchemaError(f"{source}: code_bits must be a whole number >= 1, got {code_bits!r}")
    if "hints" in data:
        raise SchemaError(_MOVED.format(where=source))
    raws = data.get("groups")
    if not isinstance(raws, list) or not raws:
        raise SchemaError(f"{source}: needs at least one [[groups]] table")
    groups = []
    for i, raw in enumerate(raws):
        if not isinstance(raw, dict):
            raise SchemaError(f"{source}: groups must be [[groups]] tables")
        name, classes, bits = raw.get("name"), raw.get("classes"), raw.get("bits", [])
        if not isinstance(name, str) or not name.strip() or "." in name:
            raise SchemaError(f"{source}: group #{i + 1} needs a name (a word without '.'), got {name!r}")
        if not isinstance(classes, list) or not all(isinstance(c, str) and c.strip() for c in classes):
            raise SchemaError(f"{source}: group {name!r}: classes must be a list of names")
        if not isinstance(bits, list) or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 0 for b in bits):
            raise SchemaError(f"{source}: group {name!r}: bits must be a list of bit positions >= 0")
        if "hints" in raw:
            raise SchemaError(_MOVED.format(where=f"{source}: group {name!r}"))
        multilabel = raw.get("multilabel", False)
        if not isinstance(multilabel, bool):
            raise SchemaError(f"{source}: group {name!r}: multilabel must be true or false, got {multilabel!r}")
        if multilabel:
            groups.extend(_multilabel(subject, name, classes, bits, source))
            continue
        g = Group(subject, name, tuple(classes), tuple(bits))
        if len(set(g.classes)) != g.size or g.size < 2:
            raise SchemaError(f"{source}: group {g.name!r} needs at least two distinct classes")
        if g.bits:
            if code_bits is None:
                raise SchemaError(f"{source}: group {g.name!r} has bits but the subject declares no code_bits")
            ok = (len(g.bits) == 1 and g.size == 2) or len(g.bits) in (g.size, g.size - 1)
            if not ok:
                raise SchemaError(f"{source}: group {g.name!r}: {len(g.bits)} bits cannot encode {g.size} classes")
        groups.append(g)
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise SchemaError(f"{source}: duplicate group names")
    if code_bits is not None:
        used = sorted(b for g in groups for b in g.bits)
        if used != list(range(code_bits)):
            raise SchemaError(f"{source}: bits must cover 0..{code_bits - 1} exactly once")
    return subject, tuple(groups), code_bits


def _multilabel(subject: str, name: str, classes: list[str], bits: list[int], source: str) -> list[Group]:
    """A ``multilabel = true`` table: one yes/no group per class, named ``<name>_<class>``."""
    if bits:
        raise SchemaError(f"{source}: group {name!r}: a multi-label group has no code bits")
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise SchemaError(f"{source}: group {name!r} needs at least two distinct classes")
    bad = [c for c in classes if not c.replace("-", "").isalnum()]
    if bad:
        raise SchemaError(f"{source}: group {name!r}: a multi-label class names a group, so it must be one word: {bad}")
    return [Group(subject, member_name(name, c), ("yes", "no"), (), name) for c in classes]


def _source(directory: Path | None, name: str) -> str:
    return f"attrret/schema/{name}" if directory is None else str(Path(directory) / name)


def _load_toml(directory: Path | None, name: str) -> tuple[dict, str]:
    if directory is None:
        text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
        return tomllib.loads(text), f"attrret/schema/{name}"
    path = Path(directory) / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SchemaError(f"{path}: missing; a schema directory holds {', '.join(SCHEMA_FILES)} and {LEXICON_FILE} "
                          "(copy the packaged ones, see docs/schema.md)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return tomllib.loads(text), str(path)
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"{path}: not valid TOML: {exc}") from None


def load_schema(directory: str | Path | None = None) -> Schema:
    """Load the schema from ``directory`` (default: the packaged TOML files).

    Raises :class:`attrret.errors.SchemaError` (a ``ValueError``) naming the file for a missing
    directory or file, bad TOML, or a vocabulary that contradicts itself. The lexicon is read
    by :func:`attrret.parser.lexicon.load_lexicon` (``schema.lexicon_path``)."""
    if directory is None:
        return _default_schema()
    directory = Path(directory)
    if not directory.is_dir():
        raise SchemaError(f"{directory}: not a schema directory (no such directory)")
    return _build(directory)


@cache
def _default_schema() -> Schema:
    # Immutable value built from packaged data: caching it is not mutable global state.
    return _build(None)


def _build(directory: Path | None) -> Schema:
    subjects = {}
    for name in SUBJECTS:
        data, source = _load_toml(directory, f"{name}.toml")
        _, groups, code_bits = _read_subject(data, source, name)
        subjects[name] = Subject(name, groups, code_bits)
    missing = [g for g in VEHICLE_LABEL_GROUPS if g not in subjects["vehicle"].group_names]
    if missing:
        raise SchemaError(f"{_source(directory, 'vehicle.toml')}: needs the groups {', '.join(VEHICLE_LABEL_GROUPS)} "
                          f"(vehicle labels are '[colour] [brand] [type].' text); missing: {', '.join(missing)}")
    for name in ("color", "type"):  # one word each, so that a label's first and last words can be them
        spaced = [c for c in subjects["vehicle"].group(name).classes if len(c.split()) != 1]
        if spaced:
            raise SchemaError(f"{_source(directory, 'vehicle.toml')}: {name} classes must be one word each "
                              f"(vehicle labels are '[colour] [brand] [type].' text): {spaced}")
    data, source = _load_toml(directory, "router.toml")
    _, routers, _ = _read_subject(data, source, "router")
    if len(routers) != 1 or routers[0].name != "router" or routers[0].classes != SUBJECTS:
        raise SchemaError(f"{source}: one group named 'router' with classes {list(SUBJECTS)}")
    return Schema(subjects["pedestrian"], subjects["vehicle"], routers[0], directory)
