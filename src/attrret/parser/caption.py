"""CaptionParser: caption text -> :class:`~attrret.parser.query.Query`.

Pipeline per caption (each step a small, stated rule):

1. Tokenise with spaCy's blank English tokenizer and match the lexicon with a
   PhraseMatcher on lower-cased whole tokens ("hat" is never found inside "that").
2. Tokens nothing explains (not matched, not a stop or grammar word) are fuzzy-matched
   against lexicon phrases (see :mod:`attrret.parser.fuzzy`); the rest are reported as
   ``unmatched``. Exact captions of the benchmark never reach rapidfuzz.
3. Overlapping matches: the longest span wins, then exact before fuzzy, then the earliest
   ("not an adult" beats "adult"; "Balong Heavy Truck" beats "Truck").
4. Negation: "no", "not", "without", ... negate every phrase after them up to the next
   punctuation or clause word ("and", "but", "with", ...).
5. Kind: each attribute span votes for its subject, each cue word ("woman", "car") votes
   twice; a tie means no kind. Words of the other subject (all, with no kind) are unmatched.
6. Stated values: the first mention of a group wins. Implied values: the Track-2 grammar
   rules (:mod:`attrret.parser.grammar`) for captions written by that grammar.

Parses are cached per exact caption in a bounded LRU cache owned by the parser instance
(the Track-2 test set repeats captions heavily); every call returns a fresh Query.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from attrret.parser.fuzzy import DEFAULT_FUZZY_CUTOFF, MIN_FUZZY_LEN, FuzzyIndex
from attrret.parser.grammar import implied_values, track2_form
from attrret.parser.lexicon import Lexicon, load_lexicon
from attrret.parser.query import Query, Span
from attrret.schema import SUBJECTS, Schema, load_schema

__all__ = ["CaptionParser", "DEFAULT_FUZZY_CUTOFF", "DEFAULT_CACHE_SIZE"]

_ATTRS = ["LOWER", "IS_ALPHA", "IS_PUNCT", "IDX", "LENGTH"]

#: Distinct captions remembered per parser (the Track-2 test set has 17,611 captions).
DEFAULT_CACHE_SIZE: int = 65_536


class CaptionParser:
    """Rule-based caption parser over a data-declared lexicon.

    ``fuzzy_cutoff``: minimum rapidfuzz ratio (0-100) for a misspelt word to match a lexicon
    word; 85 by default (why: :mod:`attrret.parser.fuzzy`). ``cache_size``: distinct
    captions kept in the per-instance LRU cache (0 disables it).
    """

    def __init__(
        self,
        schema: Schema | None = None,
        *,
        fuzzy_cutoff: float = DEFAULT_FUZZY_CUTOFF,
        cache_size: int = DEFAULT_CACHE_SIZE,
        lexicon: Lexicon | None = None,
    ) -> None:
        import spacy
        from spacy.lang.en.stop_words import STOP_WORDS
        from spacy.matcher import PhraseMatcher

        self.schema = schema or load_schema()
        self.lexicon = lexicon or load_lexicon(self.schema)
        nlp = spacy.blank("en")
        self._tokenizer = nlp.tokenizer
        self._matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
        self._entry_of: dict[int, int] = {}
        fuzzy_phrases: list[tuple[tuple[str, ...], int, str]] = []
        for i, entry in enumerate(self.lexicon.entries):
            docs = [nlp.make_doc(p) for p in entry.phrases]
            self._matcher.add(f"E{i}", docs)
            self._entry_of[nlp.vocab.strings[f"E{i}"]] = i
            fuzzy_phrases += [(tuple(t.lower_ for t in d), i, p) for d, p in zip(docs, entry.phrases)]
        self._fuzzy = FuzzyIndex(fuzzy_phrases, fuzzy_cutoff)
        self.fuzzy_cutoff = fuzzy_cutoff
        # Word sets as spaCy string hashes, compared against the LOWER attribute array.
        strings = nlp.vocab.strings
        self._neg_cues = frozenset(strings.add(w) for w in self.lexicon.negation_cues)
        self._neg_breaks = frozenset(strings.add(w) for w in self.lexicon.negation_breaks)
        ignore = (self.lexicon.ignore | frozenset(STOP_WORDS)) - self.lexicon.negation_cues
        self._ignore = frozenset(strings.add(w) for w in ignore)
        # Per entry: (subject, plain pairs, negated pairs, cue subject) resolved once.
        self._meaning = [
            (e.subject, e.sets, self.lexicon.negation_of(e, self.schema), e.cue) for e in self.lexicon.entries
        ]
        self._groups = {s: self.schema.subject(s).group_names for s in SUBJECTS}
        self._parse_one = lru_cache(maxsize=cache_size)(self._parse) if cache_size > 0 else self._parse

    # ------------------------------------------------------------------ public API
    def parse(self, caption: str) -> Query:
        """Parse one caption (offsets in the result index into ``caption`` as given)."""
        if not isinstance(caption, str):
            raise TypeError(f"caption must be str, not {type(caption).__name__}")
        q = self._parse_one(caption)
        # Cached Queries are shared: hand out fresh dicts so a caller cannot corrupt the cache.
        return Query(q.caption, q.kind, dict(q.stated), dict(q.implied), q.unknown, q.spans, q.unmatched)

    def parse_many(self, captions: Iterable[str]) -> list[Query]:
        """Parse captions in order (repeated captions are parsed once)."""
        return [self.parse(c) for c in captions]

    # ------------------------------------------------------------------ internals
    def _parse(self, caption: str) -> Query:
        doc = self._tokenizer(caption)
        n = len(doc)
        # One C call for every token attribute we need; per-token Python access is the slow part.
        rows = doc.to_array(_ATTRS).tolist()  # [lower hash, is_alpha, is_punct, char idx, length]
        covered = [False] * n
        cands: list[tuple[int, int, int, bool]] = []  # (start, end, entry, fuzzy)
        for match_id, start, end in self._matcher(doc):
            cands.append((start, end, self._entry_of[match_id], False))
            for k in range(start, end):
                covered[k] = True

        # Leftover words: not covered, not ignorable. Negation cues are noted on the way.
        leftovers: list[int] = []
        neg_at: list[int] = []
        for k in range(n):
            if covered[k]:
                continue
            low, alpha = rows[k][0], rows[k][1]
            if low in self._neg_cues:
                neg_at.append(k)
            elif alpha and low not in self._ignore:
                leftovers.append(k)

        if any(rows[k][4] >= MIN_FUZZY_LEN for k in leftovers):
            lowers = [t.lower_ for t in doc]
            fuzzable = [False] * n
            for k in leftovers:
                fuzzable[k] = rows[k][4] >= MIN_FUZZY_LEN
            usable = [t.is_alpha or t.is_digit or t.text == "-" for t in doc]
            for hit in self._fuzzy.search(lowers, fuzzable, usable):
                cands.append((hit.start, hit.end, hit.entry, True))

        # Overlaps: longest, then exact before fuzzy, then earliest.
        cands.sort(key=lambda c: (c[0] - c[1], c[3], c[0]))
        taken = [False] * n
        chosen: list[tuple[int, int, int, bool]] = []
        for c in cands:
            if not any(taken[c[0] : c[1]]):
                for k in range(c[0], c[1]):
                    taken[k] = True
                chosen.append(c)
        chosen.sort()

        negated = self._negated(rows, chosen, neg_at) if neg_at else set()

        votes = dict.fromkeys(SUBJECTS, 0)
        for _, _, entry, _ in chosen:
            subject, _, _, cue = self._meaning[entry]
            votes[subject] += 2 if cue else 1
        top = max(votes.values())
        winners = [s for s, v in votes.items() if v == top]
        kind = winners[0] if top > 0 and len(winners) == 1 else None

        stated: dict[str, str] = {}
        spans: list[Span] = []
        unmatched: list[tuple[int, str]] = []
        for k in leftovers:
            if not taken[k]:
                unmatched.append((k, caption[rows[k][3] : rows[k][3] + rows[k][4]]))
        for start, end, entry, fuzzy in chosen:
            subject, plain, neg, _ = self._meaning[entry]
            a, b = rows[start][3], rows[end - 1][3] + rows[end - 1][4]
            if subject != kind:  # another subject's words (or no kind at all): not used, so reported
                unmatched.append((start, caption[a:b]))
                continue
            for group, cls in neg if start in negated else plain:
                spans.append(Span(caption[a:b], a, b, group, cls, fuzzy))
                stated.setdefault(group, cls)
        unmatched.sort()

        if kind is None:
            return Query(caption, None, spans=tuple(spans), unmatched=tuple(t for _, t in unmatched))
        implied: dict[str, str] = {}
        if kind == "pedestrian":
            form = track2_form(caption)
            if form is not None:
                implied = implied_values(stated, form)
        unknown = tuple(g for g in self._groups[kind] if g not in stated and g not in implied)
        return Query(caption, kind, stated, implied, unknown, tuple(spans), tuple(t for _, t in unmatched))

    def _negated(self, rows: list[list[int]], chosen: list[tuple[int, int, int, bool]], neg_at: list[int]) -> set[int]:
        """Start tokens of the chosen spans that fall in a negation's scope."""
        span_at = {c[0]: c[1] for c in chosen}
        out: set[int] = set()
        n = len(rows)
        for cue in neg_at:
            k = cue + 1
            while k < n:
                if k in span_at:
                    out.add(k)
                    k = span_at[k]
                    continue
                if rows[k][2] or rows[k][0] in self._neg_breaks:
                    break
                k += 1
        return out
