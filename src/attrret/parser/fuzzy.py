"""Fuzzy matching of misspelt lexicon phrases ("sholder bag", "backpak", "womna", "toyta").

Only tokens that nothing else explains are fuzzed: not matched by an exact phrase, not a
stop word, not a grammar word of the lexicon's ignore list, not a negation or value word,
not one of the lexicon's ``[fuzzy] keep`` real words, and at least :data:`MIN_FUZZY_LEN`
letters long. A window of tokens around such a token is compared with lexicon phrases of the
same token count: each leftover token must be a slip of the phrase's token, every other token
must match exactly. So "sholder bag" matches "shoulder bag", but "long trousers" never
matches "long sleeves".

The rule for one word ``w`` against a lexicon word ``p`` (both at least 4 letters):

- **one adjacent transposition** (``"womna"``/``"woman"``, ``"hyundia"``/``"hyundai"``): the
  same letters, optimal-string-alignment distance 1. Real words that are a swap of another
  real word are very rare in this vocabulary, so this holds from 4 letters.
- **otherwise** rapidfuzz ``fuzz.ratio(w, p) >= cutoff`` (:data:`DEFAULT_FUZZY_CUTOFF` = 85):
  one missing or extra letter from 4 letters on (``"dres"``/``"dress"`` 89, ``"toyta"``/
  ``"toyota"`` 91), one wrong letter from 7 letters on (86-95). One wrong letter in a shorter
  word scores at most 83, which is what keeps the confusable real words of this vocabulary
  apart: "shirt"/"skirt" 80, "shirts"/"skirts" 83, "plain"/"plaid" 80, "coach"/"couch" 80,
  "glass"/"glasses" 83, "female"/"male" 80, "woman"/"man" 75, "blouse"/"blue" 80,
  "hate"/"hats" 75. A lexicon word under 4 letters ("hat", "cap", "van") is never a fuzzy
  target: at that length one extra letter already scores 86 ("that"/"hat", "chat"/"hat").

The few real words the rule would still merge ("plan" is "plain" less a letter, "tees"
"teens", "cherry" "chery", "grasses" "glasses", "talking" "walking") are listed in the
lexicon's ``[fuzzy] keep`` and never fuzzed (tests/parser checks each pair both ways).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

__all__ = ["DEFAULT_FUZZY_CUTOFF", "MIN_FUZZY_LEN", "FuzzyIndex", "FuzzyHit", "is_slip"]

DEFAULT_FUZZY_CUTOFF: float = 85.0
MIN_FUZZY_LEN: int = 4


@dataclass(frozen=True)
class FuzzyHit:
    start: int  # token index
    end: int
    entry: int  # index into Lexicon.entries
    phrase: str
    score: float


def is_slip(word: str, target: str, cutoff: float = DEFAULT_FUZZY_CUTOFF) -> float:
    """Score (> 0) when ``word`` is a slip of ``target`` by the module's rule, else 0."""
    from rapidfuzz.distance import OSA
    from rapidfuzz.fuzz import ratio

    if len(word) < MIN_FUZZY_LEN or len(target) < MIN_FUZZY_LEN or word == target:
        return 0.0
    r = ratio(word, target)
    if r >= cutoff:
        return r
    if len(word) == len(target) and sorted(word) == sorted(target) and OSA.distance(word, target) == 1:
        return max(r, cutoff)  # a transposition ranks like a borderline typo
    return 0.0


class FuzzyIndex:
    """Lexicon phrases grouped by token count, for windowed fuzzy lookup."""

    def __init__(self, phrases: list[tuple[tuple[str, ...], int, str]], cutoff: float) -> None:
        if not 0 < cutoff <= 100:
            raise ValueError(f"fuzzy cutoff must be in (0, 100], got {cutoff}")
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
        if self.cutoff >= 100:
            return None  # a cutoff of 100 turns fuzzy matching off
        for tokens, entry, phrase in self.by_len.get(len(window), ()):
            score = 101.0
            for w, p, f in zip(window, tokens, fuzz_mask):
                if w == p:
                    continue
                if not f:
                    break
                r = is_slip(w, p, self.cutoff)
                if not r:
                    break
                score = min(score, r)
            else:
                if score <= 100 and (best is None or score > best.score):
                    best = FuzzyHit(start, start + len(window), entry, phrase, score)
        return best
