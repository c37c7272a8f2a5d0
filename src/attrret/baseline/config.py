"""The CLIP baseline's configuration: one frozen value recorded in every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

__all__ = ["ClipConfig"]


@dataclass(frozen=True)
class ClipConfig:
    """Everything that decides what the CLIP baseline learns and how it ranks.

    The image tower is the same backbone attrret's classifiers use, partially frozen the same
    way: the front (all but the last ``trainable_stages`` stages) is frozen, so its output is
    computed once per (image, flip) and cached, and only the tail, the projection and the text
    tower train. That is what makes a contrastive baseline fit a CPU budget at all.
    """

    backbone: str = "tf_efficientnet_lite0"
    pretrained: bool = True  # image tower weights from attrret's backbone factory
    image_size: int = 192  # above attrret's 160 px default: a conservative comparison (bench/quality.py)
    trainable_stages: int = 3  # last backbone blocks trained (lite0: the 1x1 head conv and the last two MBConv stages); the rest frozen, cached
    embed_dim: int = 256
    text_width: int = 192  # with 2 layers: ~0.17 s per batch of 64 on 2 CPU threads (256 x 3: ~4x that)
    text_layers: int = 2
    text_heads: int = 4
    context_length: int = 64  # longest real Track-2 caption is 55 BPE tokens + start/end
    text_pretrained: str | None = None  # "open_clip:ARCH/TAG": pretrained text tower (needs a hub or file)
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 50
    epochs: int = 40
    # Seconds of training wall time, front-feature caching included; at least one training step
    # always runs, even when the caching alone used the budget up (the run then ends after it).
    time_budget: float | None = None
    ema: bool = False
    ema_decay: float = 0.995
    tta_flip: bool = False
    kl_positives: bool = False  # captions with equal attribute values in a batch are positives (KL loss)
    flip_train: bool = True  # random horizontal flip during training (the cache holds both)
    # auto | fp32 | bf16 | fp16, as attrret's classifiers take it (runtime.resolve_precision); None: $ATTRRET_PRECISION, else auto
    precision: str | None = None
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        checks = {
            "image_size": self.image_size >= 32,
            "trainable_stages": self.trainable_stages >= 0,  # upper bound: the backbone's block count (model.py)
            "embed_dim": self.embed_dim > 0,
            "text_width": self.text_width > 0 and self.text_width % self.text_heads == 0,
            "text_layers": self.text_layers > 0,
            "context_length": 8 <= self.context_length <= 77,
            "batch_size": self.batch_size >= 2,
            "lr": self.lr > 0,
            "epochs": self.epochs > 0,
            "time_budget": self.time_budget is None or self.time_budget > 0,
            "ema_decay": 0 < self.ema_decay < 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid CLIP baseline config: {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ClipConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
