"""``attrret train``: build a TrainConfig from the options, call train_tasks, print the table."""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path
from typing import Annotated, Optional

import typer

from attrret.cli.options import PrecisionOption, SchemaDir, WrappedHelp, choice, precision_value, resolve_schema, size_option
from attrret.geometry import CROPS, hw_label
from attrret.schema import load_schema

Crop = choice("Crop", tuple(CROPS))
# The library's choices (classifiers.train._BALANCES / _TAIL_NORMS), restated because importing
# them imports torch; tests/cli/test_flags.py keeps them equal.
TailNorm = choice("TailNorm", ("frozen", "batch"))
Balance = choice("Balance", ("none", "weighted", "sqrt"))
# classifiers.recipes.RECIPES, restated for the same reason (tests/cli/test_flags.py keeps them equal)
Recipe = choice("Recipe", ("fast", "default", "accurate"))


def _table(results) -> str:
    rows = ["| task | train | val | best epoch | val acc | val mA | holdout acc | holdout mA | img/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        h = r.holdout
        hold = f"{h['accuracy']:.3f} | {h['mA']:.3f}" if h else "- | -"
        rows.append(f"| {r.task} | {r.n_train} | {r.n_val} | {r.best_epoch + 1} | {r.val['accuracy']:.3f} | "
                    f"{r.val['mA']:.3f} | {hold} | {r.train_images_per_s:.0f} |")
    if len(results) > 1:
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        hs = [r.holdout for r in results if r.holdout]
        hold = f"{mean([h['accuracy'] for h in hs]):.3f} | {mean([h['mA'] for h in hs]):.3f}" if hs else "- | -"
        rows.append(f"| **mean** | | | | {mean([r.val['accuracy'] for r in results]):.3f} | "
                    f"{mean([r.val['mA'] for r in results]):.3f} | {hold} | |")
    return "\n".join(rows)


@cache
def _subject_recipes() -> dict:
    """One task's recipe per subject (the packaged recipes.toml): the defaults the help quotes,
    read once for the three help texts below."""
    from attrret.classifiers.recipes import load_recipes

    schema = load_schema()
    recipes = load_recipes(schema)
    return {g.subject: recipes.task(g.task) for g in schema.tasks}


def _schema_inputs() -> str:
    """The default input per subject (recipes.toml), for the help."""
    return ", ".join(f"{subject} {hw_label(r.input) if r.input else 'native'}" for subject, r in _subject_recipes().items())


def _schema_epochs() -> str:
    """The default epochs per subject (recipes.toml), for the help."""
    return ", ".join(f"{subject} {r.epochs}" for subject, r in _subject_recipes().items())


def _schema_lrs() -> str:
    """The default peak learning rate per subject (recipes.toml), for the help."""
    return ", ".join(f"{subject} {r.lr:g}" for subject, r in _subject_recipes().items())


def train(
    task: Annotated[str, typer.Option("--task", "-t", help="Task (vehicle.color, pedestrian.hat, router, ...), pedestrian, vehicle or all.")],
    data: Annotated[list[Path], typer.Option("--data", "-d", help="Track-2 folder or labels.txt + images/ folder; repeat to train on several at once (each split on its own, each task learning from every dataset that labels it, sampled by --data-alpha).")],
    workdir: Annotated[Path, typer.Option("--workdir", "-w", help="Models go to W/models/<task>/, the trunk cache to W/cache/.")] = Path("attrret-work"),
    backbone: Annotated[str, typer.Option(help="tf_efficientnet_lite0, timm:<name>, open_clip:<arch>/<pretrained> or path/to/model.pt.")] = "tf_efficientnet_lite0",
    weights: Annotated[Optional[Path], typer.Option(help="Trunk weights: a state-dict file for a timm:<name> backbone (offline weights).")] = None,
    pretrained: Annotated[bool, typer.Option("--pretrained/--random-init", help="Start from pretrained weights or random init.")] = True,
    img_size: Annotated[Optional[str], typer.Option(metavar="HxW", help=f"Model input for every task: height x width in pixels (e.g. 256x128), or N for N x N. Default: each subject's input from its recipe, recipes.toml ({_schema_inputs()}).")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help=f"Training epochs for every task. Default: each task's recipe ({_schema_epochs()}).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Per process.")] = 64,
    lr: Annotated[Optional[float], typer.Option(min=0.0, help=f"Peak learning rate for every task. Default: each task's recipe ({_schema_lrs()}).")] = None,
    trainable_blocks: Annotated[Optional[int], typer.Option(min=0, help="Train the last N blocks/stages + head (default: per backbone family).")] = None,
    tail_norm: Annotated[TailNorm, typer.Option(help="BatchNorms of the trained tail: frozen keeps the pretrained statistics (1.5-2x faster); batch estimates them.")] = TailNorm.frozen,
    label_smoothing: Annotated[float, typer.Option(min=0.0, max=0.5)] = 0.1,
    balance: Annotated[Balance, typer.Option(help="Class-imbalance handling: weighted (inverse class frequency), sqrt (its square root) or none.")] = Balance.weighted,
    ema: Annotated[float, typer.Option(min=0.0, max=1.0, help="EMA decay (e.g. 0.999); 0 = off.")] = 0.0,
    calibrate: Annotated[bool, typer.Option(help="Fit each task's softmax temperature on its selection split and apply it at predict.")] = True,
    crop: Annotated[Optional[Crop], typer.Option(help="Input region of each image, for every task. Default: each task's recipe (full).")] = None,
    holdout: Annotated[int, typer.Option(min=0, help="Keep the fixed holdout_split(N, seed 0) out of training; report it.")] = 0,
    fold: Annotated[Optional[str], typer.Option(help="Select on stratified fold k of K, as k/K.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    precision: PrecisionOption = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run (skip finished tasks).")] = False,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Shared frozen-trunk cache.")] = True,
    cache_budget_gb: Annotated[float, typer.Option(min=0.0)] = 4.0,
    threads: Annotated[Optional[int], typer.Option(min=1, help="torch CPU threads.")] = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip bad label lines / missing images with a warning.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    data_alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="With several --data: each epoch draws a dataset's images in proportion to its size to this power (0.5: a dataset 16x larger is drawn 4x as often; 0: all equally; 1: by size).")] = 0.5,
    multitask: Annotated[bool, typer.Option("--multitask", help="One network per model input for all its tasks (a shared tail, one head slice each) instead of one per task: the decoupled method's ablation arm. Written as ordinary per-task models.")] = False,
    anchor_member: Annotated[bool | None, typer.Option("--anchor-member/--no-anchor-member", show_default="on with several --data", help="With several --data: also train every group the first dataset shares with another on the first dataset alone, as a second ensemble member in W/members/anchor/, with a domain gate (W/members/anchor/domain_gate.json) that weighs it per image by how much the image looks like the first dataset's. Measured on pa100k-mini + peta-train (docs/benchmarks.md): the two-dataset models alone rank pa100k-mini's held split below pa100k-mini's own models; with the gated anchor they rank above them, and PETA's cameras keep the two-dataset models.")] = None,
    recipe: Annotated[Recipe, typer.Option(help="Ensemble members to train: default (one, at the recipes' input sizes), accurate (also a member at 1.25x, in W/members/x1.25/), fast (one at 0.75x). attrret predict finds every member without flags.")] = Recipe.default,
    schema_dir: SchemaDir = None,
) -> None:
    """Train single-task attribute classifiers (partial fine-tuning over a shared cached trunk)."""
    from attrret.classifiers.recipes import recipe_configs
    from attrret.classifiers.train import TrainConfig, train_tasks
    from attrret.classifiers.train import anchor_member as train_anchor
    from attrret.classifiers.train import train_domain_gate

    schema = resolve_schema(schema_dir)
    config = TrainConfig(
        task=task, data=tuple(str(d) for d in data), workdir=str(workdir), backbone=backbone, weights=str(weights) if weights else None,
        pretrained=pretrained, img_size=size_option(img_size, "--img-size") if img_size is not None else None, epochs=epochs, batch_size=batch_size, lr=lr,
        trainable_blocks=trainable_blocks, tail_norm=tail_norm.value, label_smoothing=label_smoothing, balance=balance.value, ema=ema, calibrate=calibrate,
        crop=crop.value if crop else None,
        holdout=holdout, fold=fold, seed=seed, device=device, precision=precision_value(precision), resume=resume, cache=cache,
        cache_budget_gb=cache_budget_gb, num_threads=threads, skip_bad=skip_bad, multitask=multitask, data_alpha=data_alpha,
    )
    if img_size is not None and recipe is not Recipe.default:
        raise typer.BadParameter("--img-size trains every member at one size; a recipe scales the recipes' input sizes per member",
                                 param_hint="--recipe")
    import os

    if anchor_member and len(config.datasets) < 2:
        raise typer.BadParameter("needs several --data: the anchor member is the first dataset's own", param_hint="--anchor-member")
    if anchor_member is None:
        anchor_member = len(config.datasets) > 1
    members = recipe_configs(config, recipe.value)
    for member in members:
        if len(members) > 1 and not quiet:
            typer.echo(f"member {member.workdir} (input x{member.input_scale:g})", err=True)
        results = train_tasks(member, progress=not quiet, schema=schema)
        if int(os.environ.get("RANK", "0")) == 0:
            typer.echo(_table(results))
        if anchor_member and member is members[0]:  # one anchor, beside the default member
            anchor, specs = train_anchor(member, results, schema)
            if not quiet:
                typer.echo(f"anchor member {anchor.workdir}: {len(specs)} task(s) on {anchor.data} alone", err=True)
            results = [r for spec in specs for r in train_tasks(dataclasses.replace(anchor, task=spec), progress=not quiet, schema=schema)]
            if int(os.environ.get("RANK", "0")) == 0 and results:
                typer.echo(_table(results))
                train_domain_gate(member, [r.task for r in results], schema=schema, progress=not quiet)


def register(app: typer.Typer) -> None:
    """Add ``train`` to the app."""
    app.command("train", cls=WrappedHelp)(train)
