"""An edition file plus the standing sections -> one Edition value.

Pure: the clock is an argument (``now``), files are read by the caller.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

from dispatch.config import ReportSettings
from dispatch.config.yamlsource import LineDict, parse_yaml
from dispatch.email import editorial, markup
from dispatch.email.sections import split_sections
from dispatch.email.subject import fill
from dispatch.errors import InputError, Problem, display_path
from dispatch.models import Edition, Section

KNOWN_KEYS = {
    "compiled", "status", "subject", "headline", "preheader", "lists", "urgent", "revision", "correction", "by", "markers",
}
# A phone's inbox list shows about 35 characters of a subject; beyond 60 even a desktop cuts it.
SUBJECT_WARN_CHARS = 60
STATUSES = ("draft", "approved")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]+")
PREHEADER_LENGTH = 140



def edition_path(reports_dir: Path, day: date) -> Path:
    return reports_dir / f"{day.isoformat()}.md"


def swedish_date(day: date) -> str:
    """'söndag 17 november 2024'."""
    from babel.dates import format_date  # Babel's CLDR data only where a date is written out (issue 34)

    return format_date(day, "EEEE d MMMM y", locale="sv_SE")


def short_date(day: date) -> str:
    """'sön 17 nov': what an inbox list shows of a subject that starts with it (CLDR's 'nov.' without the dot)."""
    from babel.dates import format_date

    return format_date(day, "EEE d MMM", locale="sv_SE").replace(".", "")


def compiled_label(compiled: datetime) -> str:
    return f"Sammanställd: {compiled:%Y-%m-%d} klockan {compiled:%H:%M}"


def sent_label(sent: datetime) -> str:
    """'Skickat mån 7 dec 14:13': an alert says when it went out, in words a reader skims
    (an urgent message's ``compiled`` is the time it is sent unless the file says otherwise)."""
    return f"Skickat {short_date(sent.date())} {sent:%H:%M}"


def split_front_matter(text: str) -> tuple[str, str, int]:
    """(front matter, body, line number where the body starts). No front matter: ('', text, 1)."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return "", text, 1
    for index in range(1, len(lines)):
        if lines[index].strip() in ("---", "..."):
            return "".join(lines[1:index]), "".join(lines[index + 1:]), index + 2
    raise ValueError("front matter opened with '---' on line 1 is never closed")


def assemble(
    path: Path,
    text: str,
    report: ReportSettings,
    now: datetime,
    *,
    urgent: bool = False,
    lenient: list[Problem] | None = None,
) -> Edition:
    """Parse an edition file's text. Raises InputError with every problem found.

    ``lenient``: collect into it the problems that still leave an edition to show (an empty
    section, a broken link, a missing correction text) and return it anyway: the console's
    preview shows the message beside its problems. Nothing is sent from such an edition."""
    shown = display_path(path)
    problems: list[Problem] = []
    try:
        front_text, body, body_line = split_front_matter(text)
    except ValueError:
        raise InputError([Problem.of(shown, 1, "edition.front_matter_not_closed")]) from None
    if not front_text and not urgent:
        raise InputError([Problem.of(shown, 1, "edition.no_front_matter")])
    parsed = parse_yaml(front_text, path, line_offset=1) if front_text.strip() else None
    if parsed is None:
        parsed = LineDict()
        parsed.line, parsed.key_lines = 2, {}
    if not isinstance(parsed, LineDict):
        raise InputError([Problem.of(shown, 2, "edition.front_matter_not_mapping")])
    meta: LineDict = parsed

    for key in meta:
        if key not in KNOWN_KEYS:
            known = ", ".join(sorted(KNOWN_KEYS))
            problems.append(Problem.of(shown, meta.line_of(key), "edition.unknown_key", key=repr(key), known=known))

    urgent = urgent or meta.get("urgent") is True
    if str(meta.get("markers")).lower() in ("true", "false"):  # the console writes its text fields quoted
        meta["markers"] = str(meta["markers"]).lower() == "true"
    for flag in ("urgent", "markers"):
        if flag in meta and not isinstance(meta[flag], bool):
            problems.append(Problem.of(shown, meta.line_of(flag), "edition.not_a_flag", key=flag))

    day = _date_from_name(path)
    compiled = _compiled(meta, shown, problems, now, required=not urgent)
    if day is None:
        day = compiled.date()
        if not urgent:
            problems.append(Problem.of(shown, 1, "edition.file_name"))

    status = meta.get("status", "approved" if urgent else None)
    if status is None:
        problems.append(Problem.of(shown, meta.line, "edition.no_status"))
    elif status not in STATUSES:
        problems.append(Problem.of(shown, meta.line_of("status"), "edition.bad_status", value=repr(status)))

    revision = meta.get("revision", 1)
    # line_of counts the file's lines; front_text starts after the opening "---" (line 1).
    written = _scalar_text(front_text, meta.line_of("revision") - 2) if "revision" in meta else "1"
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 1 or not _DIGITS.fullmatch(written):
        # YAML would also read 0x2, 1_0 and +2 as numbers: a revision is written in digits only.
        shown_value = written if isinstance(revision, int) and not isinstance(revision, bool) else repr(revision)
        problems.append(Problem.of(shown, meta.line_of("revision"), "edition.bad_revision", value=shown_value))
        revision = 1

    lists = meta.get("lists")
    if lists is not None:
        if isinstance(lists, str):
            lists = [lists]
        if not isinstance(lists, list) or not all(isinstance(x, str) and x for x in lists):
            problems.append(Problem.of(shown, meta.line_of("lists"), "edition.bad_lists"))
            lists = None

    for key in ("subject", "headline", "preheader", "correction", "by"):
        if key in meta and not isinstance(meta[key], str):
            problems.append(Problem.of(shown, meta.line_of(key), "edition.not_text", key=key))
        elif key in meta and _CONTROL.search(meta[key].replace("\n", " ") if key == "correction" else meta[key]):
            problems.append(Problem.of(shown, meta.line_of(key), "edition.control_character", key=key))
    if urgent and not isinstance(meta.get("subject"), str):
        problems.append(Problem.of(shown, meta.line, "edition.urgent_without_subject"))
    if not urgent and isinstance(revision, int) and revision > 1 and not str(meta.get("correction") or "").strip():
        problems.append(Problem.of(shown, meta.line_of("revision"), "edition.correction_without_text", revision=revision))
    if not urgent and "compiled" in meta and day is not None and compiled.date() != day:
        problems.append(Problem.of(shown, meta.line_of("compiled"), "edition.compiled_on_another_day",
                                   compiled=f"{compiled:%Y-%m-%d %H:%M}", day=day.isoformat(),
                                   fixed=f"{day.isoformat()} {compiled:%H:%M}"))

    lead_md, sections = split_sections(body, body_line)
    if not sections and not lead_md.strip():
        problems.append(Problem.of(shown, body_line, "edition.no_content"))
    else:
        # Mistakes that render as something else than the editor meant (a literal '#', a
        # broken link, text outside any section): found here, before anyone reads them.
        problems.extend(editorial.check(body, body_line, shown, urgent=urgent))

    _raise_or_collect(problems, lenient)

    variables = {
        "title": report.title,
        "date": day.isoformat(),
        "date_label": swedish_date(day),
        "date_short": short_date(day),
        "compiled_label": sent_label(compiled) if urgent else compiled_label(compiled),
        "revision": revision,
        "headline": " ".join(str(meta.get("headline") or "").split()),
    }
    first_text = markup.to_text(lead_md, emphasis=False) if lead_md.strip() else (
        _first_item(sections[0][2]) if sections else ""
    )
    subject_line = meta.line_of("subject") if "subject" in meta else None
    # The front matter's own subject wins; else a headline puts the day's news in the subject.
    default_subject = report.headline_subject if variables["headline"] and not urgent else report.subject
    subject = fill(meta.get("subject", default_subject), variables, shown, subject_line, "subject", problems)
    preheader_template = meta.get("preheader")
    correction_text = str(meta.get("correction") or "").strip()
    if not urgent and revision > 1 and correction_text:
        preheader = _shorten(correction_text)  # what a correction's inbox preview must say, whatever rev 1 said
    elif preheader_template is None:
        preheader = _shorten(first_text) if first_text else fill(report.preheader, variables, shown, None, "preheader", problems)
    else:
        preheader = fill(preheader_template, variables, shown, meta.line_of("preheader"), "preheader", problems)
    _raise_or_collect(problems, lenient)

    daily = tuple(_section(heading, md, line) for heading, line, md in sections)
    if urgent:
        standing = tuple(
            _section(s.heading, s.urgent_markdown, 0) for s in report.standing_sections if s.urgent_markdown
        )
    else:
        standing = tuple(dataclasses.replace(_section(s.heading, s.markdown, 0), in_email=s.in_email)
                         for s in report.standing_sections)
    used = {s.anchor for s in daily}
    standing = tuple(s for s in standing if s.anchor not in used)
    # Ids unique in the message, never the box's ("nytt"): the box at the top links to sections by them.
    ids = iter(markup.unique_ids([s.anchor for s in (*daily, *standing)], reserved={"nytt"}))
    daily = tuple(dataclasses.replace(s, anchor=next(ids)) for s in daily)
    standing = tuple(dataclasses.replace(s, anchor=next(ids)) for s in standing)
    return Edition(
        date=day,
        revision=revision,
        status=str(status),
        urgent=urgent,
        compiled=compiled,
        title=report.title,
        subject=" ".join(subject.split()),
        preheader=" ".join(preheader.split()),
        date_label=str(variables["date_label"]),
        compiled_label=str(variables["compiled_label"]),
        lead_html=markup.to_html(lead_md) if lead_md.strip() else "",
        lead_text=markup.to_text(lead_md) if lead_md.strip() else "",
        sections=daily,
        standing=standing,
        lists=tuple(lists) if lists is not None else None,
        source=path,
        source_text=text,
        correction=meta.get("correction"),
        author=(meta.get("by") or "").strip() or None,
        markers=meta.get("markers") is not False,
        headline=str(variables["headline"]) or None,
        line_of=dict(meta.key_lines) | {"": meta.line},
    )


def _scalar_text(front_text: str, index: int) -> str:
    """The value of a 'key: value' line of the front matter as written (comment and quotes
    kept out), for the few keys whose spelling matters beyond what YAML makes of it."""
    lines = front_text.splitlines()
    if not 0 <= index < len(lines) or ":" not in lines[index]:
        return ""
    return lines[index].split(":", 1)[1].split(" #", 1)[0].strip()


def _raise_or_collect(problems: list[Problem], lenient: list[Problem] | None) -> None:
    if problems and lenient is None:
        raise InputError(problems)
    if lenient is not None:
        lenient.extend(problems)
        problems.clear()


def _date_from_name(path: Path) -> date | None:
    try:
        return date.fromisoformat(path.stem)
    except ValueError:
        return None


def _compiled(meta: LineDict, shown: str, problems: list[Problem], now: datetime, required: bool) -> datetime:
    value: Any = meta.get("compiled")
    if value is None:
        if required:
            problems.append(Problem.of(shown, meta.line, "edition.no_compiled"))
        return now.replace(tzinfo=None, second=0, microsecond=0)
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, str):
        try:
            return datetime.strptime(value.strip(), "%Y-%m-%d %H:%M")
        except ValueError:
            pass
    problems.append(Problem.of(shown, meta.line_of("compiled"), "edition.bad_compiled", value=repr(value)))
    return now.replace(tzinfo=None, second=0, microsecond=0)


def _section(heading: str, markdown: str, line: int) -> Section:
    return Section(
        heading=heading,
        html=markup.to_html(markdown),
        text=markup.to_text(markdown),
        anchor=section_anchor(heading),
        line=line,
        markdown=markdown,
    )


def section_anchor(heading: str) -> str:
    folded = heading.lower().translate(str.maketrans("åäöé", "aaoe"))
    return re.sub(r"[^a-z0-9]+", "-", folded).strip("-") or "avsnitt"


def _first_item(markdown: str) -> str:
    text = markup.to_text(markdown, emphasis=False)  # an inbox preview shows no '*'
    first = text.split("\n\n", 1)[0].split("\n- ", 1)[0]
    return first.removeprefix("- ")


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= PREHEADER_LENGTH:
        return text
    return text[: PREHEADER_LENGTH - 1].rsplit(" ", 1)[0] + "…"
