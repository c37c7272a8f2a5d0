"""CaptionParser: caption text -> :class:`~attrret.parser.query.Query`.

Pipeline (each step a small, stated rule):

1. Tokenise (:data:`attrret.parser.lexicon.TOKEN`: runs of word characters, "n't", single
   punctuation characters) and match lexicon phrases on lower-cased whole tokens ("hat" is
   never found inside "that"), through a table from a phrase's first token to the phrases.
   Then values no phrase lists, by rule: ``key: value`` forms (below) and ages written as
   decades, approximations, comparisons and ranges ("in his sixties", "around 40", "under
   30", "25-35"; lexicon ``[ages]``): the years map onto the age classes (0-17, 18-60, 61 and
   over), and a span across a boundary allows both classes ("sixties": 18-60 or over60).
1b. Clothing colours, by rule (lexicon ``[clothing]``): a run of colour words joined by
   "and", "or", "-", "/" or "," and followed (past words such as "striped", "dark", "denim")
   by a garment word is that garment's colour: "red jacket" -> upper_color_red = yes,
   "black-and-white striped top" -> black and white yes, "navy or grey trousers" -> one of
   them (``Query.any_of``). A run after "in" / "wearing" / "dressed (all) in" with no garment
   after it ("dressed in red") allows either garment: top or bottom red. Colour words
   elsewhere keep their vehicle meaning ("a red car").
2. Tokens nothing explains (not matched, not a stop, grammar, negation or value word) are
   fuzzy-matched against lexicon phrases (see :mod:`attrret.parser.fuzzy`). Exact captions of
   the benchmark never reach rapidfuzz.
3. Overlapping matches: the longest span wins, then exact before fuzzy, then the earliest
   ("not an adult" beats "adult"; "Balong Heavy Truck" beats "Truck").
4. Mentions, left to right:
   - negation scope (a rule, not a list of sentences): a cue ("no", "not", "without",
     "never", "n't", "neither ... nor", and exclusions read as cues: "except", "other than",
     "anything but", "apart from") covers the phrase it introduces and the phrases
     coordinated with it by "or" or "nor" ("no hat or glasses", "neither a hat nor glasses").
     It ends at punctuation, at a scope break ("and", "but", "with", "who", ...), and at a
     word that opens a new phrase ("carrying", "wearing", "holding", "in", ...) once the
     negated phrase has begun: "a woman without a scarf carrying a backpack" negates the
     scarf only. Right after the cue, such a word belongs to the negated phrase ("not
     wearing a hat", "who never has a hat"). The words are data (``[negation]`` of the
     lexicon); tests/parser/test_negation_scope.py checks the rule over generated sentences;
   - ``key: value``: a mention followed by ``:`` or ``=`` and a yes / no word ("hat: no",
     "glasses=no", "bag: none"), or by the word alone at the end of a clause ("hat no"), is
     stated (yes) or negated (no). Keys that are no phrase (a group's name, plural or another
     name: "sleeve: short", "Gender: M", "make = honda") are read in step 1 with the group's
     class names and short forms (lexicon ``[keys]``);
   - alternatives: mentions joined by "or" with only ignorable words between ("black or
     white", "a backpack or a shoulder bag"), and a comma list of one group before the "or"
     ("red, white or blue"), form one alternative. In one group it allows
     those classes (``either``); across yes/no groups it asks that one of them be yes
     (``any_of``: "a hat or glasses", "black or grey trousers"); across other groups ("a hat
     or a backpack") it is unsupported and
     reported in ``Query.unsupported``, never silently used or dropped;
   - a negated mention states the other class of a two-class group ("no hat": hat = no),
     excludes its class in a larger group ("no backpack": ``negated`` bag = [backpack]), or
     what the lexicon declares ("no bag": handbag = no, bag = none); a negated phrase of
     several groups ("not a girl") is unsupported.
5. Kind: each attribute span votes for its subject, each cue word ("woman", "car") votes
   twice; a tie means no kind. Words of the other subject (all, with no kind) are unmatched.
6. Per group: a stated value wins (the first stated mention), then alternatives minus
   exclusions, then exclusions; a set that leaves one class states it ("not shoulder bag nor
   backpack" -> bag = none), one that allows every class says nothing. Implied values: the
   Track-2 grammar rules (:mod:`attrret.parser.grammar`) for captions written by that grammar.
7. Unmatched: maximal runs of adjacent content words that map to nothing (or to the other
   subject), with the lexicon's joiner words beside them: "red jacket", "long hair".

Why clauses (speed). Steps 1-4 and 7 never look past a sentence punctuation token (``.;!?``):
no lexicon phrase contains one (checked at construction), a fuzzy window only spans words,
and punctuation ends a negation's scope, an alternative and an unmatched run. Every such
character is a token of its own, so a caption cut after ``". "`` reads exactly like its
clauses read one by one. Track-2 captions are two sentences drawn from a small grammar: the
2,045 distinct real pedestrian captions of bench/parse.py hold 644 distinct first and 162
distinct second sentences. So steps 1-4 and 7 run once per distinct clause (:class:`Clause`,
in a bounded LRU cache, and every clause the Track-2 pedestrian grammar writes is read when
the parser is built: :func:`attrret.parser.grammar.track2_clauses`), and only steps 5-6, which
need the whole caption, run per caption. Building Span objects is the next largest cost, so a
clause's spans moved to a given caption offset are cached too. A Track-2 vehicle caption is
read from its slots instead (:func:`attrret.parser.grammar.track2_vehicle_pattern`).
tests/parser checks on every real caption and every free-form test query that the
clause-by-clause result equals the whole-caption one.

Why no spaCy. Its blank English tokenizer and PhraseMatcher cost about 65 us per new clause
(bench/parse.py: new captions ran at ~15-27k/s here); the regular-expression tokenizer and
the first-token table cost a third of that, and with the grammar's clauses read at build
time a new Track-2 caption costs about what a known one does (~70k/s). The stop words are spaCy's, copied into ``lexicon.toml`` as data.

Whole parses are also cached per exact caption in a bounded LRU cache (the Track-2 test set
repeats captions heavily); every call returns a fresh Query.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from attrret.gcpause import gc_paused
from attrret.parser.fuzzy import DEFAULT_FUZZY_CUTOFF, MIN_FUZZY_LEN, FuzzyIndex
from attrret.parser.grammar import implied_values, sentence_form, track2_clauses, track2_form, track2_vehicle_pattern
from attrret.parser.lexicon import ANY, EITHER, NEGATED, STATED, TOKEN, Entry, Lexicon, LexiconError, fold, load_lexicon, tokenize
from attrret.parser.query import Query, Span
from attrret.schema import SUBJECTS, Schema, load_schema, member_name

__all__ = ["CaptionParser", "Clause", "Reading", "DEFAULT_FUZZY_CUTOFF", "DEFAULT_CACHE_SIZE", "DEFAULT_CLAUSE_CACHE_SIZE"]

#: Distinct captions remembered per parser (the Track-2 test set has 17,611 captions).
DEFAULT_CACHE_SIZE: int = 65_536
#: Distinct clauses (and clause placements) remembered per parser.
DEFAULT_CLAUSE_CACHE_SIZE: int = 65_536

#: Where a caption may be cut into clauses: after sentence punctuation and one space (a
#: Track-2 caption is two sentences). The separator is captured (``split`` then alternates
#: text and separator): twice as fast as a zero-width look-behind split.
_CLAUSE_END = re.compile(r"([.;!?] )(?=\S)")
# Lexicon phrases may not contain these as tokens, or a match could span a cut (':' is no
# cut, since "hat: no" is read as one, but a phrase holding it would be confusing all the same).
_ENDS_CLAUSE = frozenset(".,;:!?")
_KEY_VALUE = frozenset(":=")
# What may follow a value written without a separator ("hat no, backpack yes"): the clause ends.
_VALUE_END = frozenset([",", ";", ".", "!", "?", "and", "&"])
# "early thirties" (30-33), "mid thirties", "late thirties" (37-39): years within a decade.
_DECADE_PART = {"early": (0, 3), "mid": (4, 6), "late": (7, 9)}
# Words that make the number after them an age whatever follows ("aged 25 carrying a bag").
_AGE_WORDS = frozenset(["aged", "age", "ages"])

# The kinds a caption can have, in the order Clause.readings lists them.
_KINDS: tuple[str | None, ...] = (*SUBJECTS, None)
assert SUBJECTS == ("pedestrian", "vehicle")  # CaptionParser.join decides the kind by their vote difference

# C0 control characters and DEL read as spaces (one for one, so span offsets are unchanged).
_CONTROLS = {c: " " for c in (*range(0x00, 0x20), 0x7F)}

Constraint = tuple[str, str, tuple[str, ...]]  # (group, NEGATED | EITHER, classes)
_new_tuple = tuple.__new__


def _first_mentions(values: list[tuple[str, str]]) -> dict[str, str]:
    """group -> class of the group's first mention, in mention order (the first mention wins)."""
    first: dict[str, str] = {}
    for group, cls in values:
        first.setdefault(group, cls)
    return first


@dataclass(frozen=True)
class Reading:
    """What a clause contributes to a caption of one kind (span offsets relative to the clause)."""

    first: dict[str, str]  # group -> class of its first stated mention, in mention order (read only)
    sets: tuple[Constraint, ...]  # exclusions and alternatives, in mention order
    spans: tuple[Span, ...]
    unmatched: tuple[str, ...]
    unsupported: tuple[str, ...]
    extra: bool  # anything besides stated values and spans (rare: the join skips it otherwise)


@dataclass(frozen=True)
class Clause:
    """Steps 1-4 and 7 of the pipeline for one clause, ready to be joined into a caption.

    ``votes``: kind votes per subject (``SUBJECTS`` order). What the clause says for a caption
    of kind number ``k`` (``SUBJECTS`` order, then no kind) is :meth:`CaptionParser.reading`:
    a caption has one kind, so each reading is built when first asked for and kept here.
    """

    votes: tuple[int, ...]
    lead: int  # pedestrian votes minus vehicle votes
    text: str
    toks: tuple[str, ...]
    starts: tuple[int, ...]
    mentions: tuple[tuple[int, int, int, bool, bool, int], ...]  # (start, end, entry, fuzzy, negated, chain)
    base: tuple[int, ...]  # per token: 1 content word nothing explains, 2 joiner word, 0 else
    readings: list[Reading | None] = field(default_factory=lambda: [None] * len(_KINDS), repr=False, compare=False)


class CaptionParser:
    """Rule-based caption parser over a data-declared lexicon.

    ``fuzzy_cutoff``: minimum rapidfuzz ratio (0-100) for a misspelt word to match a lexicon
    word; 85 by default, 100 turns fuzzy matching off (why: :mod:`attrret.parser.fuzzy`).
    ``cache_size``: distinct captions kept in the per-instance LRU cache (0 disables it).
    ``clause_cache_size``: distinct clauses kept (0 disables it; results never depend on
    either cache). ``grammar_table``: read the Track-2 grammar's ~3,200 clauses at build
    (0.2-0.5 s) so a Track-2 file's captions never read them; off for a process that parses a
    few queries (``attrret search``). Results are the same either way.
    """

    def __init__(
        self,
        schema: Schema | None = None,
        *,
        fuzzy_cutoff: float = DEFAULT_FUZZY_CUTOFF,
        cache_size: int = DEFAULT_CACHE_SIZE,
        clause_cache_size: int = DEFAULT_CLAUSE_CACHE_SIZE,
        lexicon: Lexicon | None = None,
        grammar_table: bool = True,
    ) -> None:
        self.schema = schema or load_schema()
        self.lexicon = lex = lexicon or load_lexicon(self.schema)
        # First token -> [(tokens, length, entry)], longest first: one dict look-up per token.
        self._phrases: dict[str, list[tuple[list[str], int, int]]] = {}
        fuzzy_phrases: list[tuple[tuple[str, ...], int, str]] = []
        for i, entry in enumerate(lex.entries):
            for p in entry.phrases:
                toks = tokenize(p)
                if _ENDS_CLAUSE.intersection(toks):
                    raise LexiconError(f"{lex.source}: phrase {p!r} contains clause punctuation (.,;:!?)")
                self._phrases.setdefault(toks[0], []).append((toks, len(toks), i))
                fuzzy_phrases.append((tuple(toks), i, p))
        for opts in self._phrases.values():
            opts.sort(key=lambda o: -o[1])
        self._fuzzy = FuzzyIndex(fuzzy_phrases, fuzzy_cutoff)
        self.fuzzy_cutoff = fuzzy_cutoff
        self._neg_cues = lex.negation_cues
        self._neg_breaks = lex.negation_breaks
        self._or = lex.or_words
        self._yes, self._no = lex.yes_words, lex.no_words
        self._ignore = (lex.ignore | lex.stop_words) - lex.negation_cues - lex.or_words
        self._joiners = lex.joiners
        self._keep = lex.fuzzy_keep
        # Per entry: (subject, plain triples, negated triples or None, cue) resolved once.
        self._meaning = [
            (e.subject, tuple((g, STATED, c) for g, c in e.sets), lex.negation_of(e, self.schema), e.cue)
            for e in lex.entries
        ]
        self._yields = [e.yields_to for e in lex.entries]
        self._openers = lex.negation_openers
        self._neg_phrase_first = frozenset(t[0] for t in lex.negation_phrases) | ({"but"} if lex.but_after else frozenset())
        self._but_after = lex.but_after
        self._abbreviations = lex.abbreviations
        self._neg_phrases: dict[str, list[tuple[str, ...]]] = {}
        for toks in lex.negation_phrases:  # longest first (the lexicon sorts them)
            self._neg_phrases.setdefault(toks[0], []).append(toks)
        # Values no phrase lists, read by rule (step 1): `key: value` forms and ages as decades,
        # approximations and ranges. Each meaning gets an entry number after the lexicon's own.
        self._keys = lex.keys
        self._key_first = {k[0] for k in lex.keys}
        self._key_values = lex.key_values
        self._ages = lex.ages
        self._phrase_keys = {tuple(tokenize(p)) for e in lex.entries for p in e.phrases}
        self._rule_entry: dict[tuple, int] = {}
        self._classes = {s: {g.name: g.classes for g in self.schema.subject(s).groups} for s in SUBJECTS}
        self._groups = {s: self.schema.subject(s).group_names for s in SUBJECTS}
        for subject in SUBJECTS:
            for group in self.schema.subject(subject).groups:
                for cls in group.classes:
                    e = Entry(subject, (f"{group.name}: {cls}",), ((group.name, cls),))
                    self._rule_entry[(subject, group.name, (cls,))] = len(self._meaning)
                    self._meaning.append((subject, ((group.name, STATED, cls),), lex.negation_of(e, self.schema), None))
        if self._ages is not None:  # every run of adjacent age classes: one class states it, more allow them
            classes = [c for c, _, _ in self._ages.ranges]
            for a in range(len(classes)):
                for b in range(a + 2, len(classes) + 1):
                    run = tuple(classes[a:b])
                    self._rule_entry[("pedestrian", self._ages.group, run)] = len(self._meaning)
                    self._meaning.append(("pedestrian", tuple((self._ages.group, EITHER, c) for c in run), None, None))
        # Clothing colours (step 1b): one entry per (colour group, colour), and one per colour
        # alone ("dressed in red": top or bottom; negated, neither).
        self._clothing = lex.clothing
        self._family_of = {g.name: g.family for g in self.schema.pedestrian.groups if g.family}
        self._colour_entry: dict[tuple[str, str], int] = {}
        self._alone_entry: dict[str, int] = {}
        if self._clothing is not None:
            families = self.schema.pedestrian.families
            for family in self._clothing.families:
                for g in families[family]:
                    e = Entry("pedestrian", (g.name,), ((g.name, "yes"),))
                    self._colour_entry[(family, g.label)] = len(self._meaning)
                    self._meaning.append(("pedestrian", ((g.name, STATED, "yes"),), lex.negation_of(e, self.schema), None))
            for colour in {c for (_, c) in self._colour_entry}:
                groups = [member_name(f, colour) for f in self._clothing.families if (f, colour) in self._colour_entry]
                self._alone_entry[colour] = len(self._meaning)
                self._meaning.append(("pedestrian", tuple((g, ANY, "yes") for g in groups),
                                      tuple((g, STATED, "no") for g in groups), None))
        self._yields += [()] * (len(self._meaning) - len(self._yields))
        self._read_clause = lru_cache(maxsize=clause_cache_size)(self.read_clause) if clause_cache_size > 0 else self.read_clause
        self._placed_spans = (
            lru_cache(maxsize=clause_cache_size)(self.place_spans) if clause_cache_size > 0 else self.place_spans
        )
        # The clauses the Track-2 grammar writes, read once now (a table, not a cache: see
        # grammar.track2_clauses); their pedestrian reading is what a Track-2 caption needs.
        # Without ``grammar_table`` they are read when met, like any clause (same results).
        texts = track2_clauses()
        self._grammar_clauses: dict[str, Clause] = {}
        for text in texts if grammar_table else ():
            self.reading(self._grammar_clauses.setdefault(text, self.read_clause(text)), 0)
        # Their forms: a caption of a grammar first sentence and a grammar second sentence has
        # the second's form (what grammar.track2_form finds, without searching the caption).
        self._sentence_form = {t: f for t in texts if (f := sentence_form(t)) is not None}
        self._first_sentences = frozenset(t for t in texts if track2_form(t + "She is in ") == "B")
        self._vehicle_line = track2_vehicle_pattern(self.schema)
        self._vehicle_groups = self._groups["vehicle"]
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
                return _copy(self._parse_one(clean), caption)
        q = self._parse_one(caption)
        # Cached Queries are shared: hand out fresh dicts so a caller cannot corrupt the cache.
        return _copy(q, caption) if self._cached else q

    def parse_many(self, captions: Iterable[str]) -> list[Query]:
        """Parse captions in order (repeated captions are parsed once), with the cycle
        collector paused: the results form no cycles (:mod:`attrret.gcpause`)."""
        with gc_paused():
            return [self.parse(c) for c in captions]

    # ------------------------------------------------------------------ clause by clause
    def clauses(self, caption: str) -> list[tuple[int, str, Clause]]:
        """``(character offset, text, Clause)`` for each clause of ``caption``, in order."""
        parts = _CLAUSE_END.split(caption)  # text, separator, text, ..., text
        read, known = self._read_clause, self._grammar_clauses
        if len(parts) == 1:
            return [(0, caption, known.get(caption) or read(caption))]
        out: list[tuple[int, str, Clause]] = []
        start = 0
        for i in range(0, len(parts) - 1, 2):
            text = parts[i] + parts[i + 1]
            out.append((start, text, known.get(text) or read(text)))
            start += len(text)
        text = parts[-1]
        out.append((start, text, known.get(text) or read(text)))
        return out

    def join(self, caption: str, clauses: list[tuple[int, str, Clause]]) -> Query:
        """Steps 5-6: the Query of ``caption`` from its clauses (as :meth:`clauses` cuts it)."""
        # Two subjects: the kind is the one with more votes, so the vote difference decides.
        lead = clauses[0][2].lead if len(clauses) == 1 else sum([c.lead for _, _, c in clauses])
        k = 0 if lead > 0 else 1 if lead < 0 else 2
        kind = _KINDS[k]

        if len(clauses) == 1:
            r = self.reading(clauses[0][2], k)
            stated, sets, spans, unmatched, unsupported = dict(r.first), r.sets, r.spans, r.unmatched, r.unsupported
        else:
            stated = {}
            placed: list[Span] = []
            missed: list[str] = []
            set_list: list[Constraint] = []
            odd: list[str] = []
            firsts: list[dict[str, str]] = []
            n_values = 0
            for offset, text, clause in clauses:
                r = clause.readings[k] or self.reading(clause, k)
                if r.first:
                    stated.update(r.first)
                    firsts.append(r.first)
                    n_values += len(r.first)
                if r.spans:
                    placed += self._placed_spans(text, offset, k) if offset else r.spans
                if r.extra:
                    missed += r.unmatched
                    set_list += r.sets
                    odd += r.unsupported
            if len(stated) != n_values:  # a group stated in two clauses ("female" ... "She")
                # Keys kept their first-mention order; the first mention's value wins too.
                last_wins = dict(stated)
                for first in reversed(firsts):
                    stated.update(first)
                if stated != last_wins:  # some group got two different values
                    odd += self._second_values(stated, clauses, k)
            spans, unmatched, sets, unsupported = tuple(placed), tuple(missed), set_list, tuple(odd)

        if kind is None:
            return Query(caption, None, spans=spans, unmatched=unmatched, unsupported=unsupported)
        negated: dict[str, tuple[str, ...]] = {}
        either: dict[str, tuple[str, ...]] = {}
        any_of: tuple[tuple[str, ...], ...] = ()
        if sets:
            if any(c[1] == ANY for c in sets):
                any_of = _any_of(stated, [c[2] for c in sets if c[1] == ANY])
                sets = [c for c in sets if c[1] != ANY]
            negated, either = self._resolve(stated, sets, kind)
        implied: dict[str, str] = {}
        if kind == "pedestrian":
            form = None
            if len(clauses) == 2 and clauses[0][1] in self._first_sentences:
                form = self._sentence_form.get(clauses[1][1])
            if form is None:
                form = track2_form(caption)
            if form is not None:
                implied = implied_values(stated, form)
        groups = self._groups[kind]
        if len(stated) + len(implied) + len(negated) + len(either) == len(groups):
            unknown: tuple[str, ...] = ()  # every group known (the disjoint parts cover them)
        else:
            anyg = {g for a in any_of for g in a}
            unknown = tuple([g for g in groups if g not in stated and g not in implied and g not in negated
                             and g not in either and g not in anyg])
        return Query.make(caption, kind, stated, implied, unknown, spans, unmatched, negated, either, unsupported, any_of)

    def _second_values(self, stated: dict[str, str], clauses: list[tuple[int, str, Clause]], k: int) -> list[str]:
        """Words of clauses that state another class for a group an earlier clause stated
        ("a red car. A white one."): unsupported, since a group has one value."""
        out = []
        for _, _, clause in clauses:
            r = self.reading(clause, k)
            for group, cls in r.first.items():
                if stated[group] != cls:
                    out += [s.text for s in r.spans if s.group == group and s.cls == cls and s.relation == STATED][:1]
        return out

    def _resolve(self, stated: dict[str, str], sets: Iterable[Constraint], kind: str) -> tuple[dict, dict]:
        """Step 6 for set constraints: exclusions and alternatives per group, in schema order.

        A stated value wins over any set of its group. Alternatives minus exclusions are what
        an alternative group allows; a set that leaves one class states it (added to
        ``stated``), one that allows every class (or none) constrains nothing.
        """
        excluded: dict[str, set[str]] = {}
        allowed: dict[str, set[str]] = {}
        for group, rel, classes in sets:
            if group not in stated:
                (excluded if rel == NEGATED else allowed).setdefault(group, set()).update(classes)
        negated: dict[str, tuple[str, ...]] = {}
        either: dict[str, tuple[str, ...]] = {}
        for group in self._groups[kind]:
            classes = self._classes[kind][group]
            if group in allowed:
                keep = tuple(c for c in classes if c in allowed[group] and c not in excluded.get(group, ()))
                target = either
            elif group in excluded:
                keep = tuple(c for c in classes if c not in excluded[group])
                target = negated
            else:
                continue
            if len(keep) == 1:
                stated[group] = keep[0]
            elif 0 < len(keep) < len(classes):
                target[group] = keep if target is either else tuple(c for c in classes if c not in keep)
        return negated, either

    def place_spans(self, text: str, offset: int, k: int) -> tuple[Span, ...]:
        """The spans of clause ``text`` for kind number ``k``, moved to ``offset`` in a caption.

        Cached like clauses: building Span objects is a large share of a caption's cost, and
        a clause sits at only a few offsets (after each phrasing of the clauses before it).
        """
        spans = self.reading(self._grammar_clauses.get(text) or self._read_clause(text), k).spans
        # tuple.__new__ on the fields in Span order: 2.5x faster than calling Span(...).
        return tuple([_new_tuple(Span, (s[0], s[1] + offset, s[2] + offset, *s[3:])) for s in spans])

    def read_clause(self, text: str) -> Clause:
        """Steps 1-4 and 7 on ``text`` alone (uncached; a whole caption is a valid clause too)."""
        # TOKEN over each whitespace-separated piece gives TOKEN over the text; most pieces
        # are one plain word, which needs no regular expression (5x faster on Track-2 clauses).
        toks: list[str] = []
        for piece in text.split():
            if piece.isalnum():
                toks.append(piece)
            else:
                toks += TOKEN.findall(piece)
        n = len(toks)
        lows = [t.lower() for t in toks] if text.isascii() else [fold(t) for t in toks]
        if "/" in lows and self._abbreviations:  # "w/": every token of it reads as "with"
            for j in range(n):
                if self._neg_phrase_at(lows, j):
                    continue  # "w/o" is an exclusion, not "w/" then "o"
                for abbr, word in self._abbreviations.items():
                    if tuple(lows[j : j + len(abbr)]) == abbr:
                        lows[j : j + len(abbr)] = [word] * len(abbr)
        starts: list[int] = []
        pos = 0
        for t in toks:
            pos = text.find(t, pos)
            starts.append(pos)
            pos += len(t)

        # 1. exact phrases
        phrases = self._phrases
        cands: list[tuple[int, int, int, bool]] = []  # (start, end, entry, fuzzy)
        for i in range(n):
            opts = phrases.get(lows[i])
            if opts is not None:
                for ptoks, size, entry in opts:
                    if size == 1 or lows[i : i + size] == ptoks:
                        cands.append((i, i + size, entry, False))
        if self._key_first.intersection(lows):
            cands += self._key_value_spans(lows)
        if self._ages is not None and any(w[:1].isdigit() or w in self._ages.decades for w in lows):
            cands += self._age_spans(lows, toks, starts)
        if self._clothing is not None and not self._clothing.colours.keys().isdisjoint(lows):
            cands = self._colour_spans(lows, cands)
        covered = [False] * n
        for s, e, _, _ in cands:
            for j in range(s, e):
                covered[j] = True

        # 2. leftover content words, fuzzed when long enough
        ignore, cues, ors = self._ignore, self._neg_cues, self._or
        cue_at: dict[int, int] = {}  # exclusion phrases ("other than", "w/o"): start -> length
        if self._neg_phrase_first.intersection(lows):
            j = 0
            while j < n:
                size = 0 if covered[j] else self._neg_phrase_at(lows, j)
                if size and not any(covered[j : j + size]):
                    cue_at[j] = size
                    for t in range(j, j + size):
                        covered[t] = True
                    j += size
                else:
                    j += 1
        leftovers = [j for j in range(n) if not covered[j] and lows[j].isalnum() and lows[j] not in ignore
                     and lows[j] not in cues and lows[j] not in ors]
        fuzzable = [False] * n
        any_fuzz = False
        for j in leftovers:
            w = lows[j]
            if len(w) >= MIN_FUZZY_LEN and w.isalpha() and w not in self._keep:
                fuzzable[j] = any_fuzz = True
        if any_fuzz:
            usable = [w.isalnum() or w == "-" for w in lows]
            for hit in self._fuzzy.search(lows, fuzzable, usable):
                cands.append((hit.start, hit.end, hit.entry, True))

        # 3. overlaps: longest, then exact before fuzzy, then earliest
        if len(cands) > 1 or any_fuzz:
            cands.sort(key=lambda c: (c[0] - c[1], c[3], c[0]))
            taken = [False] * n
            chosen: list[tuple[int, int, int, bool]] = []
            for c in cands:
                if not any(taken[c[0] : c[1]]):
                    for j in range(c[0], c[1]):
                        taken[j] = True
                    chosen.append(c)
        else:
            chosen = cands
            taken = covered
        span_at = {c[0]: c for c in chosen}
        if any(self._yields[c[2]] for c in chosen):  # "holding a handbag": the handbag, not holding
            ignore_ = self._ignore
            for c in list(chosen):
                if self._yields[c[2]]:
                    j = c[1]
                    while j < n and lows[j] in ignore_ and j not in span_at:
                        j += 1
                    nxt = span_at.get(j)
                    said = self._meaning[nxt[2]] if nxt is not None else None
                    if said is not None and any(g in self._yields[c[2]] for g, _, _ in (*said[1], *(said[2] or ()))):
                        del span_at[c[0]]

        # 4. mentions: (start, end, entry, fuzzy, negated, chain)
        mentions: list[tuple[int, int, int, bool, bool, int]] = []
        breaks, kv, yes, no = self._neg_breaks, _KEY_VALUE, self._yes, self._no
        neg = pending_or = prefix = begun = False  # begun: the negated phrase has started
        openers = self._openers
        last = -1  # the previous mention, while only ignorable words follow it
        listed: list[int] = []  # mentions of a comma list just before ("red, white or blue")
        i = 0
        while i < n:
            c = span_at.get(i)
            if c is not None:
                if neg and begun and lows[i] in openers:  # "no cap holding a cup": the verb's phrase is not negated
                    neg, last, pending_or = False, -1, False
                end, negd = c[1], neg
                skip = 0
                if end + 1 < n and lows[end] in kv and (lows[end + 1] in yes or lows[end + 1] in no):
                    negd = (lows[end + 1] in no) != neg
                    skip = 2
                elif end < n and (lows[end] in yes or lows[end] in no) and (end + 1 == n or lows[end + 1] in _VALUE_END):
                    negd = (lows[end] in no) != neg  # "hat no", "backpack yes": a value with no separator
                    skip = 1
                chain = len(mentions)
                if pending_or and last >= 0 and not negd and not mentions[last][4]:
                    chain = mentions[last][5]
                    self._join_list(mentions, listed, last, c[2])
                mentions.append((i, end, c[2], c[3], negd, chain))
                last, pending_or = len(mentions) - 1, False
                begun = begun or neg
                if prefix:
                    neg = prefix = False
                i = end + skip
                continue
            w = lows[i]
            cue = cue_at.get(i, 0)
            if cue:  # "anything but", "other than", "except": an exclusion reads as "not"
                neg, begun, last, pending_or, prefix = True, False, -1, False, False
                i += cue
                continue
            if w in cues:
                neg, begun, last, pending_or = True, False, -1, False
                prefix = i + 1 < n and lows[i + 1] == "-" and starts[i + 1] == starts[i] + len(toks[i])  # "non-black": one word
            elif w in ors:
                pending_or = last >= 0
            elif w == "-" and 0 < i < n - 1 and starts[i - 1] + len(toks[i - 1]) == starts[i] == starts[i + 1] - 1:
                pass  # a hyphen inside a word ("non-black") ends nothing; a free-standing dash does
            elif w == "," and last >= 0 and not pending_or:  # a list goes on: "black, white, or grey"
                listed = [*listed, last] if listed and listed[-1] == last - 1 else [last]
                neg = False
            elif not w.isalnum() or (w in breaks and (begun or not neg)):
                neg, last, pending_or = False, -1, False  # a break right after a cue ("never has a hat") is the cue's own verb
                listed = []
            elif w in openers and begun:  # a new phrase after the negated one: "without a scarf carrying ..."
                neg, last, pending_or = False, -1, False
            elif w not in ignore and w not in openers:  # a content word nothing explains
                last, pending_or = -1, False
                begun = begun or neg
            i += 1

        # 5 (votes) and 7 (unmatched runs), per caption kind
        votes = dict.fromkeys(SUBJECTS, 0)
        for m in mentions:
            subject, _, _, cue = self._meaning[m[2]]
            votes[subject] += 2 if cue else 1
        base = [0] * n  # 1: content word nothing explains; 2: joiner word
        for j in leftovers:
            if not taken[j]:
                base[j] = 1
        joiners = self._joiners
        for j in range(n):
            if not taken[j] and lows[j] in joiners:
                base[j] = 2
        return Clause(tuple(votes[s] for s in SUBJECTS), votes["pedestrian"] - votes["vehicle"], text, tuple(toks),
                      tuple(starts), tuple(mentions), tuple(base))

    def _colour_spans(self, lows: list[str], cands: list[tuple[int, int, int, bool]]) -> list[tuple[int, int, int, bool]]:
        """Step 1b: each run of colour words bound to a garment (or standing alone after "in",
        "wearing", ...) becomes one candidate per colour, replacing the one-word candidates
        there (the vehicle colour); other colour words are left as they are."""
        cl = self._clothing
        colours, conn, between = cl.colours, cl.connectors, cl.between
        n = len(lows)
        bound: dict[int, int] = {}  # token -> entry
        i = 0
        while i < n:
            if lows[i] not in colours:
                i += 1
                continue
            run = [i]  # colour tokens joined by connectors
            j = i + 1
            while j < n:
                if lows[j] in colours:
                    run.append(j)
                elif lows[j] not in conn:
                    break
                j += 1
            while j > run[-1] + 1 and lows[j - 1] in conn:  # a trailing "and" belongs to what follows
                j -= 1
            g = j
            while g < n and lows[g] in between and lows[g] not in cl.garments:
                g += 1
            family = cl.garments.get(lows[g]) if g < n else None
            if family is not None:
                for t in run:
                    entry = self._colour_entry.get((family, colours[lows[t]]))
                    if entry is not None:
                        bound[t] = entry
            else:
                b = i - 1
                while b >= 0 and lows[b] in cl.all_words:
                    b -= 1
                ends = j >= n or not lows[j].isalnum() or lows[j] in self._neg_breaks or lows[j] in self._or
                if b >= 0 and lows[b] in cl.alone_after and ends:
                    for t in run:
                        entry = self._alone_entry.get(colours[lows[t]])
                        if entry is not None:
                            bound[t] = entry
            i = max(j, i + 1)
        if not bound:
            return cands
        kept = [c for c in cands if not (c[1] - c[0] == 1 and c[0] in bound)]
        return kept + [(t, t + 1, entry, False) for t, entry in bound.items()]

    def _neg_phrase_at(self, lows: list[str], i: int) -> int:
        """The length of the exclusion phrase ("other than", "except") starting at token ``i``, or 0;
        "but" counts when one of ``but_after`` comes within the three tokens before it ("any car but")."""
        for toks in self._neg_phrases.get(lows[i], ()):
            if tuple(lows[i : i + len(toks)]) == toks:
                return len(toks)
        if lows[i] == "but" and self._but_after.intersection(lows[max(0, i - 3) : i]):
            return 1
        return 0

    def _key_value_spans(self, lows: list[str]) -> list[tuple[int, int, int, bool]]:
        """``key: value`` forms a phrase does not cover, as candidates (step 1): a key naming a
        group (its name, plural or another name from ``[keys]``: "sleeve", "gender", "make"),
        then ':' or '=' or nothing, then one of the group's classes or short forms ("short",
        "M") or a yes / no word for a yes/no group; without a separator the value must end the
        clause or come before a comma. A key that is itself a phrase with a yes / no value
        ("hat: no", "bag: none") is the mention's own `key: value` (step 4), not this."""
        out = []
        n = len(lows)
        for i in range(n):
            if lows[i] not in self._key_first:
                continue
            for size in (3, 2, 1):
                owner = self._keys.get(tuple(lows[i : i + size]))
                if owner is None:
                    continue
                j = i + size
                sep = j < n and lows[j] in _KEY_VALUE
                j += sep
                if j >= n:
                    break
                forms = self._key_values[owner]
                classes = self._classes[owner[0]][owner[1]]
                hit = None
                for vsize in (3, 2, 1):
                    cls = forms.get(tuple(lows[j : j + vsize]))
                    if cls is not None and j + vsize <= n:
                        hit = (cls, vsize)
                        break
                if hit is None and set(classes) == {"yes", "no"} and (lows[j] in self._yes or lows[j] in self._no):
                    hit = ("yes" if lows[j] in self._yes else "no", 1)
                if hit is None:
                    break
                end = j + hit[1]
                if not sep and end < n and lows[end] not in _VALUE_END:
                    break
                if (lows[j] in self._yes or lows[j] in self._no) and tuple(lows[i : i + size]) in self._phrase_keys:
                    break  # the mention's own key: value (step 4) keeps what its entry says ("bag: none")
                out.append((i, end, self._rule_entry[(owner[0], owner[1], (hit[0],))], False))
                break
        return out

    def _age_spans(self, lows: list[str], toks: list[str], starts: list[int]) -> list[tuple[int, int, int, bool]]:
        """Ages no phrase lists, as candidates (step 1): decades ("sixties", "late fifties",
        "40s"), a number after an approximation word ("around 40", "a girl of 15"), comparisons
        ("under 30", "older than 45") and ranges ("25-35", "15 to 25", "between 30 and 45")
        beside an age word. The years map onto the
        age classes (lexicon ``[numbers]``); a span across a class boundary allows both."""
        ages = self._ages
        assert ages is not None
        out = []
        n = len(lows)

        def add(a: int, b: int, lo: int, hi: int) -> None:
            run = ages.classes(lo, hi)
            if run:
                out.append((a, b, self._rule_entry[("pedestrian", ages.group, run)], False))

        for i, w in enumerate(lows):
            decade = ages.decades.get(w)
            if decade is None and len(w) == 3 and w.endswith("0s") and w[0].isdigit():
                decade = int(w[:2])  # "40s"
            if decade is not None:
                lo, hi = (decade, 19) if decade == 13 else (decade, decade + 9)
                a = i
                part = lows[i - 1] if i else ""
                if part == "-" and i >= 2 and lows[i - 2] in _DECADE_PART:  # "mid-forties"
                    part, a = lows[i - 2], i - 2
                elif part in _DECADE_PART:
                    a = i - 1
                if part in _DECADE_PART:
                    first, last = _DECADE_PART[part]
                    lo, hi = (decade + first, decade + last) if decade != 13 else (lo, hi)
                add(a, i + 1, lo, hi)
                continue
            if not w.isdigit() or int(w) > 120:
                continue
            before = lows[i - 1] if i else ""
            if before in _KEY_VALUE and i >= 2 and lows[i - 2] in ages.approximately:
                before = lows[i - 2]  # "age: 30"
            if before in ages.range_words or (before.isdigit() and i >= 2):
                continue  # the second number of a range, read with the first
            k = i + 1
            if k + 1 < n and lows[k] in ages.range_words and lows[k + 1].isdigit() and int(w) < int(lows[k + 1]) <= 120:
                if lows[k] == "and" and before != "between":
                    continue
                context = before in ages.approximately or before == "between" or (k + 2 < n and lows[k + 2] in ages.units)
                if context:
                    add(i - (before == "between"), k + 2, int(w), int(lows[k + 1]))
                continue
            than = i >= 2 and before == "than"
            word = lows[i - 2] if than else before
            if word in ages.below or word in ages.above:  # "under 30", "older than 45"
                lo, hi = (0, int(w) - 1) if word in ages.below else (int(w) + 1, 120)
                add(i - 1 - than, k, lo, hi)
            elif before in ages.approximately and (
                    (i >= 2 and lows[i - 2] in _AGE_WORDS) or before in _AGE_WORDS  # "aged around 25 carrying ..."
                    or k == n or lows[k] in ages.units or not lows[k].isalnum() or lows[k] in _VALUE_END
                    or lows[k] in self._neg_breaks or lows[k] in self._openers):
                add(i, k, int(w), int(w))
            elif k + 1 < n and lows[k] == "-" and lows[k + 1] == "ish":
                add(i, k + 2, int(w), int(w))
        return out

    def _join_list(self, mentions: list[tuple[int, int, int, bool, bool, int]], listed: list[int], last: int,
                   entry: int) -> None:
        """Alternatives written as a list ("red, white or blue"): the comma-separated mentions
        right before ``last`` (the one "or" links ``entry`` to) join its alternative, as long
        as they name the same single group ("male, backpack, hat or cap" keeps "male" and
        "backpack" apart)."""
        if listed and listed[-1] == last:  # "white" of "black, white, or grey": "or" links it already
            listed = listed[:-1]
        if not listed or listed[-1] != last - 1:
            return
        group = self._list_key(entry)
        if group is None:
            return
        chain = mentions[last][5]
        for j in reversed(listed):
            m = mentions[j]
            if m[4] or self._list_key(m[2]) != group:
                break
            mentions[j] = (*m[:5], chain)

    def _list_key(self, entry: int) -> object:
        """What the mentions of a comma list must share to join one alternative: their single
        group, or, for the yes of yes/no groups of one multi-label group ("red, white or blue
        shirt"), that group's family; None: a mention that cannot join a list."""
        triples = self._meaning[entry][1]
        groups = {g for g, _, _ in triples}
        if len(groups) == 1 and not (len(triples) == 1 and triples[0][1] == STATED and triples[0][0] in self._family_of):
            return groups.pop()
        families = {self._family_of.get(g) for g, _, c in triples if c == "yes"}
        return ("family", families.pop()) if len(families) == 1 and None not in families and len(triples) == 1 else None

    def reading(self, clause: Clause, k: int) -> Reading:
        """What ``clause`` says for a caption of kind number ``k`` (built once, kept in the clause)."""
        r = clause.readings[k]
        if r is None:
            r = clause.readings[k] = self._reading(_KINDS[k], clause)
        return r

    def _reading(self, kind: str | None, clause: Clause) -> Reading:
        """``clause`` read for a caption of ``kind``: its values, sets, spans and leftovers."""
        text, toks, starts, mentions, base = clause.text, clause.toks, clause.starts, clause.mentions, clause.base
        meaning = self._meaning
        values: list[tuple[str, str]] = []
        stated_by: dict[str, set[str]] = {}  # group -> the classes ``values`` holds for it
        sets: list[Constraint] = []
        spans: list[Span] = []
        unsupported: list[str] = []
        flags = base
        chains: dict[int, list[tuple[int, int, int, bool, bool, int]]] = {}
        for m in mentions:
            if meaning[m[2]][0] != kind:
                if flags is base:
                    flags = list(base)  # type: ignore[assignment]
                for j in range(m[0], m[1]):
                    flags[j] = 1
            else:
                chains.setdefault(m[5], []).append(m)

        def words(a: int, b: int) -> tuple[str, int, int]:
            s, e = starts[a], starts[b - 1] + len(toks[b - 1])
            return text[s:e], s, e

        # An alternative with a member that states nothing ("a red car or a Toyota": "car")
        # is an alternative between the whole phrases: the mentions right before that member
        # ("red") belong to it, so they are not stated on their own.
        pulled: dict[int, int] = {}  # chain -> token where its phrase starts
        for chain, ms in chains.items():
            if len(ms) > 1 and not all(meaning[m[2]][1] for m in ms):
                at = mentions.index(ms[0])
                while at > 0 and mentions[at - 1][1] == mentions[at][0] and meaning[mentions[at - 1][2]][0] == kind:
                    at -= 1
                pulled[chain] = mentions[at][0]
        if pulled:
            cut = sorted(pulled.items(), key=lambda x: x[1])
            chains = {c: ms for c, ms in chains.items()
                      if c in pulled or not any(a <= ms[0][0] < chains[p][0][0] for p, a in cut)}
        for chain, ms in chains.items():
            if chain in pulled:
                unsupported.append(words(pulled[chain], ms[-1][1])[0])
                continue
            if len(ms) == 1:
                start, end, entry, fuzzy, negd, _ = ms[0]
                triples = meaning[entry][2] if negd else meaning[entry][1]
                w, a, b = words(start, end)
                if triples is None:
                    unsupported.append(w)
                    continue
                if triples and triples[0][1] == ANY:  # "dressed in red": one constraint over its groups
                    spans += [Span(w, a, b, group, cls, fuzzy, ANY) for group, _, cls in triples]
                    sets.append(("", ANY, tuple(group for group, _, _ in triples)))
                    continue
                for group, rel, cls in triples:
                    spans.append(Span(w, a, b, group, cls, fuzzy, rel))
                    if rel != STATED:
                        sets.append((group, rel, (cls,)))
                    elif stated_by.get(group, {cls}) != {cls}:  # a set per group: linear, a 600 kB caption included
                        unsupported.append(w)  # a second value for the group ("a red and white bus")
                    else:
                        values.append((group, cls))
                        stated_by.setdefault(group, set()).add(cls)
                continue
            pairs = [meaning[m[2]][1] for m in ms]
            groups = {g for p in pairs for g, _, _ in p}
            yes_no = self._classes.get(kind or "", {})
            if len(groups) > 1 and all(rel in (STATED, ANY) and cls == "yes" and yes_no.get(g) == ("yes", "no")
                                       for p in pairs for g, rel, cls in p):
                # alternatives across yes/no groups ("black or grey trousers"): at least one is yes
                for m, p in zip(ms, pairs):
                    w, a, b = words(m[0], m[1])
                    spans += [Span(w, a, b, g, cls, m[3], ANY) for g, _, cls in p]
                sets.append(("", ANY, tuple(dict.fromkeys(g for p in pairs for g, _, _ in p))))
                continue
            if len(groups) != 1 or any(len(p) != 1 for p in pairs):
                unsupported.append(words(ms[0][0], ms[-1][1])[0])
                continue
            (group,) = groups
            classes = tuple(dict.fromkeys(p[0][2] for p in pairs))
            rel = STATED if len(classes) == 1 else EITHER
            for m, p in zip(ms, pairs):
                w, a, b = words(m[0], m[1])
                spans.append(Span(w, a, b, group, p[0][2], m[3], rel))
            if rel == STATED:
                values.append((group, classes[0]))
                stated_by.setdefault(group, set()).add(classes[0])
            else:
                sets.append((group, EITHER, classes))

        unmatched: list[str] = []
        n = len(flags)
        j = 0
        while j < n:
            if flags[j]:
                e, content = j, False
                while e < n and flags[e]:
                    content = content or flags[e] == 1
                    e += 1
                if content:
                    unmatched.append(words(j, e)[0])
                j = e
            else:
                j += 1
        return Reading(_first_mentions(values), tuple(sets), tuple(spans), tuple(unmatched), tuple(unsupported),
                       bool(sets or unmatched or unsupported))

    # ------------------------------------------------------------------ internals
    def _parse(self, caption: str) -> Query:
        m = self._vehicle_line.fullmatch(caption)
        if m is not None and m.lastindex:
            return self._vehicle_query(caption, m)
        return self.join(caption, self.clauses(caption))

    def _vehicle_query(self, caption: str, m: re.Match[str]) -> Query:
        """A Track-2 vehicle caption read from its slots (grammar.track2_vehicle_pattern): what
        the lexicon path gives for it, at a fraction of the cost."""
        stated: dict[str, str] = {}
        spans: list[Span] = []
        for group in ("color", "brand", "type"):
            cls = m.group(group)
            if cls is not None:
                stated[group] = cls
                spans.append(Span(cls, m.start(group), m.end(group), group, cls))
        unknown = tuple([g for g in self._vehicle_groups if g not in stated])
        return Query.make(caption, "vehicle", stated, {}, unknown, tuple(spans), (), {}, {}, ())


def _any_of(stated: dict[str, str], alternatives: list[tuple[str, ...]]) -> tuple[tuple[str, ...], ...]:
    """Step 6 for alternatives across yes/no groups: one already stated yes is met (dropped);
    groups stated no leave them; a single group left is stated yes; none left: dropped (the
    caption contradicts itself, and the stated values win)."""
    out: list[tuple[str, ...]] = []
    for groups in alternatives:
        if any(stated.get(g) == "yes" for g in groups):
            continue
        left = tuple(g for g in groups if g not in stated)
        if len(left) == 1:
            stated[left[0]] = "yes"
        elif left and left not in out:
            out.append(left)
    return tuple(out)


def _copy(q: Query, caption: str) -> Query:
    """``q`` for ``caption`` with fresh dicts (a caller may mutate its copy, not the cache's)."""
    return Query.make(caption, q.kind, dict(q.stated), dict(q.implied), q.unknown, q.spans, q.unmatched,
                      dict(q.negated), dict(q.either), q.unsupported, q.any_of)
