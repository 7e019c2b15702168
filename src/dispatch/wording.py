"""Facts worded: English for the command line, the logs and the exports (the catalogue below, in
code), Swedish for the console, the office's emails and alerts (the gettext catalogue
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

from dispatch.values import DispatchLabel, Fact, RelayCause, RunState, SendPlan

CATALOGUE = Path(__file__).parent / "locale" / "sv" / "LC_MESSAGES" / "dispatch.po"

# code -> English wording (or its singular and plural forms)
ENGLISH: dict[str, str | tuple[str, str]] = {
    "duration.seconds": ("{count} second", "{count} seconds"),
    "duration.minutes": ("{count} minute", "{count} minutes"),
    "duration.hours": ("{count} hour", "{count} hours"),
    **{f"run_state.{state.value}": state.value.replace("_", " ") for state in RunState},
    "run.failed": "The send could not run: {detail}",
    "run.revoked": "the approval was revoked during the send",
    # Why the relay did not take messages (values.RelayCause)
    "relay_cause.connection_refused": "connection refused",
    "relay_cause.unreachable": "the server cannot be reached (name or network)",
    "relay_cause.timeout": "no answer in time",
    "relay_cause.disconnected": "the server closed the connection",
    "relay_cause.tls": "TLS failed or the certificate is not trusted (transport.ca_file)",
    "relay_cause.authentication": "the server refused the credentials",
    "relay_cause.temporary_reply": "the server refused the session for now",
    "relay_cause.permanent_reply": "the server refused the session",
    "relay_cause.quota": "the mailbox's daily submission quota is used up",
    "relay_cause.other": "the session failed",
    # The relay's trouble, as a send's page says it
    "relay.paused": "The relay {host} cannot be reached right now: {cause}. No recipient is counted as failed for it; "
                    "the send tries again {when} (or press Retry now once it is fixed).",
    "relay.refused": "The relay {host} does not take the send: {cause}. It must be fixed; no recipient is counted as "
                     "failed for it. Press Retry now once it is fixed.",
    "relay.held": ("{count} recipient waits because the relay {host} did not take the send: {cause}. It is not counted "
                   "as failed for it; it gets another attempt{when} (Retry now sends at once).",
                   "{count} recipients wait because the relay {host} did not take the send: {cause}. None of them is "
                   "counted as failed for it; they get another attempt{when} (Retry now sends to them at once)."),
    "relay.row": "waits: the relay did not take it ({cause})",
    "relay.at": "at {time}",
    "relay.soon": "shortly",
    "held.elsewhere": ("{count} recipient is held by another run (another node, the service, or a run that was "
                       "interrupted) until {time} at the latest; after that the next run sends to it.",
                       "{count} recipients are held by another run (another node, the service, or a run that was "
                       "interrupted) until {time} at the latest; after that the next run sends to them."),
    "urgent.ahead": "The urgent message \"{subject}\" goes first; this send goes on by itself when it is out.",
    # A send plan (values.SendPlan): the command line's `plan:` line, word for word as before
    "plan.smtp": ("plan: {recipients} recipients in {messages} messages{bcc} over {connections} connection(s) to "
                  "{relay}{rate}{tail}",) * 2,
    "plan.maildir": "plan: {recipients} recipients into the Maildir {relay}{tail}",
    "plan.bcc": " of up to {per_message} recipients (Bcc)",
    "plan.rate": " at {rate}/min: about {about}",
    "plan.already": "; {already} already have it",
    "plan.skipped": " (recipients already accepted are skipped)",
    # A dispatch as people name it (values.DispatchLabel)
    "label.edition": "Report of {day}",
    "label.correction": "Report of {day}, revision {revision}",
    "label.urgent": "Urgent: {subject}",
    "label.test": "Test to {name}",
    # Whether an edition dispatch's file still holds what was sent (status, the dispatch's page)
    "edition_file.unreadable": "{path} cannot be read as an edition now ({error})",
    "edition_file.revision": "{path} is now revision {revision} (content {content})",
    "edition_file.conflict": "{path} has changed since it was sent (content now {content}); see dispatch check",
    "edition_file.standing_changed": "{path} unchanged; the config's standing sections or templates have changed since",
    "edition_file.unchanged": "{path} unchanged (content {content})",
    "edition_file.changed": "{path} has changed (content now {content}): {reason}",
    # One day's edition (app.overview)
    "edition.missing": "Missing: no report is written for the day",
    "edition.problems": ("Draft with {count} problem to fix", "Draft with {count} problems to fix"),
    "edition.draft": "Draft: {reason}",
    "edition.approved_by": "Approved by {by} {at}",
    "edition.approved_in_file": "Approved (status: approved in the file)",
    "edition.correction": "Correction (revision {revision}): {state}",
    "edition.sending": "Sending: {sent} of {total}",
    "edition.waiting_for_urgent": "Waiting: the urgent message \"{subject}\" goes first; {sent} of {total} have it",
    "edition.paused_by_relay": "Paused: the relay does not take messages; {sent} of {total} have it",
    "edition.sent": ("Sent {at} to {sent} recipient", "Sent {at} to {sent} recipients"),
    "edition.failed": (", {count} failed",) * 2,
    # The right password for a locked account (only ever said to someone who gave it).
    "sign_in.locked": "the account is locked until {until} after too many wrong passwords",
}


def english(fact: Fact) -> str:
    """The fact in English (the command line, the logs, the exports)."""
    wording = ENGLISH[fact.code]
    if isinstance(wording, tuple):
        wording = wording[0] if fact.count == 1 else wording[1]
    return _fill(wording, fact)


def swedish(fact: Fact) -> str:
    """The fact in Swedish (the console, the office's emails and alerts)."""
    translations = _swedish()
    if isinstance(ENGLISH.get(fact.code), tuple) or fact.count is not None:
        wording = translations.ngettext(fact.code, fact.code, fact.count if fact.count is not None else 1)
    else:
        wording = translations.gettext(fact.code)
    if wording == fact.code:  # not in the catalogue: exact English rather than a code on screen
        return english(fact)
    return _fill(wording, fact)


def _fill(wording: str, fact: Fact) -> str:
    return wording.format_map({"count": fact.count, **fact.params})


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
