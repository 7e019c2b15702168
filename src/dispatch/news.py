"""What is new since the edition the reader got before (pure): which bullets to mark "Nytt"
or "Ändrat", the line that counts them, and the edition with its sections re-rendered.

The comparison is of the text of every list item in the daily sections (``markup.bullets``:
links with their addresses, without emphasis) against the previous edition's bullets as
the ledger kept them:

- a bullet whose text is anywhere in the previous edition is not news (moved is not new);
- one that resembles a bullet that is gone (difflib ratio at least ``SIMILAR``; pairs taken
  best first, each old bullet once) is "changed";
- any other is "new".

Which edition is "previous" (the ledger's business) is decided in ``app.changes``.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence

from dispatch import markup
from dispatch.edition import _split_sections, split_front_matter
from dispatch.models import Edition

SIMILAR = 0.6  # below this a rewritten bullet reads as a different point
PREHEADER_LENGTH = 140


def compare(current: Sequence[Sequence[str]], previous: Sequence[str]) -> list[list[str | None]]:
    """Per section, per bullet: "new", "changed" or None (seen before)."""
    seen = set(previous)
    marks: list[list[str | None]] = [[None if text in seen or not text else "new" for text in section] for section in current]
    kept = {text for section in current for text in section}
    gone = [text for text in dict.fromkeys(previous) if text not in kept]
    fresh = [(s, b) for s, section in enumerate(current) for b, text in enumerate(section) if marks[s][b] == "new"]
    pairs = []
    for s, b in fresh:
        for old in gone:
            matcher = difflib.SequenceMatcher(None, old, current[s][b], autojunk=False)
            # quick_ratio is an upper bound: skip the full comparison when it cannot reach SIMILAR.
            if matcher.quick_ratio() >= SIMILAR and (ratio := matcher.ratio()) >= SIMILAR:
                pairs.append((-ratio, s, b, old))
    used_old: set[str] = set()
    for _, s, b, old in sorted(pairs):
        if marks[s][b] == "new" and old not in used_old:
            marks[s][b] = "changed"
            used_old.add(old)
    return marks


def summary(new: int, changed: int, since: str) -> str:
    """'3 nya punkter sedan rapporten söndag 17 november 2024, varav 1 ändrad' ("" when nothing is new)."""
    total = new + changed
    if not total:
        return ""
    if not changed:
        return f"{new} {'ny punkt' if new == 1 else 'nya punkter'} sedan {since}"
    if not new:
        return f"{changed} {'ändrad punkt' if changed == 1 else 'ändrade punkter'} sedan {since}"
    return f"{total} nya punkter sedan {since}, varav {changed} {'ändrad' if changed == 1 else 'ändrade'}"


def marked(edition: Edition, previous_text: str | None, since: str) -> Edition:
    """The edition with its new and changed bullets marked, the line that counts them, and
    (unless the front matter or a correction sets it) the first new point as preheader.

    ``previous_text``: the previous edition's source as sent, None when there is none."""
    if previous_text is None or edition.urgent or not edition.markers:
        return dataclasses.replace(edition, news="")
    previous = [text for _, md in section_markdown(previous_text) for text in markup.bullets(md)]
    if not previous:  # nothing kept to compare with (a dispatch from before sources were kept): mark nothing
        return dataclasses.replace(edition, news="")
    current = [markup.bullets(section.markdown) for section in edition.sections]
    marks = compare(current, previous)
    sections = tuple(
        dataclasses.replace(section, html=markup.to_html(section.markdown, section_marks),
                            text=markup.to_text(section.markdown, section_marks))
        if any(section_marks) else section
        for section, section_marks in zip(edition.sections, marks, strict=True)
    )
    flat = [mark for section_marks in marks for mark in section_marks]
    line = summary(flat.count("new"), flat.count("changed"), since)
    firsts = [text for texts, section_marks in zip(current, marks, strict=True)
              for text, mark in zip(texts, section_marks, strict=True) if mark]
    preheader = edition.preheader
    own_preheader = "preheader" in edition.line_of or (edition.revision > 1 and edition.correction)
    if firsts and not own_preheader:
        preheader = _shorten(firsts[0])
    return dataclasses.replace(edition, sections=sections, news=line, preheader=preheader)


def section_markdown(text: str) -> list[tuple[str, str]]:
    """(heading, Markdown) of each '## ' section of an edition file's text, e.g. as the ledger kept it."""
    try:
        _, body, line = split_front_matter(text)
    except ValueError:
        return []
    return [(heading, markdown) for heading, _, markdown in _split_sections(body, line)[1]]


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= PREHEADER_LENGTH:
        return text
    return text[: PREHEADER_LENGTH - 1].rsplit(" ", 1)[0] + "…"
