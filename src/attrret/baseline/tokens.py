"""open_clip's BPE tokenizer over a compact vocabulary learned from the training captions.

The CLIP BPE vocabulary has 49,408 entries; Track-2 captions use about 200 of them. A text
tower trained from scratch only ever updates the rows it sees, so the embedding table is
shrunk to the ids present in the training captions (plus padding and unknown). The compact
ids keep the original order, so the end-of-text token stays the largest id in every row and
open_clip's ``argmax`` pooling still finds it. A pretrained text tower keeps the full vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attrret._torchvision import ensure_torchvision

__all__ = ["CaptionTokenizer", "PAD_ID", "UNK_ID"]

PAD_ID = 0
UNK_ID = 1


def _simple_tokenizer():
    """The BPE tokenizer whose vocabulary ships inside the open_clip wheel (works offline)."""
    ensure_torchvision()
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


class CaptionTokenizer:
    """Captions -> ``LongTensor[n, context_length]`` of (optionally compact) token ids."""

    def __init__(self, context_length: int, kept_ids: Sequence[int] | None = None, arch: str | None = None) -> None:
        """``arch``: use that open_clip architecture's own tokenizer (for a pretrained text tower)."""
        self.context_length = context_length
        self.arch = arch
        if arch is None:
            self._bpe = _simple_tokenizer()
        else:
            ensure_torchvision()
            import open_clip

            self._bpe = open_clip.get_tokenizer(arch)
            kept_ids = None
        self.kept_ids: tuple[int, ...] | None = None if kept_ids is None else tuple(sorted(set(kept_ids)))
        self._map: torch.Tensor | None = None
        if self.kept_ids is not None:
            table = torch.full((len(self._bpe.encoder),), UNK_ID, dtype=torch.long)
            table[torch.tensor(self.kept_ids, dtype=torch.long)] = torch.arange(2, 2 + len(self.kept_ids))
            table[0] = PAD_ID  # open_clip pads with 0; id 0 ("!") is then indistinguishable anyway
            self._map = table

    @classmethod
    def fit(cls, captions: Sequence[str], context_length: int) -> "CaptionTokenizer":
        """A compact tokenizer over the BPE ids that occur in ``captions`` (and start/end)."""
        bpe = _simple_tokenizer()
        ids = {bpe.sot_token_id, bpe.eot_token_id}
        for c in captions:
            ids.update(bpe.encode(c))
        ids.discard(0)
        return cls(context_length, sorted(ids))

    @property
    def vocab_size(self) -> int:
        if self.kept_ids is not None:
            return len(self.kept_ids) + 2
        return int(getattr(self._bpe, "vocab_size", 0) or len(getattr(self._bpe, "encoder", ())))

    def __call__(self, captions: Sequence[str]) -> torch.Tensor:
        ids = self._bpe(list(captions), context_length=self.context_length)  # truncates, ends with eot
        return ids if self._map is None else self._map[ids]
