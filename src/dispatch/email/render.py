"""Edition -> inlined HTML and plain text. Jinja2 + premailer, once per edition (pure)."""

from __future__ import annotations

import logging
import re
import textwrap
import warnings
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dispatch.email.markup import MARKS
from dispatch.errors import InputError, Problem, display_path
from dispatch.models import Edition, NewsPoint, Rendered
from dispatch.values import Fact

if TYPE_CHECKING:
    from jinja2 import Environment

HTML_TEMPLATE = "edition.html"
TEXT_TEMPLATE = "edition.txt"
TEXT_WIDTH = 76  # RFC 5322 asks for lines of at most 78 characters; quoting adds '> '
SIGNATURE_SEPARATOR = "-- "  # RFC 3676 4.3: clients fold or dim what follows it
URGENT_PREFIX = "BRÅDSKANDE: "
_AUTHORS_URGENT_PREFIX = re.compile(r"^\s*brådskande\s*[:!\u2013-]\s*", re.IGNORECASE)
CORRECTION_PREFIX = "Rättelse: "
TEST_PREFIX = "[TEST] "


@lru_cache(maxsize=1)
def _quiet_cssutils() -> None:
    """cssutils reports every mso-* and -webkit-* property as "Unknown Property" at WARNING
    and shortens #333333 to #333, which some Outlook versions misread. Keep both out. (Done
    at the first inlining, not at import: a command that renders nothing never loads cssutils,
    lxml or premailer, issue 34.)"""
    import cssutils

    css_log = logging.getLogger("dispatch.cssutils")
    css_log.addHandler(logging.NullHandler())
    css_log.propagate = False
    cssutils.log.setLog(css_log)
    cssutils.ser.prefs.minimizeColorHash = False


@lru_cache(maxsize=8)
def environment(templates_dir: Path) -> Environment:
    """Both templates escape by default in spirit: HTML autoescapes; the text template
    is plain text, where HTML escaping would print '&amp;' to the reader, so it
    renders the already-plain text that markup.to_text produced."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(str(templates_dir)),
        autoescape=lambda name: name is not None and not name.endswith(".txt"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["wrap"] = _wrap
    return env


def _wrap(value: object, indent: str = "") -> str:
    """A line of the text part folded at spaces to TEXT_WIDTH (an address is never split)."""
    return textwrap.fill(str(value), TEXT_WIDTH, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def subject_for(edition: Edition, test: bool = False) -> str:
    subject = edition.subject
    if edition.revision > 1 and edition.correction:
        subject = CORRECTION_PREFIX + subject
    if edition.urgent:
        # An author under pressure may write the prefix herself ("Brådskande: ..."): the subject
        # says it once, as we write it, never "BRÅDSKANDE: Brådskande: ...".
        subject = URGENT_PREFIX + (_AUTHORS_URGENT_PREFIX.sub("", subject, count=1) or subject)
    if test:
        subject = TEST_PREFIX + subject
    return subject


def context(edition: Edition, subject: str, footer: str, web_url: str | None) -> dict[str, Any]:
    heading = edition.subject if edition.urgent else edition.date_label[:1].upper() + edition.date_label[1:]
    return {
        "subject": subject,
        "title": edition.title,
        "heading": heading,
        "preheader": edition.preheader,
        "compiled_label": edition.compiled_label,
        "date_label": edition.date_label,
        "revision": edition.revision,
        "urgent": edition.urgent,
        "correction": edition.correction,
        "news": edition.news or "",
        "news_points": [_news_point(point) for point in edition.news_points],
        "lead_html": edition.lead_html,
        "lead_text": edition.lead_text,
        "sections": edition.sections,
        "standing": edition.email_standing,  # in_email: false sections are on the intranet page only
        "footer": footer,
        "web_url": web_url,
    }


def _news_point(point: NewsPoint) -> dict[str, str]:
    """A point of the box at the top as the templates show it: its marker words ('Nytt',
    'Nytt · Rättat'), the kind that colours them, its first words and its section's id."""
    return {"words": " · ".join(MARKS[kind] for kind in point.marks),
            "kind": point.marks[-1] if point.marks else "new", "text": point.text, "anchor": point.anchor}


def render(
    edition: Edition,
    templates_dir: Path,
    *,
    footer: str,
    web_url: str | None = None,
    test: bool = False,
) -> Rendered:
    """Render both parts. A template error becomes an InputError naming the template line."""
    from jinja2 import TemplateError, UndefinedError

    subject = subject_for(edition, test)
    env = environment(templates_dir)
    values = context(edition, subject, footer, web_url)
    try:
        html = env.get_template(HTML_TEMPLATE).render(values)
        text = env.get_template(TEXT_TEMPLATE).render(values)
    except UndefinedError as exc:
        raise InputError([_template_problem(exc, templates_dir, Fact.of("template.undefined", detail=str(exc.message)))]) from None
    except TemplateError as exc:
        raise InputError([_template_problem(exc, templates_dir, Fact.of("template.error", detail=str(exc)))]) from None
    return Rendered(subject=subject, html=inline_css(html), text=_tidy_text(text))


def inline_css(html: str) -> str:
    from premailer import Premailer

    _quiet_cssutils()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inliner = Premailer(
            html,
            strip_important=False,  # the stacking rules in @media need their !important
            keep_style_tags=False,  # leftover @media rules stay in <head>, the rest is inlined
            remove_classes=False,   # the @media rules still select by class
            disable_validation=True,
            allow_network=False,
            cssutils_logging_handler=logging.NullHandler(),
            cssutils_logging_level=logging.CRITICAL,
        )
        return str(inliner.transform(pretty_print=False))


def _tidy_text(text: str) -> str:
    """At most one blank line in a row, no trailing spaces (but the signature separator's),
    CRLF-free, ends with a newline."""
    lines = [line if line == SIGNATURE_SEPARATOR else line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    return "\n".join(out).strip("\n") + "\n"


def _template_problem(exc: Exception, templates_dir: Path, fact: Fact) -> Problem:
    """Point at the template line, found in the traceback Jinja2 rewrote for us."""
    tb = exc.__traceback__
    name, line = HTML_TEMPLATE, 1
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(str(templates_dir)):
            name, line = Path(filename).name, tb.tb_lineno
        tb = tb.tb_next
    lineno = getattr(exc, "lineno", None)
    if lineno:
        line = lineno
        name = getattr(exc, "filename", None) or name
    return Problem(display_path(templates_dir / Path(name).name), line, fact)
