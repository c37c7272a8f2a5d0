"""CaptionParser: caption text -> :class:`~attrret.parser.query.Query`.

Pipeline (each step a small, stated rule):

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

Why clauses (speed). Steps 1-4 never look past a clause punctuation token (``.,;:!?``): no
lexicon phrase contains one (checked at construction), a fuzzy window only spans words, and
punctuation ends a negation's scope. So a caption cut after ``". "`` or ``", "`` reads
exactly like its clauses read one by one (spaCy splits text at whitespace before anything
else, so the tokens are the same too). Track-2 captions are a few clauses drawn from a small
grammar: the 2,536 distinct real captions of bench/parse.py hold only 777 distinct clauses.
So steps 1-4 run once per distinct clause (:class:`Clause`, in a bounded LRU cache) and only
steps 5-6, which need the whole caption, run per caption: a caption never seen before costs
a few cache look-ups instead of a tokenizer, matcher and Python pass over its tokens: on
new captions about 5x faster with every clause new too, about 10x once the clauses are known
(bench/parse.py, bench/results/parse.json). Building Span objects is the next largest cost,
so a clause's spans moved to a given caption offset are cached too. A clause
whose last token is not free punctuation ("9 a.m. ", where "a.m." is one token) is not cut
off; it is read together with the next. tests/parser checks on every real caption that the
clause-by-clause result equals the whole-caption one.

Whole parses are also cached per exact caption in a bounded LRU cache (the Track-2 test set
repeats captions heavily); every call returns a fresh Query.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from attrret.gcpause import gc_paused
from attrret.parser.fuzzy import DEFAULT_FUZZY_CUTOFF, MIN_FUZZY_LEN, FuzzyIndex
from attrret.parser.grammar import implied_values, track2_form
from attrret.parser.lexicon import Lexicon, LexiconError, load_lexicon
from attrret.parser.query import Query, Span
from attrret.schema import SUBJECTS, Schema, load_schema

__all__ = ["CaptionParser", "Clause", "DEFAULT_FUZZY_CUTOFF", "DEFAULT_CACHE_SIZE", "DEFAULT_CLAUSE_CACHE_SIZE"]

_ATTRS = ["LOWER", "IS_ALPHA", "IS_PUNCT", "IDX", "LENGTH"]

#: Distinct captions remembered per parser (the Track-2 test set has 17,611 captions).
DEFAULT_CACHE_SIZE: int = 65_536
#: Distinct clauses (and clause placements) remembered per parser.
DEFAULT_CLAUSE_CACHE_SIZE: int = 65_536

#: Where a caption may be cut into clauses: after clause punctuation and one space. The
#: separator is captured (``split`` then alternates text and separator): twice as fast as a
#: zero-width look-behind split.
_CLAUSE_END = re.compile(r"([.,;:!?] )(?=\S)")
# Lexicon phrases may not contain these as punctuation tokens, or a match could span a cut.
_ENDS_CLAUSE = frozenset(".,;:!?")

# The kinds a caption can have, in the order Clause.readings lists them.
_KINDS: tuple[str | None, ...] = (*SUBJECTS, None)


def _import_spacy():
    """spaCy, without the torch import its thinc dependency attempts on the way.

    thinc imports torch, if installed, for its optional PyTorch layers; that is 3-4 s of the
    ~4 s spaCy import on a 2-core machine, and a blank tokenizer and PhraseMatcher never use
    it. So when neither is loaded yet, ``import torch`` is made to fail during spaCy's import
    (thinc then records "no torch") and is restored at once: torch imports normally later, for
    whoever needs it. ``attrret parse`` on 2,000 captions: about 6 s -> 3 s here.
    """
    if "spacy" in sys.modules or "torch" in sys.modules:
        import spacy

        return spacy
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` -> ImportError
    try:
        import spacy
        import spacy.lang.en  # noqa: F401  (what the parser uses, loaded inside the window)
        import spacy.matcher  # noqa: F401
    finally:
        if "torch" in sys.modules and sys.modules["torch"] is None:
            del sys.modules["torch"]
    return spacy


def _first_mentions(values: list[tuple[str, str]]) -> dict[str, str]:
    """group -> class of the group's first mention, in mention order (the first mention wins)."""
    first: dict[str, str] = {}
    for group, cls in values:
        first.setdefault(group, cls)
    return first


@dataclass(frozen=True)
class Reading:
    """What a clause contributes to a caption of one kind (span offsets relative to the clause)."""

    first: dict[str, str]  # group -> class of its first mention, in mention order (read only)
    spans: tuple[Span, ...]
    unmatched: tuple[str, ...]


@dataclass(frozen=True)
class Clause:
    """Steps 1-4 of the pipeline for one clause, ready to be joined into a caption.

    ``votes``: kind votes per subject (``SUBJECTS`` order); ``readings``: one
    :class:`Reading` per possible caption kind (``SUBJECTS`` order, then no kind);
    ``closed``: the clause ends in punctuation no match covers, so nothing in it reaches
    into the next clause (the condition for reading clauses apart).
    """

    votes: tuple[int, ...]
    readings: tuple[Reading, ...]
    closed: bool


# C0 control characters and DEL read as spaces (one for one, so span offsets are unchanged).
_CONTROLS = {c: " " for c in (*range(0x00, 0x20), 0x7F)}


class CaptionParser:
    """Rule-based caption parser over a data-declared lexicon.

    ``fuzzy_cutoff``: minimum rapidfuzz ratio (0-100) for a misspelt word to match a lexicon
    word; 85 by default (why: :mod:`attrret.parser.fuzzy`). ``cache_size``: distinct
    captions kept in the per-instance LRU cache (0 disables it). ``clause_cache_size``:
    distinct clauses kept (0 disables it; results never depend on either cache).
    """

    def __init__(
        self,
        schema: Schema | None = None,
        *,
        fuzzy_cutoff: float = DEFAULT_FUZZY_CUTOFF,
        cache_size: int = DEFAULT_CACHE_SIZE,
        clause_cache_size: int = DEFAULT_CLAUSE_CACHE_SIZE,
        lexicon: Lexicon | None = None,
    ) -> None:
        spacy = _import_spacy()
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
            for d, p in zip(docs, entry.phrases):
                if any(t.is_punct and _ENDS_CLAUSE.intersection(t.text) for t in d):
                    raise LexiconError(f"{self.lexicon.source}: phrase {p!r} contains clause punctuation (.,;:!?)")
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
        self._read_clause = lru_cache(maxsize=clause_cache_size)(self.read_clause) if clause_cache_size > 0 else self.read_clause
        self._placed_spans = (
            lru_cache(maxsize=clause_cache_size)(self.place_spans) if clause_cache_size > 0 else self.place_spans
        )
        self._cached = cache_size > 0
        self._parse_one = lru_cache(maxsize=cache_size)(self._parse) if self._cached else self._parse

    # ------------------------------------------------------------------ public API
    def parse(self, caption: str) -> Query:
        """Parse one caption (offsets in the result index into ``caption`` as given)."""
        if not isinstance(caption, str):
            raise TypeError(f"caption must be str, not {type(caption).__name__}")
        if not caption.isprintable():  # a NUL or other control byte separates words like a space
            clean = caption.translate(_CONTROLS)
            if clean != caption:  # same length: span offsets still index the caption as given
                q = self._parse_one(clean)
                return Query(caption, q.kind, dict(q.stated), dict(q.implied), q.unknown, q.spans, q.unmatched)
        q = self._parse_one(caption)
        if not self._cached:
            return q
        # Cached Queries are shared: hand out fresh dicts so a caller cannot corrupt the cache.
        return Query(q.caption, q.kind, dict(q.stated), dict(q.implied), q.unknown, q.spans, q.unmatched)

    def parse_many(self, captions: Iterable[str]) -> list[Query]:
        """Parse captions in order (repeated captions are parsed once), with the cycle
        collector paused: the results form no cycles (:mod:`attrret.gcpause`)."""
        with gc_paused():
            return [self.parse(c) for c in captions]

    # ------------------------------------------------------------------ clause by clause
    def clauses(self, caption: str) -> list[tuple[int, str, Clause]]:
        """``(character offset, text, Clause)`` for each clause of ``caption``, in order."""
        parts = _CLAUSE_END.split(caption)  # text, separator, text, ..., text
        if len(parts) == 1:
            return [(0, caption, self._read_clause(caption))]
        out: list[tuple[int, str, Clause]] = []
        last = len(parts) - 1
        start = 0
        text = ""
        for i in range(0, last, 2):
            text += parts[i] + parts[i + 1]
            clause = self._read_clause(text)
            if clause.closed:
                out.append((start, text, clause))
                start += len(text)
                text = ""
        text += parts[last]
        out.append((start, text, self._read_clause(text)))
        return out

    def join(self, caption: str, clauses: list[tuple[int, str, Clause]]) -> Query:
        """Steps 5-6: the Query of ``caption`` from its clauses (as :meth:`clauses` cuts it)."""
        if len(clauses) == 1:
            votes = clauses[0][2].votes
        else:
            votes = tuple(map(sum, zip(*[c.votes for _, _, c in clauses])))
        top = max(votes)
        k = votes.index(top) if top > 0 and votes.count(top) == 1 else len(SUBJECTS)
        kind = _KINDS[k]

        if len(clauses) == 1:
            reading = clauses[0][2].readings[k]
            stated, spans, unmatched = dict(reading.first), reading.spans, reading.unmatched
        else:
            stated = {}
            placed: list[Span] = []
            missed: list[str] = []
            for offset, text, clause in clauses:
                reading = clause.readings[k]
                for group, cls in reading.first.items():
                    if group not in stated:
                        stated[group] = cls
                if reading.spans:
                    placed += self._placed_spans(text, offset, k) if offset else reading.spans
                if reading.unmatched:
                    missed += reading.unmatched
            spans, unmatched = tuple(placed), tuple(missed)

        if kind is None:
            return Query(caption, None, spans=spans, unmatched=unmatched)
        implied: dict[str, str] = {}
        if kind == "pedestrian":
            form = track2_form(caption)
            if form is not None:
                implied = implied_values(stated, form)
        unknown = tuple([g for g in self._groups[kind] if g not in stated and g not in implied])
        return Query(caption, kind, stated, implied, unknown, spans, unmatched)

    def place_spans(self, text: str, offset: int, k: int) -> tuple[Span, ...]:
        """The spans of clause ``text`` for kind number ``k``, moved to ``offset`` in a caption.

        Cached like clauses: building Span objects is a large share of a caption's cost, and
        a clause sits at only a few offsets (after each phrasing of the clauses before it).
        """
        return tuple(
            Span(s.text, s.start + offset, s.end + offset, s.group, s.cls, s.fuzzy)
            for s in self._read_clause(text).readings[k].spans
        )

    def read_clause(self, text: str) -> Clause:
        """Steps 1-4 on ``text`` alone (uncached; a whole caption is a valid clause too)."""
        doc = self._tokenizer(text)
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

        # Per caption kind: the values and spans of that kind's words; everything else
        # (leftovers, and words of another subject) is unmatched, in caption order.
        items: list[tuple[int, str, int, int, int, bool]] = [  # (token, text, char start, char end, entry, fuzzy)
            (k, text[rows[k][3] : rows[k][3] + rows[k][4]], 0, 0, -1, False) for k in leftovers if not taken[k]
        ]
        for start, end, entry, fuzzy in chosen:
            a, b = rows[start][3], rows[end - 1][3] + rows[end - 1][4]
            items.append((start, text[a:b], a, b, entry, fuzzy))
        items.sort()
        readings = []
        for kind in _KINDS:
            values: list[tuple[str, str]] = []
            spans: list[Span] = []
            unmatched: list[str] = []
            for start, words, a, b, entry, fuzzy in items:
                if entry < 0 or self._meaning[entry][0] != kind:
                    unmatched.append(words)
                    continue
                _, plain, neg, _ = self._meaning[entry]
                for group, cls in neg if start in negated else plain:
                    spans.append(Span(words, a, b, group, cls, fuzzy))
                    values.append((group, cls))
            readings.append(Reading(_first_mentions(values), tuple(spans), tuple(unmatched)))

        votes = dict.fromkeys(SUBJECTS, 0)
        for _, _, entry, _ in chosen:
            subject, _, _, cue = self._meaning[entry]
            votes[subject] += 2 if cue else 1
        closed = n > 0 and bool(rows[n - 1][2]) and not taken[n - 1]
        return Clause(tuple(votes[s] for s in SUBJECTS), tuple(readings), closed)

    # ------------------------------------------------------------------ internals
    def _parse(self, caption: str) -> Query:
        return self.join(caption, self.clauses(caption))

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
