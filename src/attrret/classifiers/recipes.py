"""Training recipes: how each task trains by default, and which ensemble members one ``attrret
train`` command trains. The one place for training settings: the schema holds the vocabulary,
this module (and its data file ``recipes.toml``) how to learn it.

Task settings (:class:`TaskRecipe`, :func:`load_recipes`): input size, crop, epochs, peak
learning rate and whether photometric jitter keeps a label true, as data in ``recipes.toml``
(``[defaults]``, then ``[subject.<subject>]``, then ``[task."<task>"]``, the most specific
winning; a multi-label group's table, ``[task."pedestrian.upper_color"]``, holds what its yes/no
groups share, below their own tables). A custom schema directory may hold its own ``recipes.toml``, read over the packaged
one table by table (its ``[subject.pedestrian]`` keys replace the packaged ones; the packaged
keys it leaves out stay), so it states only what differs. ``attrret train`` options override both.

Why. An ensemble of the same classifiers at two input resolutions is the published method's
cheapest gain (the 3rd-place entry averaged 224 and 448 px EVA models), but asking users to
train each member into its own workdir and to list them again at predict time is how
ensembles get forgotten. A recipe names the members once, as data; ``attrret train --recipe``
trains them all, and ``attrret predict`` finds them without flags.

Where members live (what :func:`attrret.retrieval.indexer.find_members` reads):

- the first member of a recipe is the workdir's own models, ``W/models/<task>/``;
- every other member ``NAME`` trains in ``W/members/NAME/`` (``W/members/NAME/models/<task>/``),
  reading and writing the run's trunk cache in ``W/cache/`` (:func:`attrret.classifiers.train.cache_root`).

A member scales each task's recipe input size (``input_scale``, :func:`geometry.scale_hw`:
pedestrians 256x128 -> 320x160 at 1.25), so tall pedestrians stay tall and wide vehicles wide.
An explicit ``--img-size`` overrides the scaling (every member then trains at that size, which
makes a recipe pointless: the CLI refuses the combination).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from attrret.errors import SchemaError
from attrret.geometry import CROPS, HW, parse_hw
from attrret.schema import Schema

__all__ = ["MemberRecipe", "RECIPES", "DEFAULT_RECIPE", "MEMBERS_DIR", "DEFAULT_EPOCHS", "DEFAULT_LR", "member_workdir", "recipe_configs",
           "RECIPES_FILE", "TaskRecipe", "TaskRecipes", "load_recipes", "family_trainable", "default_trainable_blocks"]

#: The task settings file: packaged beside this module, optionally in a custom schema directory.
RECIPES_FILE = "recipes.toml"

#: Extra members train under ``W/members/<name>/``.
MEMBERS_DIR = "members"
#: How long and how fast a task trains when nothing more specific says (``--epochs`` / ``--lr``,
#: then recipes.toml): the ``[defaults]`` of the packaged recipes.toml, checked equal by a test.
DEFAULT_EPOCHS = 8
DEFAULT_LR = 1e-3


@dataclass(frozen=True)
class TaskRecipe:
    """How one task trains when ``attrret train`` is not told otherwise (module doc)."""

    input: HW | None = None  # the model input H x W; None: the backbone's native square
    crop: str = "full"  # the input region (attrret.geometry.CROPS)
    epochs: int = DEFAULT_EPOCHS
    lr: float = DEFAULT_LR
    photometric: bool = True  # brightness/contrast jitter keeps the label true (not for colours)


@dataclass(frozen=True)
class TaskRecipes:
    """Every task's :class:`TaskRecipe` under one schema, and the files they were read from."""

    tasks: dict[str, TaskRecipe]
    sources: tuple[str, ...] = field(default=())

    def task(self, task: str) -> TaskRecipe:
        try:
            return self.tasks[task]
        except KeyError:
            raise KeyError(f"no task {task!r} in this schema (tasks: {', '.join(self.tasks)})") from None


_KEYS = {f.name for f in dataclasses.fields(TaskRecipe)}


def load_recipes(schema: Schema) -> TaskRecipes:
    """Each task's settings under ``schema``: the packaged recipes.toml, then the schema
    directory's own (if it has one) over it. A typo, a bad value or a table naming no subject or
    task of the schema is a :class:`SchemaError` naming the file."""
    layers = [(_packaged(), f"attrret/classifiers/{RECIPES_FILE}", False)]
    if schema.directory is not None and (path := Path(schema.directory) / RECIPES_FILE).is_file():
        try:
            layers.append((tomllib.loads(path.read_text(encoding="utf-8")), str(path), True))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise SchemaError(f"{path}: cannot read: {exc}") from None
    subjects = {g.subject for g in schema.tasks}
    tasks = {g.task: g.subject for g in schema.tasks}
    family_of = {g.task: f"{g.subject}.{g.family}" for g in schema.tasks if g.family}  # yes/no group -> its multi-label group
    merged: dict[str, dict] = {"defaults": {}, "subject": {}, "task": {}}  # table by table, the later file winning
    for data, where, strict in layers:
        unknown = sorted(set(data) - set(merged) - ({"trainable_blocks"} if not strict else set()))
        if unknown:
            raise SchemaError(f"{where}: unknown tables {unknown}; use [defaults], [subject.<subject>], [task.\"<task>\"]")
        merged["defaults"].update(_checked(data.get("defaults", {}), f"{where}: [defaults]"))
        for kind, known, label in (("subject", subjects, "[subject.{}]"), ("task", {*tasks, *family_of.values()}, '[task."{}"]')):
            tables = data.get(kind, {})
            if not isinstance(tables, dict):
                raise SchemaError(f"{where}: {kind} must be tables, e.g. {label.format('<name>')}")
            for name, table in tables.items():
                if strict and name not in known:
                    raise SchemaError(f"{where}: {label.format(name)}: no such {kind} in the schema ({', '.join(sorted(known))})")
                merged[kind].setdefault(name, {}).update(_checked(table, f"{where}: {label.format(name)}"))
    return TaskRecipes({t: TaskRecipe(**{**merged["defaults"], **merged["subject"].get(s, {}),
                                         **merged["task"].get(family_of.get(t, ""), {}), **merged["task"].get(t, {})})
                        for t, s in tasks.items()}, tuple(w for _, w, _ in layers))


def _packaged() -> dict:
    return tomllib.loads(resources.files(__package__).joinpath(RECIPES_FILE).read_text(encoding="utf-8"))


def family_trainable() -> dict[str, int | None]:
    """``--trainable-blocks`` per trunk family when not given (recipes.toml ``[trainable_blocks]``);
    None: a third of the trunk's blocks."""
    return {family: None if n == "third" else int(n) for family, n in _packaged()["trainable_blocks"].items()}


def default_trainable_blocks(family: str, num_blocks: int) -> int:
    """The blocks a trunk of ``family`` with ``num_blocks`` blocks trains by default: its
    family's setting (a family not listed: a third), at least one, at most every block."""
    n = family_trainable().get(family)
    return min(max(1, round(num_blocks / 3)) if n is None else n, num_blocks)


def _checked(table: object, where: str) -> dict:
    """A table's settings, checked: a typo or a bad value is an error naming the file and the
    table, not a default silently used."""
    if not isinstance(table, dict):
        raise SchemaError(f"{where}: must be a table of settings")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise SchemaError(f"{where}: unknown settings {unknown}; known: {sorted(_KEYS)}")
    out = dict(table)
    if "photometric" in out and not isinstance(out["photometric"], bool):
        raise SchemaError(f"{where}: photometric must be true or false, got {out['photometric']!r}")
    if "input" in out:
        try:
            out["input"] = parse_hw(out["input"])
        except ValueError as exc:
            raise SchemaError(f"{where}: input: {exc}") from None
    if "crop" in out and out["crop"] not in CROPS:
        raise SchemaError(f"{where}: crop must be one of {', '.join(CROPS)}, got {out['crop']!r}")
    if "epochs" in out and not (isinstance(out["epochs"], int) and not isinstance(out["epochs"], bool) and out["epochs"] >= 1):
        raise SchemaError(f"{where}: epochs must be a whole number >= 1, got {out['epochs']!r}")
    if "lr" in out:
        lr = out["lr"]
        if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and lr > 0):
            raise SchemaError(f"{where}: lr must be a finite number > 0, got {lr!r}")
        out["lr"] = float(lr)
    return out


@dataclass(frozen=True)
class MemberRecipe:
    """One ensemble member: its name (``""``: the workdir's own ``models/``) and how it differs
    from a plain ``attrret train`` (an input scale for now)."""

    name: str = ""
    input_scale: float = 1.0


#: Recipes by name. ``default`` is one member at the recipes' input sizes; ``accurate`` adds a member at
#: 1.25x (measured on pa100k-mini by bench/accuracy.py's ensemble row); ``fast`` is one member at
#: 0.75x (about half the pixels, for quick looks and small machines).
RECIPES: dict[str, tuple[MemberRecipe, ...]] = {
    "fast": (MemberRecipe("", 0.75),),
    "default": (MemberRecipe(""),),
    "accurate": (MemberRecipe(""), MemberRecipe("x1.25", 1.25)),
}
DEFAULT_RECIPE = "default"


def member_workdir(workdir: str | Path, member: MemberRecipe) -> Path:
    """Where ``member`` trains: the workdir itself for the first member, else ``W/members/NAME``."""
    return Path(workdir) / MEMBERS_DIR / member.name if member.name else Path(workdir)


def recipe_configs(config, recipe: str) -> list:
    """One :class:`attrret.classifiers.train.TrainConfig` per member of ``recipe``, derived from
    ``config`` (its workdir and input scale replaced per member)."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    return [dataclasses.replace(config, workdir=str(member_workdir(config.workdir, m)), input_scale=m.input_scale)
            for m in RECIPES[recipe]]
