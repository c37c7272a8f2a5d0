"""The parser's lexicon: phrases -> attribute values, loaded from data and checked against the schema.

The lexicon is data (``lexicon.toml`` beside this module) so that vocabulary work never
touches matching code, and it is validated against the schema at load so that a renamed
class fails loudly here instead of silently never matching. Vehicle colour, type and brand
class names are taken from the schema itself: adding a brand to ``vehicle.toml`` makes the
parser recognise it with no lexicon edit.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from attrret.schema import SUBJECTS, Schema

__all__ = ["Entry", "Lexicon", "load_lexicon", "LexiconError"]


class LexiconError(ValueError):
    """The lexicon file contradicts the schema or itself."""


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


@dataclass(frozen=True)
class Lexicon:
    entries: tuple[Entry, ...]
    negation_cues: frozenset[str]
    negation_breaks: frozenset[str]
    ignore: frozenset[str]
    source: str

    def negation_of(self, entry: Entry, schema: Schema) -> tuple[tuple[str, str], ...]:
        """What a negated mention of ``entry`` states.

        Declared ``negated`` wins; otherwise a two-class group flips to its other class
        ("no hat" -> no, "no short sleeves" -> long) and a larger group states nothing.
        """
        if entry.negated is not None:
            return entry.negated
        out = []
        for group, cls in entry.sets:
            classes = schema.subject(entry.subject).group(group).classes
            if len(classes) == 2:
                out.append((group, classes[1 - classes.index(cls)]))
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


def load_lexicon(schema: Schema, path: str | Path | None = None) -> Lexicon:
    """Load and validate the lexicon (default: the packaged ``lexicon.toml``)."""
    if path is None:
        text = resources.files("attrret.parser").joinpath("lexicon.toml").read_text(encoding="utf-8")
        source = "attrret/parser/lexicon.toml"
    else:
        text, source = Path(path).read_text(encoding="utf-8"), str(path)
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
            entries.append(Entry(subject, phrases, sets, negated))

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

    seen: dict[str, str] = {}
    for e in entries:
        for p in e.phrases:
            key = " ".join(p.lower().split())
            if key in seen:
                raise LexiconError(f"{source}: phrase {p!r} is declared twice ({seen[key]} and {e.subject})")
            seen[key] = e.subject

    neg = data.get("negation", {})
    ignore = frozenset(w.lower() for w in data.get("ignore", {}).get("words", ()))
    clash = sorted(w for w in ignore if w in seen)
    if clash:
        raise LexiconError(f"{source}: ignored words are also phrases: {', '.join(clash)}")
    return Lexicon(
        entries=tuple(entries),
        negation_cues=frozenset(w.lower() for w in neg.get("cues", ())),
        negation_breaks=frozenset(w.lower() for w in neg.get("breaks", ())),
        ignore=ignore,
        source=source,
    )
