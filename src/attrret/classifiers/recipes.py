"""Training recipes: which ensemble members one ``attrret train`` command trains.

Why. An ensemble of the same classifiers at two input resolutions is the published method's
cheapest gain (the 3rd-place entry averaged 224 and 448 px EVA models), but asking users to
train each member into its own workdir and to list them again at predict time is how
ensembles get forgotten. A recipe names the members once, as data; ``attrret train --recipe``
trains them all, and ``attrret predict`` finds them without flags.

Where members live (what :func:`attrret.retrieval.indexer.find_members` reads):

- the first member of a recipe is the workdir's own models, ``W/models/<task>/``;
- every other member ``NAME`` trains in ``W/members/NAME/`` (``W/members/NAME/models/<task>/``,
  its own trunk cache beside them).

A member scales each subject's schema input size (``input_scale``, :func:`geometry.scale_hw`:
pedestrians 256x128 -> 320x160 at 1.25), so tall pedestrians stay tall and wide vehicles wide.
An explicit ``--img-size`` overrides the scaling (every member then trains at that size, which
makes a recipe pointless: the CLI refuses the combination).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MemberRecipe", "RECIPES", "DEFAULT_RECIPE", "MEMBERS_DIR", "DEFAULT_EPOCHS", "DEFAULT_LR", "member_workdir", "recipe_configs"]

#: Extra members train under ``W/members/<name>/``.
MEMBERS_DIR = "members"
#: How long and how fast a task trains when neither the command nor its schema group says
#: (``--epochs`` / ``--lr``, then the group's ``epochs`` / ``lr`` hints). Here, torch-free, so
#: that ``attrret --help`` and every command that runs no model can show them without torch.
DEFAULT_EPOCHS = 8
DEFAULT_LR = 1e-3


@dataclass(frozen=True)
class MemberRecipe:
    """One ensemble member: its name (``""``: the workdir's own ``models/``) and how it differs
    from a plain ``attrret train`` (an input scale for now)."""

    name: str = ""
    input_scale: float = 1.0


#: Recipes by name. ``default`` is one member at the schema's sizes; ``accurate`` adds a member at
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
