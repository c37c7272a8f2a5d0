"""``attrret parse``: captions in, one JSON object per caption out (JSON Lines)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from attrret.cli.options import SchemaDir, WrappedHelp, choice, resolve_schema
from attrret.parser.fuzzy import DEFAULT_FUZZY_CUTOFF
from attrret.parser.caption_files import FORMATS


InputFormat = choice("InputFormat", FORMATS)


def register(app: typer.Typer) -> None:
    """Add this module's commands to app."""
    app.command("parse", cls=WrappedHelp)(parse)


def parse(
    input: Annotated[str, typer.Argument(metavar="INPUT", help="Captions: .txt (one per line), .jsonl (key 'caption' or 'text'), a Track-2 label file, or - for stdin.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write JSON Lines here (atomically) instead of stdout.")] = None,
    code: Annotated[bool, typer.Option("--code", help="Add 'code21' (pedestrians, ? = unknown bit) or 'attribute' (vehicles).")] = False,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Warn about bad lines and parse the rest instead of stopping.")] = False,
    fmt: Annotated[InputFormat, typer.Option("--format", help="Input format (auto: detected from the input).")] = InputFormat.auto,
    fuzzy_cutoff: Annotated[float, typer.Option("--fuzzy-cutoff", min=1, max=100, help="Minimum rapidfuzz ratio for a misspelt word.")] = DEFAULT_FUZZY_CUTOFF,
    schema_dir: SchemaDir = None,
) -> None:
    """Parse captions into attribute values: stated, implied by the Track-2 grammar, or unknown."""
    import json

    from attrret.errors import InputError
    from attrret.gcpause import gc_paused
    from attrret.io import atomic_write_text, refuse_overwriting_inputs
    from attrret.parser import CaptionParser
    from attrret.parser.export import query_record
    from attrret.parser.caption_files import STDIN_NAME, read_captions

    fmt = fmt.value
    skipped = 0

    def warn(err: InputError) -> None:
        nonlocal skipped
        skipped += 1
        print(f"attrret: warning: skipped {err}", file=sys.stderr)

    schema = resolve_schema(schema_dir)
    refuse_overwriting_inputs({"--output": output}, {"INPUT": None if input == "-" else input})
    if input == "-":
        lines, _ = read_captions(STDIN_NAME, fmt=fmt, skip_bad=skip_bad, on_skip=warn, data=sys.stdin.buffer.read(), schema=schema)
    else:
        lines, _ = read_captions(input, fmt=fmt, skip_bad=skip_bad, on_skip=warn, schema=schema)

    parser = CaptionParser(schema, fuzzy_cutoff=fuzzy_cutoff)
    queries = parser.parse_many(ln.caption for ln in lines)
    with gc_paused():  # one JSON object per caption, no cycles (attrret.gcpause)
        text = "".join(json.dumps(query_record(q, schema, with_code=code), ensure_ascii=False) + "\n" for q in queries)
    if output is None:
        # UTF-8 whatever the locale: JSON Lines are UTF-8 by definition (LC_ALL=C would make
        # sys.stdout ASCII and fail on the first accented caption).
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.buffer.flush()
    else:
        atomic_write_text(output, text)

    kinds = {"pedestrian": 0, "vehicle": 0, None: 0}
    for q in queries:
        kinds[q.kind] += 1
    n_unmatched = sum(1 for q in queries if q.unmatched)
    n_fuzzy = sum(1 for q in queries for s in q.spans if s.fuzzy)
    n_unsupported = sum(1 for q in queries if q.unsupported)
    n_sets = sum(1 for q in queries if q.negated or q.either or q.any_of)
    print(
        f"attrret parse: {len(queries)} captions read (pedestrian {kinds['pedestrian']}, vehicle {kinds['vehicle']}, "
        f"no kind {kinds[None]}); {n_unmatched} with unmatched words; {n_fuzzy} fuzzy matches; "
        f"{n_sets} with set constraints; {n_unsupported} with unsupported constructs; {skipped} bad lines skipped"
        + (f"; wrote {output}" if output is not None else ""),
        file=sys.stderr,
    )
