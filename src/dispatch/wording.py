"""Facts worded: English for the command line, the logs and the exports (the catalogue in
dispatch.english, in code), Swedish for the console, the office's emails and alerts (the gettext catalogue
``locale/sv/LC_MESSAGES/dispatch.po``, read with Babel).

Both catalogues are keyed by the fact's code; ``{name}`` fills in a parameter. An entry with two
forms is chosen by the fact's ``count`` (English: 1 or other; Swedish: the catalogue's
Plural-Forms). tests/test_wording.py holds every code to an English and a Swedish wording, so a
new code cannot reach a screen unworded, and nothing ever rewords a sentence.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Callable
from datetime import date
from functools import cache
from pathlib import Path

from dispatch.english import AUDIT_ACTIONS as AUDIT_ACTIONS  # the catalogue in English, re-exported
from dispatch.english import ENGLISH as ENGLISH
from dispatch.values import DispatchLabel, Fact, RelayCause, SendPlan

CATALOGUE = Path(__file__).parent / "locale" / "sv" / "LC_MESSAGES" / "dispatch.po"


def english(fact: Fact) -> str:
    """The fact in English (the command line, the logs, the exports)."""
    wording = ENGLISH[fact.code]
    if isinstance(wording, tuple):
        wording = wording[0] if fact.count == 1 else wording[1]
    return _fill(wording, fact, english)


def swedish(fact: Fact) -> str:
    """The fact in Swedish (the console, the office's emails and alerts)."""
    translations = _swedish()
    if isinstance(ENGLISH.get(fact.code), tuple) or fact.count is not None:
        wording = translations.ngettext(fact.code, fact.code, fact.count if fact.count is not None else 1)
    else:
        wording = translations.gettext(fact.code)
    if wording == fact.code:  # not in the catalogue: exact English rather than a code on screen
        return english(fact)
    return _fill(wording, fact, swedish)


def swedish_of(said: Fact | str) -> str:
    """What a problem says, in Swedish; a plain string (a config problem, which only the command
    line meets) is shown as it was said."""
    return said if isinstance(said, str) else swedish(said)


def _fill(wording: str, fact: Fact, language: Callable[[Fact], str]) -> str:
    """The wording with the fact's parameters filled in; a parameter that is a fact itself is
    worded in the same language."""
    params = {key: language(value) if isinstance(value, Fact) else value for key, value in fact.params.items()}
    return wording.format_map({"count": fact.count, **params})


@cache
def _swedish() -> gettext.GNUTranslations:
    """The Swedish catalogue, compiled in memory once per process (no build step, no .mo file)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with CATALOGUE.open("rb") as po:
        catalog = read_po(po, locale="sv", domain="dispatch")
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


Say = Callable[[Fact], str]


def duration(seconds: float) -> Fact:
    """A duration in its largest sensible unit, rounded, with its plural form."""
    if seconds < 90:
        return Fact.of("duration.seconds", count=round(seconds))
    if seconds < 5400:
        return Fact.of("duration.minutes", count=round(seconds / 60))
    return Fact.of("duration.hours", count=round(seconds / 3600))


def word_plan(plan: SendPlan, say: Say, about: str) -> str:
    """A send plan in one front door's words (``say``); ``about``: its estimated duration as
    that front door writes durations."""
    tail = say(Fact.of("plan.already", already=plan.already)) if plan.already else ""
    if plan.maildir:
        return say(Fact.of("plan.maildir", recipients=plan.recipients, relay=plan.relay, tail=tail))
    bcc = say(Fact.of("plan.bcc", per_message=plan.per_message)) if plan.per_message > 1 else ""
    rate = say(Fact.of("plan.rate", rate=f"{plan.rate_per_minute:g}", about=about)) if plan.rate_per_minute else ""
    return say(Fact.of("plan.smtp", count=plan.messages, recipients=plan.recipients, messages=plan.messages, bcc=bcc,
                       connections=plan.connections, relay=plan.relay, rate=rate,
                       tail=tail or say(Fact.of("plan.skipped"))))


def label_fact(label: DispatchLabel, day: str) -> Fact:
    """A dispatch's label as a fact; ``day``: its edition date as the front door writes dates."""
    return Fact.of(label.code, day=day, revision=label.revision, subject=label.subject, name=label.test_to)


def swedish_day(day: date) -> str:
    """"tis 8 dec": the weekday and the date as the console names an edition (Babel's Swedish)."""
    from babel.dates import format_date

    month = format_date(day, "MMM", locale="sv").rstrip(".")
    return f"{format_date(day, 'EEE', locale='sv')} {day.day} {month}"


def swedish_label(label: DispatchLabel) -> str:
    return swedish(label_fact(label, swedish_day(label.day)))


def english_label(label: DispatchLabel) -> str:
    return english(label_fact(label, label.day.isoformat()))


def relay_cause(cause: RelayCause) -> Fact:
    return Fact.of(f"relay_cause.{cause.value}")
