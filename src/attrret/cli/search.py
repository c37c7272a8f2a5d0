"""``attrret search`` and ``attrret attributes``: thin commands over attrret.search and attrret.attributes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from attrret.cli.options import PrecisionOption, SchemaDir, WrappedHelp, choice, precision_value, resolve_schema
from attrret.ensemble import TTA_DEFAULT
from attrret.schema import SUBJECTS


Kind = choice("Kind", SUBJECTS)


def _queries(args: list[str]) -> list[str]:
    """The queries of the arguments; ``-`` reads one query per line from stdin (blank lines skipped)."""
    out: list[str] = []
    for a in args:
        if a == "-":
            out += [line.rstrip("\r\n") for line in sys.stdin if line.strip()]
        else:
            out.append(a)
    return out


def _fmt_values(values: dict) -> str:
    return ", ".join(f"{g}={'|'.join(v) if isinstance(v, list) else v}" for g, v in values.items())


def _label(result) -> str:
    q = result.query
    return q["caption"] if "caption" in q else f"like {q['like']}"


def _print_result(result, echo=typer.echo) -> None:
    q = result.query
    if "like" in q:
        echo(f"like: {q['like']!r} ({q['kind']}), comparing {', '.join(q['groups']) or 'no group'}"
             + (f"; text {q['text']!r} overrides its groups" if q["text"] else ""))
    else:
        echo(f"query: {q['caption']!r} ({q['kind'] or 'no kind'})")
        for label, key in (("stated", "stated"), ("negated", "negated"), ("either", "either")):
            if q[key]:
                echo(f"  {label}: {_fmt_values(q[key])}")
        if q["unknown"]:
            echo(f"  unknown: {', '.join(q['unknown'])}")
    for w in result.warnings:
        print(f"attrret: warning: {_label(result)!r}: {w}", file=sys.stderr)
    if not result.hits:
        echo("  no results")
        return
    with_meta = any(h.meta for h in result.hits)
    rows = [("rank", "image", "score", "matched", "conflicted", *(("meta",) if with_meta else ()), "predicted")]
    for h in result.hits:
        meta = (" ".join(f"{c}={v}" for c, v in h.meta.items() if v is not None) or "-",) if with_meta else ()
        rows.append((str(h.rank), h.name, f"{h.score:.4f}", ",".join(h.matched) or "-", ",".join(h.conflicted) or "-",
                     *meta, _fmt_values(h.predicted) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        echo("  " + "  ".join(c.ljust(w) if i != 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) + "  " + r[-1])


def search(
    queries: Annotated[Optional[list[str]], typer.Argument(metavar="QUERY", help="Queries, e.g. 'man with glasses, no hat'; '-' reads one per line from stdin.", show_default=False)] = None,
    index: Annotated[Path, typer.Option("--index", help="Index directory from attrret predict (no models needed).")] = Path("attrret-work/index"),
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=1000, help="Results per query.")] = 10,
    kind: Annotated[Optional[Kind], typer.Option(help="Keep only queries of this kind (others get no results and a warning).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per query and line, as the Python API's SearchResult.to_json().")] = False,
    camera: Annotated[Optional[list[str]], typer.Option("--camera", metavar="CAM[,CAM...]", help="Only images from these cameras (metadata from attrret predict --meta).", rich_help_panel="Filters")] = None,
    after: Annotated[Optional[str], typer.Option("--after", metavar="TIME", help="Only images at or after this ISO 8601 time (without a zone: UTC).", rich_help_panel="Filters")] = None,
    before: Annotated[Optional[str], typer.Option("--before", metavar="TIME", help="Only images at or before this time.", rich_help_panel="Filters")] = None,
    where: Annotated[Optional[list[str]], typer.Option("--where", metavar="COL=VALUE[,VALUE...]", help="Only images whose metadata column has one of these values (e.g. track=17); repeat for several columns.", rich_help_panel="Filters")] = None,
    group_by: Annotated[Optional[str], typer.Option("--group-by", metavar="COLUMN", help="The best image per value of this metadata column (e.g. track).", rich_help_panel="Filters")] = None,
    like: Annotated[Optional[str], typer.Option("--like", metavar="NAME|IMAGE", help="Find similar: rank by closeness to this index image (or image file, described by --workdir's models); a QUERY given too overrides the groups it states.", rich_help_panel="Find similar")] = None,
    groups: Annotated[Optional[str], typer.Option("--groups", metavar="G[,G...]", help="With --like: compare only these groups (default: every group of the example's kind).", rich_help_panel="Find similar")] = None,
    workdir: Annotated[Optional[Path], typer.Option("--workdir", "-w", help="With --like IMAGE: the workdir whose models built the index.", rich_help_panel="Find similar")] = None,
    schema_dir: SchemaDir = None,
) -> None:
    """Search the gallery for each query: its parse, then the ranked images with matched and conflicted groups.

    Filter by camera, time and metadata columns, group by track, or find images similar to one (--like).
    """
    from attrret.errors import OptionError
    from attrret.retrieval.filters import parse_filters
    from attrret.retrieval.ranker import RankOptions
    from attrret.search import Searcher

    texts = _queries(queries or [])
    if not texts and like is None:
        raise typer.BadParameter("no queries (give them as arguments, or '-' with one per line on stdin, or --like NAME)")
    if like is not None and len(texts) > 1:
        raise typer.BadParameter("--like takes at most one QUERY (whose stated groups override the example's)")
    if like is None and (groups or workdir):
        raise typer.BadParameter("--groups and --workdir are read only with --like")
    try:
        filters = parse_filters(camera, after, before, where or ())
    except OptionError as exc:
        raise typer.BadParameter(str(exc)) from None
    # A few queries in a fresh process: the NumPy scan answers before numba's kernels would
    # have loaded (~1 s); many queries: the numba scan (results are identical).
    searcher = Searcher.open(index, options=RankOptions(backend="numpy" if len(texts) <= 64 else "numba"),
                             schema=resolve_schema(schema_dir))
    try:
        if like is not None:
            names = [g.strip() for g in groups.split(",") if g.strip()] if groups else None
            example = like if like in set(searcher.names) else Path(like)  # an index image, else an image file
            results = [searcher.like(example, k=k, groups=names, filters=filters, text=texts[0] if texts else None,
                                     group_by=group_by, workdir=workdir)]
        else:
            results = searcher.search_many(texts, k=k, kind=kind.value if kind else None, filters=filters, group_by=group_by)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    for j, r in enumerate(results):
        if as_json:
            typer.echo(json.dumps(r.to_json(), ensure_ascii=False))
            for w in r.warnings:
                print(f"attrret: warning: {_label(r)!r}: {w}", file=sys.stderr)
        else:
            if j:
                typer.echo("")
            _print_result(r)


def attributes(
    images: Annotated[Optional[list[Path]], typer.Argument(metavar="IMAGE_OR_DIR", help="Images or folders to run the models on directly (with --workdir); without them, the records of every image in --index.", show_default=False)] = None,
    index: Annotated[Path, typer.Option("--index", help="Index directory from attrret predict (used when no IMAGES are given).")] = Path("attrret-work/index"),
    workdir: Annotated[Path, typer.Option("--workdir", "-w", help="Workdir with W/models/<task>/model.pt (used with IMAGES).")] = Path("attrret-work"),
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output file: .jsonl, .csv or .parquet (default: JSON lines on stdout).")] = None,
    tta: Annotated[bool, typer.Option("--tta-flip/--no-tta", help="With IMAGES: average with the mirrored image (predict's --tta flip).")] = TTA_DEFAULT == "flip",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    precision: PrecisionOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    schema_dir: SchemaDir = None,
) -> None:
    """Per-image attributes: kind with its router probability, and per group the predicted class, its probability and the distribution."""
    from attrret.attributes import FORMATS, index_records, predict_records, write_records
    from attrret.io import refuse_overwriting_inputs

    schema = resolve_schema(schema_dir)
    if out is not None and out.suffix.lower() not in FORMATS:
        raise typer.BadParameter(f"--out {out}: use a {', '.join(FORMATS)} file")
    if images:
        from attrret.classifiers.engine import Ensemble
        from attrret.retrieval.indexer import find_members, list_gallery

        if out is not None:
            refuse_overwriting_inputs({"--out": out}, {f"IMAGE {i + 1}": p for i, p in enumerate(images)})
        gallery = [item for src in images for item in list_gallery(src, schema=schema)]
        ensemble = Ensemble.open(find_members(workdir, schema=schema), tta="flip" if tta else "none", device=device,
                                 precision=precision_value(precision))
        records = predict_records(gallery, ensemble, schema, progress=not quiet)
    else:
        from attrret.retrieval.index import open_index

        if out is not None:
            refuse_overwriting_inputs({"--out": out}, {"--index header": index / "header.json"})
        records = index_records(open_index(index, schema), schema)
    if out is None:
        for r in records:
            typer.echo(json.dumps(r, ensure_ascii=False))
        return
    n = write_records(out, records, schema)
    print(f"{n} image records -> {out}", file=sys.stderr)


def register(app: typer.Typer) -> None:
    """Add ``search`` and ``attributes`` to the app."""
    app.command("search", cls=WrappedHelp)(search)
    app.command("attributes", cls=WrappedHelp)(attributes)
