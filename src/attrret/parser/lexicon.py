"""The parser's lexicon: phrases -> attribute values, loaded from data and checked against the schema.

The lexicon is data (``lexicon.toml`` beside this module) so that vocabulary work never
touches matching code, and it is validated against the schema at load so that a renamed
class fails loudly here instead of silently never matching. Vehicle colour, type and brand
class names are taken from the schema itself: adding a brand to ``vehicle.toml`` makes the
parser recognise it with no lexicon edit.

Besides the phrases, the file declares the small closed word classes the parser's rules use
(negation cues and scope breaks, the words that link alternatives, the yes / no values of
``key: value`` forms, stop words, words that join an ignored phrase, real words fuzzy matching
must leave alone), so that the rules read them and never spell words themselves.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from attrret.errors import SchemaError
from attrret.schema import SUBJECTS, Schema

__all__ = ["AgeWords", "ClothingWords", "Entry", "Lexicon", "load_lexicon", "variants", "LexiconError", "fold", "tokenize", "TOKEN", "STATED", "NEGATED", "EITHER", "ANY"]

#: How a mention constrains its group: it states the class, excludes it, allows it among others,
#: or is one of yes/no groups of which at least one is yes (:attr:`attrret.parser.query.Query.any_of`).
STATED, NEGATED, EITHER, ANY = "is", "not", "or", "any"

#: One token: a run of word characters (a contraction's "n't" split off, as in "does|n't"),
#: or one other non-space character. Every non-space character belongs to exactly one token,
#: so punctuation is always a token of its own. Phrases and captions are tokenised alike.
TOKEN = re.compile(r"\w+(?=n['’]t\b)|n['’]t\b|\w+|[^\w\s]", re.IGNORECASE)


def fold(token: str) -> str:
    """A token as phrases are matched: lower case, the typographic apostrophe as ``'``, accents
    dropped ("Citroën" reads as "citroen"). ASCII tokens, nearly all of them, take the short path."""
    low = token.lower()
    if low.isascii():
        return low
    low = low.replace("’", "'")
    return "".join(c for c in unicodedata.normalize("NFKD", low) if not unicodedata.combining(c))


def tokenize(text: str) -> list[str]:
    """Folded tokens of ``text`` (:func:`fold`; the same rule for lexicon phrases and captions)."""
    return [fold(t) for t in TOKEN.findall(text)]


class LexiconError(SchemaError):
    """The lexicon file contradicts the schema or itself (a :class:`SchemaError`: the lexicon
    is part of a schema directory, and the CLI prints it as one line)."""


@dataclass(frozen=True)
class Entry:
    """One lexicon entry: the phrases that share one meaning.

    ``sets`` are the (group, class) pairs a plain mention states; ``negated`` the pairs a
    negated mention states (``None``: derive it, see :meth:`Lexicon.negation_of`); ``cue``
    the subject the words point to for kind detection, if they are a cue word.
    """

    subject: str
    phrases: tuple[str, ...]
    sets: tuple[tuple[str, str], ...] = ()
    negated: tuple[tuple[str, str], ...] | None = None
    cue: str | None = None
    yields_to: tuple[str, ...] = ()  # groups whose mention right after this one replaces it ("holding a handbag")


@dataclass(frozen=True)
class AgeWords:
    """The ``[ages]`` and ``[numbers]`` tables: how ages written as numbers, decades and ranges
    map onto the age group's classes (``ranges``: class -> inclusive years)."""

    group: str
    ranges: tuple[tuple[str, int, int], ...]
    decades: dict[str, int]
    approximately: frozenset[str]
    units: frozenset[str]
    range_words: frozenset[str]
    below: frozenset[str] = frozenset()
    above: frozenset[str] = frozenset()

    def classes(self, lo: int, hi: int) -> tuple[str, ...]:
        """The classes whose years meet ``lo..hi`` (inclusive), in ``ranges`` order."""
        return tuple(c for c, a, b in self.ranges if a <= hi and lo <= b)


@dataclass(frozen=True)
class ClothingWords:
    """The ``[clothing]`` table: which garment words name which multi-label colour group, the
    colour words (class names and synonyms) and the small word classes of the colour rule
    (:class:`attrret.parser.caption.CaptionParser`, step 1b)."""

    garments: dict[str, str]  # garment word -> colour family ("jacket" -> "upper_color")
    colours: dict[str, str]  # colour word -> colour class ("navy" -> "blue")
    connectors: frozenset[str]
    between: frozenset[str]
    alone_after: frozenset[str]
    all_words: frozenset[str]
    families: tuple[str, ...]  # the colour families, in schema order


@dataclass(frozen=True)
class Lexicon:
    entries: tuple[Entry, ...]
    negation_cues: frozenset[str]
    negation_breaks: frozenset[str]
    ignore: frozenset[str]
    source: str
    stop_words: frozenset[str] = frozenset()
    joiners: frozenset[str] = frozenset()  # ignorable alone, part of an ignored phrase beside one
    or_words: frozenset[str] = frozenset()
    yes_words: frozenset[str] = frozenset()
    no_words: frozenset[str] = frozenset()
    fuzzy_keep: frozenset[str] = frozenset()  # real words never fuzzed into a lexicon word
    negation_openers: frozenset[str] = frozenset()  # end a negation once its phrase has begun
    negation_phrases: tuple[tuple[str, ...], ...] = ()  # exclusions read as a cue ("other than")
    keys: dict[tuple[str, ...], tuple[str, str]] = field(default_factory=dict)  # key tokens -> (subject, group)
    key_values: dict[tuple[str, str], dict[tuple[str, ...], str]] = field(default_factory=dict)  # short forms per group
    ages: AgeWords | None = None
    but_after: frozenset[str] = frozenset()  # "any car but a white one": "but" after these excludes
    abbreviations: dict[tuple[str, ...], str] = field(default_factory=dict)  # "w/" -> "with"
    clothing: ClothingWords | None = None

    def negation_of(self, entry: Entry, schema: Schema) -> tuple[tuple[str, str, str], ...] | None:
        """What a negated mention of ``entry`` says, as ``(group, relation, class)`` triples.

        Declared ``negated`` wins (stated values). Otherwise each pair of a one-pair entry
        flips to the other class in a two-class group ("no hat" -> hat = no, "no short
        sleeves" -> long) and excludes its class in a larger group ("no backpack" -> bag not
        backpack). ``None``: the negation cannot be said as constraints ("not a girl" is "not
        female OR not under 18", an alternative across two groups).
        """
        if entry.negated is not None:
            return tuple((g, STATED, c) for g, c in entry.negated)
        if len(entry.sets) > 1:
            return None
        out = []
        for group, cls in entry.sets:
            classes = schema.subject(entry.subject).group(group).classes
            if len(classes) == 2:
                out.append((group, STATED, classes[1 - classes.index(cls)]))
            else:
                out.append((group, NEGATED, cls))
        return tuple(out)


def _check_sets(raw: object, subject: str, schema: Schema, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict):
        raise LexiconError(f"{where}: expected a table {{group = class}}")
    out = []
    sub = schema.subject(subject)
    for group, cls in raw.items():
        try:
            sub.group(group).index(cls)
        except KeyError as exc:
            raise LexiconError(f"{where}: {exc.args[0]}") from None
        out.append((group, cls))
    return tuple(out)


def _words(data: dict, table: str, key: str) -> frozenset[str]:
    return frozenset(w.lower() for w in data.get(table, {}).get(key, ()))


def load_lexicon(schema: Schema, path: str | Path | None = None) -> Lexicon:
    """Load and validate the lexicon: ``path``, else the schema's own (``lexicon.toml`` in its
    directory), else the packaged ``lexicon.toml``."""
    path = path if path is not None else schema.lexicon_path
    if path is None:
        text = resources.files("attrret.parser").joinpath("lexicon.toml").read_text(encoding="utf-8")
        source = "attrret/parser/lexicon.toml"
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise LexiconError(f"{source}: missing; a schema directory holds the parser's lexicon.toml too "
                               "(copy the packaged one, see docs/schema.md)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise LexiconError(f"{source}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LexiconError(f"{source}: {exc}") from None

    entries: list[Entry] = []
    for subject in SUBJECTS:
        for i, raw in enumerate(data.get(subject, [])):
            where = f"{source}: [[{subject}]] #{i + 1}"
            phrases = tuple(raw.get("phrases", ()))
            if not phrases or not all(isinstance(p, str) and p.strip() for p in phrases):
                raise LexiconError(f"{where}: needs a non-empty list of phrases")
            sets = _check_sets(raw.get("set", {}), subject, schema, where)
            negated = _check_sets(raw["negated"], subject, schema, where) if "negated" in raw else None
            yields = tuple(raw.get("yields_to", ()))
            bad = [g for g in yields if g not in schema.subject(subject).group_names]
            if bad:
                raise LexiconError(f"{where}: yields_to names no {subject} group: {', '.join(bad)}")
            entries.append(Entry(subject, phrases, sets, negated, yields_to=yields))

    # Ages as numbers: every form with every number of each class's range (pedestrian phrases).
    numbers = data.get("numbers")
    if numbers:
        where = f"{source}: [numbers]"
        for cls, (lo, hi) in numbers.get("ranges", {}).items():
            sets = _check_sets({numbers["group"]: cls}, "pedestrian", schema, where)
            phrases = tuple(f.format(n=n) for n in range(int(lo), int(hi) + 1) for f in numbers.get("forms", ()))
            entries.append(Entry("pedestrian", phrases, sets))

    # Vehicle class names come from the schema, so the vocabulary has one home.
    for group in schema.vehicle.groups:
        for cls in group.classes:
            entries.append(Entry("vehicle", (cls,), ((group.name, cls),)))

    # Kind cue words: attach to the entry with the same phrase, or stand alone.
    kind = data.get("kind", {})
    for subject, words in kind.items():
        if subject not in SUBJECTS:
            raise LexiconError(f"{source}: [kind] {subject!r} is not a subject ({', '.join(SUBJECTS)})")
        for word in words:
            hit = next((j for j, e in enumerate(entries) if word.lower() in (p.lower() for p in e.phrases)), None)
            if hit is None:
                entries.append(Entry(subject, (word,), (), None, cue=subject))
                continue
            e = entries[hit]
            if e.subject != subject:
                raise LexiconError(f"{source}: cue {word!r} of {subject} is a {e.subject} phrase")
            # Split the cue word off its entry so that only it carries the cue.
            rest = tuple(p for p in e.phrases if p.lower() != word.lower())
            cue_entry = Entry(e.subject, (word,), e.sets, e.negated, cue=subject)
            if rest:
                entries[hit] = Entry(e.subject, rest, e.sets, e.negated)
                entries.append(cue_entry)
            else:
                entries[hit] = cue_entry

    entries = variants(entries, data.get("variants", {}), _words(data, "ignore", "words"))
    seen: dict[tuple[str, ...], str] = {}
    for e in entries:
        for p in e.phrases:
            key = tuple(tokenize(p))
            if key in seen:
                raise LexiconError(f"{source}: phrase {p!r} is declared twice ({seen[key]} and {e.subject})")
            seen[key] = e.subject

    keys, key_values = _keys(data, schema, source, seen)
    ages = None
    if numbers and "ages" in data:
        raw = data["ages"]
        ages = AgeWords(numbers["group"], tuple((c, int(lo), int(hi)) for c, (lo, hi) in numbers.get("ranges", {}).items()),
                        {k.lower(): int(v) for k, v in raw.get("decades", {}).items()},
                        frozenset(w.lower() for w in raw.get("approximately", ())), frozenset(w.lower() for w in raw.get("units", ())),
                        frozenset(w.lower() for w in raw.get("range_words", ())), frozenset(w.lower() for w in raw.get("below", ())),
                        frozenset(w.lower() for w in raw.get("above", ())))
    neg = data.get("negation", {})
    ignore = _words(data, "ignore", "words")
    stop = _words(data, "ignore", "stop_words")
    single = {k[0] for k in seen if len(k) == 1}
    clash = sorted(w for w in ignore if w in single)  # stop words are generic: phrases simply match first
    if clash:
        raise LexiconError(f"{source}: ignored words are also phrases: {', '.join(clash)}")
    return Lexicon(
        entries=tuple(entries),
        negation_cues=frozenset(w.lower() for w in neg.get("cues", ())),
        negation_breaks=frozenset(w.lower() for w in neg.get("breaks", ())),
        ignore=ignore,
        source=source,
        stop_words=stop,
        joiners=_words(data, "ignore", "joiners"),
        or_words=_words(data, "alternatives", "words"),
        yes_words=_words(data, "values", "yes"),
        no_words=_words(data, "values", "no"),
        fuzzy_keep=_words(data, "fuzzy", "keep"),
        negation_openers=frozenset(w.lower() for w in neg.get("openers", ())),
        negation_phrases=tuple(sorted({tuple(tokenize(p)) for p in neg.get("phrases", ())}, key=len, reverse=True)),
        keys=keys,
        key_values=key_values,
        ages=ages,
        but_after=frozenset(w.lower() for w in neg.get("but_after", ())),
        abbreviations={tuple(tokenize(k)): str(v).lower() for k, v in data.get("abbreviations", {}).items()},
        clothing=_clothing(data, schema, source),
    )


def _clothing(data: dict, schema: Schema, source: str) -> ClothingWords | None:
    """The ``[clothing]`` table checked against the schema's multi-label colour groups (None:
    no such table, as in a schema without them)."""
    table = data.get("clothing")
    if not table:
        return None
    families = schema.pedestrian.families
    garments: dict[str, str] = {}
    known = ("colours", "connectors", "between", "alone_after", "all_words")
    for family, words in table.items():
        if family in known:
            continue
        if family not in families:
            raise LexiconError(f"{source}: [clothing] {family!r} is not a multi-label group of the schema "
                               f"({', '.join(families) or 'it has none'})")
        for w in words:
            w = fold(w)
            if garments.setdefault(w, family) != family:
                raise LexiconError(f"{source}: [clothing] garment {w!r} is in two groups ({garments[w]} and {family})")
    names = {g.label for gs in families.values() for g in gs}
    colours = {c: c for c in names}
    for word, cls in table.get("colours", {}).items():
        if cls not in names:
            raise LexiconError(f"{source}: [clothing.colours] {word} = {cls!r}: not a colour class "
                               f"({', '.join(sorted(names))})")
        colours[fold(word)] = cls
    swaps = dict(data.get("variants", {}).get("spelling", ()))
    swaps |= {b: a for a, b in swaps.items()}
    colours |= {swaps[c]: c for c in names if c in swaps}  # "gray" for grey
    lower = {k: frozenset(fold(w) for w in table.get(k, ())) for k in known[1:]}
    return ClothingWords(garments, colours, lower["connectors"], lower["between"], lower["alone_after"],
                         lower["all_words"], tuple(families))


def variants(entries: list[Entry], table: dict, ignored: frozenset[str]) -> list[Entry]:
    """``entries`` with the surface forms the ``[variants]`` table makes by rule added to each
    (module doc of lexicon.toml's ``[variants]``): space / one word / hyphen forms of two-part
    phrases, plurals of the nouns of ``plural_groups``, and British / American spellings. A form another entry declares, or an ignored
    word, is never added, so a rule cannot change what a listed phrase means."""
    parts = {w.lower() for w in table.get("parts", ())}
    swaps: dict[str, str] = {}
    for a, b in table.get("spelling", ()):
        swaps[a.lower()], swaps[b.lower()] = b.lower(), a.lower()
    owned = {tuple(tokenize(p)) for e in entries for p in e.phrases} | {(w,) for w in ignored}
    plural_groups = set(table.get("plural_groups", ()))

    def forms(phrase: str, plural: bool) -> set[str]:
        toks = phrase.lower().split()
        out: set[str] = set()
        if plural and len(toks) == 1 and toks[0].isalpha() and len(toks[0]) > 2 and not toks[0].endswith("s"):
            w = toks[0]
            out.add(w[:-1] + "ies" if w.endswith("y") and w[-2] not in "aeiou" else w + "es" if w.endswith(("x", "ch", "sh")) else w + "s")
        if len(toks) == 2 and all(t.isalpha() for t in toks):
            out |= {"".join(toks), "-".join(toks)}
        elif len(toks) == 1 and "-" in toks[0] and toks[0].count("-") == 1:
            a, b = toks[0].split("-")
            if a.isalpha() and b.isalpha():
                out |= {a + b, f"{a} {b}"}
        elif len(toks) == 1 and toks[0].isalpha():
            word = toks[0]
            for cut in range(2, len(word) - 1):
                if word[:cut] in parts and word[cut:] in parts:
                    out |= {f"{word[:cut]} {word[cut:]}", f"{word[:cut]}-{word[cut:]}"}
        for form in [phrase.lower(), *out]:
            words = form.split()
            for i, w in enumerate(words):
                if w in swaps:
                    out.add(" ".join([*words[:i], swaps[w], *words[i + 1 :]]))
        return out

    result = []
    for e in entries:
        extra = []
        plural = bool(e.sets) and all(g in plural_groups for g, _ in e.sets) and e.cue is None
        for p in e.phrases:
            for f in sorted(forms(p, plural)):
                key = tuple(tokenize(f))
                if key not in owned:
                    owned.add(key)
                    extra.append(f)
        result.append(Entry(e.subject, (*e.phrases, *extra), e.sets, e.negated, e.cue, e.yields_to) if extra else e)
    return result


def _keys(data: dict, schema: Schema, source: str,
          phrases: dict[tuple[str, ...], str]) -> tuple[dict[tuple[str, ...], tuple[str, str]], dict[tuple[str, str], dict[tuple[str, ...], str]]]:
    """The ``[keys]`` table: key tokens -> (subject, group), every group's name and plural
    included, and per group the value forms -> class (class names, the ``[keys.short]`` forms)."""
    table = data.get("keys", {})
    short = table.get("short", {})
    keys: dict[tuple[str, ...], tuple[str, str]] = {}
    values: dict[tuple[str, str], dict[tuple[str, ...], str]] = {}
    for subject in SUBJECTS:
        for group in schema.subject(subject).groups:
            names = [group.name, group.name + "s", *table.get(group.name, ())]
            for name in names:
                key = tuple(tokenize(name))
                if keys.get(key, (subject, group.name)) != (subject, group.name):
                    raise LexiconError(f"{source}: [keys] {name!r} names two groups ({keys[key][1]} and {group.name})")
                keys[key] = (subject, group.name)
            forms = {tuple(tokenize(c)): c for c in group.classes}
            values[(subject, group.name)] = forms
    for dotted, forms in short.items():
        group_name, _, cls = dotted.partition(".")
        owner = next(((s, g) for s in SUBJECTS for g in schema.subject(s).groups if g.name == group_name), None)
        if owner is None or cls not in owner[1].classes:
            raise LexiconError(f"{source}: [keys.short] {dotted!r} is not a group.class of the schema")
        for f in forms:
            values[(owner[0], group_name)][tuple(tokenize(str(f)))] = cls
    unknown = sorted(g for g in table if g != "short" and not any(g == x.name for s in SUBJECTS for x in schema.subject(s).groups))
    if unknown:
        raise LexiconError(f"{source}: [keys] names no group of the schema: {', '.join(unknown)}")
    return keys, values
