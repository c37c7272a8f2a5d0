"""``attrret index``: commands on probability indexes (``merge``: the shards of a sharded predict)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from attrret.cli.options import SchemaDir, WrappedHelp, resolve_schema

index_app = typer.Typer(help="Probability indexes: merge the shards of a sharded attrret predict.", no_args_is_help=True)


@index_app.command("merge", cls=WrappedHelp)
def merge(
    shards: Annotated[Optional[list[Path]], typer.Argument(metavar="SHARD...", help="Shard folders from attrret predict --shard I/N (default: every OUT.shard-I-of-N beside OUT).", show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Index directory to write (created, or an attrret index to replace).")] = Path("attrret-work/index"),
    remove_shards: Annotated[bool, typer.Option("--remove-shards/--keep-shards", help="Delete the shard folders once the index is written.")] = False,
    schema_dir: SchemaDir = None,
) -> None:
    """Write one index from all N shards of a run: byte-identical to a single attrret predict.

    Refuses missing, repeated or foreign shards (other N, models, settings or gallery).
    """
    from attrret.io import refuse_overwriting_inputs
    from attrret.retrieval.shards import merge_shard_dirs

    schema = resolve_schema(schema_dir)
    refuse_overwriting_inputs({"--out": out}, {f"shard {p}": p for p in shards or ()})
    s = merge_shard_dirs(shards or (), out, remove=remove_shards, schema=schema)
    typer.echo(f"{s.path}: {s.total} images ({s.predicted} predicted, {s.reused} reused, {s.removed} removed), tasks: {', '.join(s.tasks)}")


def register(app: typer.Typer) -> None:
    """Add ``attrret index`` to the main app."""
    app.add_typer(index_app, name="index")
