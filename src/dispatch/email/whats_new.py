"""What is new since the edition the reader got before (pure): which bullets to mark "Nytt"
or "Ändrat" (and in a correction "Rättat"), the box at the top that lists them (its line
counts them), and the edition with its sections re-rendered.

The comparison is of the text of every list item in the daily sections (``markup.bullets``:
links with their addresses, without emphasis) against the previous edition's bullets as
the ledger kept them:

- a bullet whose text is anywhere in the previous edition is not news (moved is not new);
- one that resembles a bullet that is gone (difflib ratio at least ``SIMILAR``; pairs taken
  best first, each old bullet once) is "changed";
- any other is "new".

A correction is compared twice: with the edition before its day (the markers the revision it
corrects had: "Nytt" and "Ändrat" always mean "since the day before"), and with the revision
its readers got before ("Rättat"). Which editions those are (the ledger's business) is
decided in ``app.changes``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Sequence

from dispatch.email import markup
from dispatch.email.edition import split_front_matter
from dispatch.email.sections import split_sections
from dispatch.models import Edition, NewsPoint

SIMILAR = 0.6  # below this a rewritten bullet reads as a different point
PREHEADER_LENGTH = 140
# The box's quote of a point (characters): about two lines on a phone, enough to tell the
# points apart. Whole up to BOX_WHOLE; else to a clause break between BOX_MIN and
# BOX_CLAUSE; else the words that fit in BOX_WORDS.
BOX_WHOLE, BOX_MIN, BOX_CLAUSE, BOX_WORDS = 90, 30, 100, 80
# Words a quote must not end on: it would read as cut mid-thought ("publicerades på 1177 och…").
SMALL_WORDS = frozenset({
    "och", "eller", "men", "att", "som", "om", "på", "i", "till", "för", "med", "av", "från", "vid", "under",
    "efter", "inför", "en", "ett", "de", "den", "det", "är", "har", "kan", "ska", "sedan", "samt",
})


def compare(current: Sequence[Sequence[str]], previous: Sequence[str]) -> list[list[str | None]]:
    """Per section, per bullet: "new", "changed" or None (seen before)."""
    return [[kind for kind, _ in section] for section in match(current, previous)]


def match(current: Sequence[Sequence[str]], previous: Sequence[str]) -> list[list[tuple[str | None, str | None]]]:
    """Per section, per bullet: (None, itself) when seen before, ("changed", the previous
    bullet it rewrites) or ("new", None)."""
    seen = set(previous)
    found: list[list[tuple[str | None, str | None]]] = [
        [(None, text) if text in seen or not text else ("new", None) for text in section] for section in current]
    kept = {text for section in current for text in section}
    gone = [text for text in dict.fromkeys(previous) if text not in kept]
    fresh = [(s, b) for s, section in enumerate(current) for b, text in enumerate(section) if found[s][b][0] == "new"]
    pairs = []
    for s, b in fresh:
        for old in gone:
            matcher = difflib.SequenceMatcher(None, old, current[s][b], autojunk=False)
            # quick_ratio is an upper bound: skip the full comparison when it cannot reach SIMILAR.
            if matcher.quick_ratio() >= SIMILAR and (ratio := matcher.ratio()) >= SIMILAR:
                pairs.append((-ratio, s, b, old))
    used_old: set[str] = set()
    for _, s, b, old in sorted(pairs):
        if found[s][b][0] == "new" and old not in used_old:
            found[s][b] = ("changed", old)
            used_old.add(old)
    return found


def summary(new: int, changed: int, since: str, corrected: int = 0, corrected_since: str = "") -> str:
    """The first line of the "what is new" box ("" when nothing is new), its numbers agreeing
    in Swedish: '1 ny punkt', '2 nya punkter', '2 nya och 1 ändrad punkt' (the noun goes with
    the count nearest it), and for a correction ', 1 rättad punkt sedan version 1'."""
    parts = []
    if new and changed:
        parts.append(f"{new} {'ny' if new == 1 else 'nya'} och {_points(changed, 'ändrad', 'ändrade')} sedan {since}")
    elif new or changed:
        parts.append(f"{_points(new, 'ny', 'nya') if new else _points(changed, 'ändrad', 'ändrade')} sedan {since}")
    if corrected:
        parts.append(f"{_points(corrected, 'rättad', 'rättade')} sedan {corrected_since}")
    return ", ".join(parts)


def _points(count: int, one: str, many: str) -> str:
    return f"1 {one} punkt" if count == 1 else f"{count} {many} punkter"


def marked(edition: Edition, previous_text: str | None, since: str,
           revision_texts: Sequence[str] = (), revision_since: str = "") -> Edition:
    """The edition with its bullets marked, the box at the top that lists them, and (unless
    the front matter or a correction sets it) the first marked point as preheader.

    ``previous_text``: the edition before this day's, as its readers got it (None when there
    is none): bullets new or changed against it are "new"/"changed". ``revision_texts``: for
    a correction, the revisions of the day its readers got before, oldest first: the markers
    the last of them had stay, and bullets new or changed against it are "corrected" (see
    ``_corrected``)."""
    if edition.urgent or not edition.markers:
        return dataclasses.replace(edition, news="", news_points=())
    current = [markup.bullets(section.markdown) for section in edition.sections]
    chain = [bullets for bullets in map(_bullets, revision_texts) if bullets]
    marks: list[list[tuple[str, ...]]] = [[(day,) if day else () for day in section]
                                          for section in _against(chain[0] if chain else current, previous_text)]
    # Each revision keeps the markers of the one before it (a bullet corrected in version 2
    # stays "Rättat" in version 3) and adds "corrected" to what it changed or added.
    for earlier, later in zip(chain, [*chain[1:], current], strict=True) if chain else ():
        marks = _corrected(later, earlier, marks)
    sections = tuple(
        dataclasses.replace(section, html=markup.to_html(section.markdown, section_marks),
                            text=markup.to_text(section.markdown, section_marks))
        if any(section_marks) else section
        for section, section_marks in zip(edition.sections, marks, strict=True)
    )
    flat = [kind for section_marks in marks for bullet in section_marks for kind in bullet]
    line = summary(flat.count("new"), flat.count("changed"), since, flat.count("corrected"), revision_since)
    points = tuple(
        NewsPoint(bullet, box_text(label), section.anchor)
        for section, section_marks in zip(edition.sections, marks, strict=True)
        for bullet, label in zip(section_marks, markup.bullets(section.markdown, addresses=False), strict=True)
        if bullet
    )
    firsts = [text for texts, section_marks in zip(current, marks, strict=True)
              for text, mark in zip(texts, section_marks, strict=True) if mark]
    preheader = edition.preheader
    own_preheader = "preheader" in edition.line_of or (edition.revision > 1 and edition.correction)
    if firsts and not own_preheader:
        preheader = _shorten(firsts[0])
    return dataclasses.replace(edition, sections=sections, news=line, news_points=points, preheader=preheader)


def _corrected(current: list[list[str]], earlier: list[list[str]],
               earlier_marks: list[list[tuple[str, ...]]]) -> list[list[tuple[str, ...]]]:
    """A correction's markers: each bullet keeps the markers its version in the corrected
    revision had (``earlier_marks``: against the day before, and "corrected" by an earlier
    correction; a rewritten bullet its predecessor's; one the correction added had none),
    and one the correction changed or added is "corrected"."""
    shown = {text: kinds for texts, marks in zip(earlier, earlier_marks, strict=True)
             for text, kinds in zip(texts, marks, strict=True)}
    flat = [text for texts in earlier for text in texts]
    return [[tuple(dict.fromkeys((*(shown.get(before, ()) if before else ()), *(("corrected",) if fix else ()))))
             for fix, before in section] for section in match(current, flat)]


def _bullets(text: str | None) -> list[list[str]]:
    """The bullets of each section of an edition's source ([] for none)."""
    return [] if text is None else [markup.bullets(md) for _, md in section_markdown(text)]


def _against(current: Sequence[Sequence[str]], previous_text: str | None) -> list[list[str | None]]:
    """``compare`` with an edition's source; no marks when there is none, or when it kept no
    bullets (a dispatch from before sources were kept: nothing to compare with)."""
    previous = [text for texts in _bullets(previous_text) for text in texts]
    if not previous:
        return [[None] * len(section) for section in current]
    return compare(current, previous)


def box_text(text: str) -> str:
    """A point as the box quotes it: whole when short; else up to the last clause break (',',
    ';', ':', '.') that keeps enough of it, else its first words; never ending on a small
    word ('och', 'på', …), with '…' where it was cut."""
    text = " ".join(text.split())
    if len(text) <= BOX_WHOLE:
        return text
    breaks = [m.start() for m in re.finditer(r"[,;:.](?= )", text[: BOX_CLAUSE + 1]) if m.start() >= BOX_MIN]
    if breaks:
        cut = text[: breaks[-1]]
    else:
        words = text[: BOX_WORDS + 1].split(" ")[:-1] or [text[:BOX_WORDS]]
        while len(words) > 1 and words[-1].lower().strip(",;:") in SMALL_WORDS:
            words.pop()
        cut = " ".join(words)
    return cut.rstrip(" ,;:-\u2013") + "…"  # \u2013 is the en dash


def section_markdown(text: str) -> list[tuple[str, str]]:
    """(heading, Markdown) of each '## ' section of an edition file's text, e.g. as the ledger kept it."""
    try:
        _, body, line = split_front_matter(text)
    except ValueError:
        return []
    return [(heading, markdown) for heading, _, markdown in split_sections(body, line)[1]]


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= PREHEADER_LENGTH:
        return text
    return text[: PREHEADER_LENGTH - 1].rsplit(" ", 1)[0] + "…"
