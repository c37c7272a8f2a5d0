"""The CLIP baseline end to end: records -> trained dual encoder -> ranked submission.

Public API (the CLI and ``bench/quality.py`` call these):

- ``train_clip(records, config) -> TrainedClip``
- ``TrainedClip.embed_images(paths) / embed_texts(captions) / rank(captions, paths, k)``
- ``save_clip(path, trained)`` / ``load_clip(path) -> TrainedClip``
- ``resolve_eval_data(data) -> (train records, EvalSet)``: the same split attrret's classifiers use
- ``run_clip_baseline(data, out, config) -> ClipRun``: all of it, writing checkpoint,
  submission and metrics atomically.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from attrret.baseline.config import ClipConfig
from attrret.baseline.features import front_features
from attrret.baseline.model import ClipModel, build_model, parse_text_spec
from attrret.baseline.tokens import CaptionTokenizer
from attrret.baseline.contrastive import TrainHistory, train_contrastive
from attrret.classifiers.runtime import autocast, tune_malloc
from attrret.data.records import Record, load_records
from attrret.data.splits import PA100K_MINI_HOLDOUT, holdout_split
from attrret.data.track2 import read_submission, read_test_text, write_submission
from attrret.errors import CheckpointError, InputError
from attrret.io import atomic_path, atomic_write_text
from attrret.schema import Schema, load_schema

__all__ = [
    "ClipRun",
    "EvalSet",
    "TrainedClip",
    "attribute_key",
    "load_clip",
    "resolve_eval_data",
    "run_clip_baseline",
    "save_clip",
    "train_clip",
]

CHECKPOINT_FORMAT = "attrret.baseline.clip/1"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def attribute_key(record: Record) -> tuple:
    """Two captions are 'equal' for the KL-positives loss when kind and known values are equal."""
    return (record.kind, tuple(sorted(record.values.items())))


@dataclass
class TrainedClip:
    """A trained (or loaded) CLIP baseline, ready to embed and rank."""

    model: ClipModel
    tokenizer: CaptionTokenizer
    config: ClipConfig
    history: TrainHistory | None = None

    @torch.no_grad()
    def embed_images(self, paths: Sequence[Path], *, wheres: Sequence[str | None] | None = None, batch_size: int = 64) -> torch.Tensor:
        """``float32[N, D]`` unit image embeddings; with ``tta_flip`` the mean of image and mirror."""
        self.model.eval()
        out = []
        for start in range(0, len(paths), batch_size):
            sl = slice(start, start + batch_size)
            feats = front_features(self.model, paths[sl], flips=self.config.tta_flip,
                                   batch_size=batch_size, wheres=wheres[sl] if wheres else None, precision=self.config.precision)
            with autocast(torch.device("cpu"), self.config.precision):
                views = [self.model.encode_image(feats[:, v].float()).float() for v in range(feats.shape[1])]
            out.append(torch.nn.functional.normalize(torch.stack(views).mean(0), dim=-1))
        return torch.cat(out) if out else torch.empty(0, self.config.embed_dim)

    @torch.no_grad()
    def embed_texts(self, captions: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        self.model.eval()
        with autocast(torch.device("cpu"), self.config.precision):
            out = [self.model.encode_text(self.tokenizer(captions[i : i + batch_size])).float() for i in range(0, len(captions), batch_size)]
        return torch.cat(out) if out else torch.empty(0, self.config.embed_dim)

    def rank(self, captions: Sequence[str], paths: Sequence[Path], k: int = 10, **kw) -> list[list[int]]:
        """Top-``k`` gallery indices per caption by cosine similarity (exact, blocked)."""
        return rank_by_cosine(self.embed_texts(captions), self.embed_images(paths, **kw), k)


def rank_by_cosine(text: torch.Tensor, images: torch.Tensor, k: int = 10, block: int = 4096) -> list[list[int]]:
    """Exact top-``k`` of ``text @ images.T`` per row, a block of queries at a time."""
    k = min(k, images.shape[0])
    out: list[list[int]] = []
    for start in range(0, text.shape[0], block):
        sims = text[start : start + block] @ images.t()
        out.extend(sims.topk(k, dim=1).indices.tolist())
    return out


def _set_threads(config: ClipConfig) -> None:
    if config.threads:
        torch.set_num_threads(config.threads)


def train_clip(
    records: Sequence[Record],
    config: ClipConfig = ClipConfig(),
    *,
    log: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TrainedClip:
    """Train the dual encoder on ``records`` (image + caption pairs) within ``config``'s budget.

    The wall-clock budget starts here and includes computing the cached front features, the
    same accounting as a from-scratch classifier run that caches its trunk. At least one
    training step always runs (see :func:`train_contrastive`): when the caching alone uses the
    budget up, the model is trained for exactly one step and a warning is logged. ``clock`` is
    the time source (read here before and after caching, then by the training loop); tests pass
    a fake one to make the budget independent of the machine's speed.
    """
    if len(records) < 2:
        raise InputError(f"the CLIP baseline needs at least 2 training pairs, got {len(records)}")
    _set_threads(config)
    tune_malloc()
    started = clock()
    say = log or (lambda _msg: None)
    captions = [r.caption for r in records]
    if config.text_pretrained:
        arch, _ = parse_text_spec(config.text_pretrained)
        tokenizer = CaptionTokenizer(config.context_length, arch=arch)
    else:
        tokenizer = CaptionTokenizer.fit(captions, config.context_length)
    model = build_model(config, tokenizer.vocab_size)
    if config.text_pretrained:
        tokenizer = CaptionTokenizer(model.text.context_length, arch=tokenizer.arch)
    say(f"caching frozen front features of {len(records)} images ({config.image_size}px, with flips)")
    feats = front_features(model, [r.path for r in records], flips=config.flip_train,
                           wheres=[r.where for r in records], precision=config.precision)
    cache_seconds = clock() - started
    say(f"cached {tuple(feats.shape)} in {cache_seconds:.1f}s; training")
    tokens = tokenizer(captions)
    trained, history = train_contrastive(
        model, feats, tokens, [attribute_key(r) for r in records], config, started=started,
        progress=lambda epoch, loss: say(f"epoch {epoch}: loss {loss:.4f}"),
        clock=clock,
    )
    if config.time_budget and cache_seconds >= config.time_budget:  # then train_contrastive ran one step
        say(f"warning: the time budget was spent caching the front features ({cache_seconds:.1f}s of "
            f"{config.time_budget:g}s); trained for {history.steps} step only")
    history = TrainHistory(**{**asdict(history), "extra": {"cache_seconds": cache_seconds, "train_pairs": len(records)}})
    return TrainedClip(trained, tokenizer, config, history)


def save_clip(path: str | Path, trained: TrainedClip, schema: Schema | None = None) -> None:
    """A self-describing checkpoint, loadable with ``torch.load(weights_only=True)``; it records
    ``schema`` (None: the packaged one), the schema its training labels were read with."""
    schema = schema or load_schema()
    doc = {
        "format": CHECKPOINT_FORMAT,
        "config": trained.config.to_dict(),
        "schema_fingerprint": schema.fingerprint,
        "schema_source": schema.source,
        "kept_ids": list(trained.tokenizer.kept_ids) if trained.tokenizer.kept_ids is not None else None,
        "context_length": trained.tokenizer.context_length,
        "arch": trained.tokenizer.arch,
        "state_dict": trained.model.state_dict(),
        "history": asdict(trained.history) if trained.history else None,
    }
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(doc, tmp)


def load_clip(path: str | Path, schema: Schema | None = None) -> TrainedClip:
    """Load a checkpoint written by ``save_clip`` under ``schema`` (None: the packaged one);
    anything else, or one of another schema, is a clear ``CheckpointError``."""
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except Exception as exc:
        raise CheckpointError(f"{path}: not a CLIP baseline checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a CLIP baseline checkpoint (format {doc.get('format') if isinstance(doc, dict) else None!r})")
    fingerprint = doc.get("schema_fingerprint")
    if not isinstance(fingerprint, str):
        raise CheckpointError(f"{path}: not a CLIP baseline checkpoint (no schema fingerprint)")
    (schema or load_schema()).check_made_with(fingerprint, doc.get("schema_source"), f"{path}: CLIP baseline",
                                              "use the schema it was trained with, or retrain it")
    config = ClipConfig.from_dict(doc["config"])
    tokenizer = CaptionTokenizer(doc["context_length"], doc["kept_ids"], arch=doc.get("arch"))
    model = build_model(config, tokenizer.vocab_size, load_weights=False)
    model.load_state_dict(doc["state_dict"])
    model.eval()
    return TrainedClip(model, tokenizer, config, None)


@dataclass(frozen=True)
class EvalSet:
    """What to rank: a gallery, the captions to query it with, and labels when known."""

    name: str
    gallery: tuple[Path, ...]
    queries: tuple[str, ...]
    records: tuple[Record, ...] | None  # gallery records (labels) when the set has them
    gt: Path | None = None  # the organisers' test_gt.txt, when present

    @property
    def image_names(self) -> list[str]:
        return [p.name for p in self.gallery]


def resolve_eval_data(data: str | Path, schema: Schema | None = None) -> tuple[list[Record], EvalSet]:
    """The training records and the evaluation set for ``data``, split as attrret's classifiers split it.

    - ``labels.txt`` + ``images/`` (pa100k-mini): the fixed ``holdout_split`` (1,200 / 300 for
      pa100k-mini; smaller sets hold out a fifth); queries are the held records' captions, the
      gallery their images;
    - a Track-2 folder: train on ``train``; the gallery is ``test`` (its labelled records when
      ``test_label.txt`` exists, else every image in ``test/test_images``), the queries
      ``test/test_text.txt`` (else the test records' captions).

    Labels are read with ``schema`` (None: the packaged one).
    """
    data = Path(data)
    if (data / "labels.txt").is_file() or data.is_file():
        records = load_records(data, "all", schema=schema)
        train, held = holdout_split(records, min(PA100K_MINI_HOLDOUT, max(1, len(records) // 5)))
        return train, EvalSet("held", tuple(r.path for r in held), tuple(r.caption for r in held), tuple(held))
    train = load_records(data, "train", schema=schema)
    test_dir = data / "test"
    text_file = test_dir / "test_text.txt"
    if (test_dir / "test_label.txt").is_file():
        test = load_records(data, "test", schema=schema)
        queries = read_test_text(text_file) if text_file.is_file() else [r.caption for r in test]
        gt = test_dir / "test_gt.txt"
        return train, EvalSet("test", tuple(r.path for r in test), tuple(queries), tuple(test), gt if gt.is_file() else None)
    image_dir = test_dir / "test_images"
    if not text_file.is_file() or not image_dir.is_dir():
        raise InputError("no test set to rank: expected test/test_label.txt, or test/test_text.txt + test/test_images/", data)
    gallery = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not gallery:
        raise InputError("no images", image_dir)
    gt = test_dir / "test_gt.txt"
    return train, EvalSet("test", tuple(gallery), tuple(read_test_text(text_file)), None, gt if gt.is_file() else None)


def score_submission(submission: Path, evalset: EvalSet, schema: Schema | None = None) -> dict | None:
    """Official / sound mAP@10 and R@K of a submission, with attrret's own metrics, when relevance is known.

    Relevance: ``test_gt.txt`` when present, else the gallery labels by the Track-2 rules
    (query j is the caption of gallery image j, as in the held split); ``None`` without either.
    """
    from attrret.retrieval.evaluate import evaluate_submission
    from attrret.retrieval.metrics import LabelRelevance, evaluate_lists, label_keys

    if evalset.gt is not None:
        scores = evaluate_submission(submission, gt=evalset.gt, schema=schema)
    elif evalset.records is not None and [r.caption for r in evalset.records] == list(evalset.queries):
        recs = evalset.records
        if any(r.kind == "vehicle" and len(r.values) < 3 for r in recs):
            return None  # incomplete vehicle labels cannot decide relevance
        keys = label_keys([r.values for r in recs], [r.kind for r in recs], schema or load_schema())
        rel = LabelRelevance([r.image for r in recs], [r.kind for r in recs], [r.caption for r in recs], keys)
        scores = evaluate_lists([names for _, names in read_submission(submission)], rel, [r.kind for r in recs])
    else:
        return None
    return {kind: s.to_json() for kind, s in scores.items()}


@dataclass(frozen=True)
class ClipRun:
    """Where a ``run_clip_baseline`` call wrote its outputs, and its metrics document."""

    checkpoint: Path
    submission: Path
    metrics_file: Path
    metrics: dict


def run_clip_baseline(
    data: str | Path,
    out: str | Path,
    config: ClipConfig = ClipConfig(),
    *,
    submission: str | Path | None = None,
    k: int = 10,
    log: Callable[[str], None] | None = None,
    schema: Schema | None = None,
) -> ClipRun:
    """Train on ``data``'s training split, rank its evaluation set, write everything under ``out``.

    Writes ``out/clip.pt`` (checkpoint), ``out/submission.json`` (Track-2 format, caption
    order) and ``out/metrics.json`` (config, training history, timings, sizes, and the scores
    when relevance is known: ``test_gt.txt`` or the held split's labels). ``schema`` (None:
    the packaged one) reads the labels and is recorded in the checkpoint.
    """
    out = Path(out)
    say = log or (lambda _msg: None)
    train, evalset = resolve_eval_data(data, schema)
    say(f"training on {len(train)} pairs; ranking {len(evalset.queries)} captions over {len(evalset.gallery)} images")
    trained = train_clip(train, config, log=say)
    t0 = time.monotonic()
    wheres = [r.where for r in evalset.records] if evalset.records else None
    top = trained.rank(list(evalset.queries), list(evalset.gallery), k, wheres=wheres)
    rank_seconds = time.monotonic() - t0
    names = evalset.image_names
    sub_path = Path(submission) if submission else out / "submission.json"
    write_submission(sub_path, [(q, [names[i] for i in row]) for q, row in zip(evalset.queries, top)])
    ckpt = out / "clip.pt"
    save_clip(ckpt, trained, schema)
    h = trained.history
    metrics = {
        "method": "clip-baseline",
        "data": str(data),
        "eval_set": evalset.name,
        "train_pairs": len(train),
        "queries": len(evalset.queries),
        "gallery": len(evalset.gallery),
        "config": config.to_dict(),
        "history": asdict(h) if h else None,
        "rank_seconds": rank_seconds,
        "scores": score_submission(sub_path, evalset, schema),
    }
    metrics_file = out / "metrics.json"
    atomic_write_text(metrics_file, json.dumps(metrics, indent=2) + "\n")
    return ClipRun(ckpt, sub_path, metrics_file, metrics)
