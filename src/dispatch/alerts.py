"""Alarms from the scheduler service to the `notify` addresses (Swedish text for the office).

Composition is pure (subject and body from the facts); ``deliver`` hands the message to
whatever transport the composition root opened, so an alert travels the same way as the
report and a test sees it arrive at the same server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Iterable

from dispatch.errors import TransportError
from dispatch.models import State
from dispatch.notice import compose

if TYPE_CHECKING:
    from dispatch.pipeline import Transport


@dataclass(frozen=True)
class Alert:
    key: tuple[str, ...]  # what the alert is about; the service sends each key once
    subject: str
    body: str


def _hm(moment: datetime) -> str:
    return f"{moment:%H:%M}"


def no_approved_edition(schedule: str, day: date, approval_deadline: datetime, send_at: datetime,
                        reason: str) -> Alert:
    """At the approval deadline: the edition is not approved (yet)."""
    return Alert(
        key=("approval", schedule, day.isoformat()),
        subject=f"Ingen godkänd rapport för {day.isoformat()} kl {_hm(approval_deadline)}",
        body=(
            f"Det finns ingen godkänd rapport för {day.isoformat()} vid godkännandetiden {_hm(approval_deadline)}.\n\n"
            f"Orsak: {reason}\n\n"
            f"Utskicket enligt schemat '{schedule}' sker kl {_hm(send_at)}. Godkänn rapporten före dess "
            f"('status: approved' i filen, eller med approval: four_eyes 'dispatch approve --date "
            f"{day.isoformat()}' av någon annan än redaktören), annars skickas ingenting.\n"
        ),
    )


def nothing_sent_unapproved(schedule: str, day: date, send_at: datetime, reason: str,
                            deadline: datetime | None = None) -> Alert:
    """At send time: still nothing approved, so nothing was sent (yet)."""
    manual = f"dispatch send --date {day.isoformat()}"
    later = (f"Tjänsten skickar rapporten automatiskt om den godkänns före tidsgränsen {_hm(deadline)}; "
             f"därefter skickas den manuellt: {manual}\n" if deadline is not None
             else f"Skicka manuellt när rapporten är godkänd: {manual}\n")
    return Alert(
        key=("unapproved", schedule, day.isoformat()),
        subject=f"Ingen godkänd rapport för {day.isoformat()} kl {_hm(send_at)}: inget skickades",
        body=(
            f"Schemat '{schedule}' skulle skicka rapporten för {day.isoformat()} kl {_hm(send_at)}, "
            f"men det finns ingen godkänd rapport. Inget har skickats.\n\n"
            f"Orsak: {reason}\n\n"
            f"{later}"
        ),
    )


def not_sendable(schedule: str, day: date, send_at: datetime, problems: Iterable[str]) -> Alert:
    """The approved edition fails validation or the pre-flight checks."""
    listed = "\n".join(f"- {p}" for p in problems)
    return Alert(
        key=("invalid", schedule, day.isoformat()),
        subject=f"Rapporten för {day.isoformat()} kunde inte skickas kl {_hm(send_at)}",
        body=(
            f"Schemat '{schedule}' skickade ingenting: rapporten för {day.isoformat()} har fel.\n\n"
            f"{listed}\n\n"
            f"Rätta felen, kontrollera med: dispatch check --date {day.isoformat()}\n"
            f"och skicka sedan: dispatch send --date {day.isoformat()}\n"
        ),
    )


def missed(schedule: str, day: date, send_at: datetime, deadline: datetime, now: datetime) -> Alert:
    """The scheduled time passed while the service was not running, and so did the deadline."""
    return Alert(
        key=("missed", schedule, day.isoformat()),
        subject=f"Utskicket av rapporten för {day.isoformat()} missades (tidsgräns {_hm(deadline)})",
        body=(
            f"Rapporten för {day.isoformat()} har inte skickats. Schemat '{schedule}' skulle skicka den "
            f"kl {_hm(send_at)}, men tjänsten kom igång först {now:%Y-%m-%d %H:%M}, efter tidsgränsen "
            f"{_hm(deadline)}. Utskicket missades och görs inte automatiskt.\n\n"
            f"Om rapporten ändå ska ut: dispatch send --date {day.isoformat()}\n"
        ),
    )


def incomplete(schedule: str, day: date, dispatch: str, deadline: datetime, counts: dict[str, int],
               reason: str | None = None) -> Alert:
    """A dispatch that the deadline no longer lets the service finish (interrupted, or the
    relay would not take it)."""
    waiting = counts.get("pending", 0) + counts.get("deferred", 0) + counts.get("unknown", 0)
    why = f"Senaste felet: {reason}\n\n" if reason else ""
    return Alert(
        key=("incomplete", schedule, day.isoformat()),
        subject=f"Utskicket {dispatch} är ofullständigt: {waiting} mottagare väntar",
        body=(
            f"Utskicket {dispatch} blev inte klart och tidsgränsen {_hm(deadline)} har passerat, så tjänsten "
            f"fortsätter det inte. Levererade: {counts.get('sent', 0)}, väntar: {waiting}, "
            f"misslyckade: {counts.get('failed', 0)}.\n\n{why}"
            f"Skicka till de återstående: dispatch send --date {day.isoformat()}\n"
            f"Se vilka: dispatch status {dispatch}\n"
        ),
    )


def relay_refused(schedule: str, dispatch: str, reason: str, until: datetime, deadline: datetime) -> Alert:
    """The relay refuses the session itself (not a recipient): the dispatch is paused."""
    return Alert(
        key=("relay", dispatch),
        subject=f"Utskicket {dispatch} är pausat: e-postservern vägrar ta emot",
        body=(
            f"E-postservern vägrar ta emot utskicket {dispatch} (schemat '{schedule}'):\n\n{reason}\n\n"
            f"Felet gäller sessionen, inte mottagarna: ingen mottagare har misslyckats, alla som inte har fått "
            f"rapporten väntar. Tjänsten försöker igen kl {_hm(until)} och därefter regelbundet fram till "
            f"tidsgränsen {_hm(deadline)}.\n\n"
            f"Åtgärda orsaken (inloggning, avsändaradress, certifikat). Skicka sedan direkt: "
            f"dispatch send --date {dispatch[:10]}\n"
        ),
    )


def job_failed(job: str, error: BaseException, now: datetime) -> Alert:
    """A job raised something unexpected; the service logged it and keeps running."""
    return Alert(
        key=("failed", job, f"{now:%Y-%m-%dT%H:%M}"),
        subject=f"Fel i schemalagt jobb {job}",
        body=(
            f"Jobbet {job} avbröts {now:%Y-%m-%d %H:%M} av ett fel:\n\n"
            f"{error.__class__.__name__}: {error}\n\n"
            f"Tjänsten fortsätter att köra. Se loggen (journalctl -u dispatch) och 'dispatch status'.\n"
        ),
    )


def deliver(transport: "Transport", from_header: str, sender: str, notify: tuple[str, ...],
            alert: Alert, now: datetime) -> None:
    """Send one alert to every `notify` address; raise TransportError if any was refused."""
    data = compose(from_header, notify, alert.subject, alert.body, now)
    connection = transport.connect()
    try:
        outcomes = connection.send(sender, list(notify), data)
    finally:
        connection.close()
    refused = [f"{address}: {o.reply}" for address, o in outcomes.items() if o.state is not State.SENT]
    if refused:
        raise TransportError(transport.endpoint, "alert refused for " + "; ".join(refused))

