"""Fuzzy matching of misspelt lexicon phrases ("sholder bag", "backpak", "Volkswagon", "glases").

Only tokens that nothing else explains are fuzzed: not matched by an exact phrase, not a
stop word, not a grammar word of the lexicon's ignore list, not a negation word, and at
least :data:`MIN_FUZZY_LEN` letters long. A window of tokens around such a token is compared
with lexicon phrases of the same token count: the leftover tokens must each score at least
the cutoff against the phrase's token (rapidfuzz ``fuzz.ratio``, 0-100), every other token
must match exactly. So "sholder bag" matches "shoulder bag", but "long trousers" never
matches "long sleeves".

Why a cutoff of 85 (:data:`DEFAULT_FUZZY_CUTOFF`): one wrong letter in a word of 7+ letters
scores 86-95 and one missing or extra letter in a word of 5+ letters scores 89-95 (the typos
we want), while the confusable pairs of this vocabulary score at most 84: "shirt"/"skirt"
80, "shirts"/"skirts" 83, "plain"/"plaid" 80, "glass"/"glasses" 83, "female"/"male" 80,
"woman"/"man" 75, "blouse"/"blue" 80, "coach"/"couch" 80. Words under five letters are never
fuzzed: at that length a single edit already reaches 86 ("that"/"hat", "hats"/"cats"), and
short words are mostly function words that exact matching or the stop list handle.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

__all__ = ["DEFAULT_FUZZY_CUTOFF", "MIN_FUZZY_LEN", "FuzzyIndex", "FuzzyHit"]

DEFAULT_FUZZY_CUTOFF: float = 85.0
MIN_FUZZY_LEN: int = 5


@dataclass(frozen=True)
class FuzzyHit:
    start: int  # token index
    end: int
    entry: int  # index into Lexicon.entries
    phrase: str
    score: float


class FuzzyIndex:
    """Lexicon phrases grouped by token count, for windowed fuzzy lookup."""

    def __init__(self, phrases: list[tuple[tuple[str, ...], int, str]], cutoff: float) -> None:
        if not 0 < cutoff <= 100:
            raise ValueError(f"fuzzy cutoff must be in (0, 100], got {cutoff}")
        from rapidfuzz.fuzz import ratio  # here, so importing the constants stays light

        self._ratio = ratio
        self.cutoff = cutoff
        self.by_len: dict[int, list[tuple[tuple[str, ...], int, str]]] = defaultdict(list)
        for tokens, entry, phrase in phrases:
            self.by_len[len(tokens)].append((tokens, entry, phrase))
        self.max_len = max(self.by_len, default=0)

    def search(self, lowers: list[str], fuzzable: list[bool], usable: list[bool]) -> list[FuzzyHit]:
        """Best fuzzy hit of every window that contains a fuzzable token.

        ``lowers``: lower-cased token texts; ``fuzzable[i]``: token i is a leftover long enough
        to fuzz; ``usable[i]``: token i may appear in a window (a word, digit or hyphen).
        """
        hits: list[FuzzyHit] = []
        n_tok = len(lowers)
        seen: set[tuple[int, int]] = set()
        for i in (k for k in range(n_tok) if fuzzable[k]):
            for n in range(1, self.max_len + 1):
                for s in range(max(0, i - n + 1), min(i, n_tok - n) + 1):
                    if (s, s + n) in seen or not all(usable[s : s + n]):
                        continue
                    seen.add((s, s + n))
                    hit = self._best(lowers[s : s + n], fuzzable[s : s + n], s)
                    if hit is not None:
                        hits.append(hit)
        return hits

    def _best(self, window: list[str], fuzz_mask: list[bool], start: int) -> FuzzyHit | None:
        best: FuzzyHit | None = None
        for tokens, entry, phrase in self.by_len.get(len(window), ()):
            score = 101.0
            for w, p, f in zip(window, tokens, fuzz_mask):
                if w == p:
                    continue
                if not f:
                    break
                r = self._ratio(w, p, score_cutoff=self.cutoff)
                if not r:
                    break
                score = min(score, r)
            else:
                if score <= 100 and (best is None or score > best.score):
                    best = FuzzyHit(start, start + len(window), entry, phrase, score)
        return best
