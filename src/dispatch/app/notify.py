"""Short operational mails to the `notify` addresses, in Swedish for the office: completion
summaries of a dispatch and the scheduler service's alarms.

Composition is pure (subject and body from the facts); ``deliver`` hands one such mail to
whatever transport the composition root opened, so a summary or an alert travels the same
way as the report and a test sees it arrive at the same server. The office must know,
without asking, who did not get the report and why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from dispatch import wording
from dispatch.email import headers
from dispatch.models import State
from dispatch.recipients.snapshots import Change, Snapshot
from dispatch.values import DispatchLabel

if TYPE_CHECKING:
    from dispatch.delivery.pipeline import Transport

MAX_LISTED = 200  # beyond this the summary points to `dispatch status`


def compose(sender: tuple[str, str], recipients: Iterable[str], subject: str, body: str, now: datetime) -> bytes:
    """A notice to the office. ``sender`` is (display name, address); the header fields with
    text are written by dispatch.email.headers, which keeps the spaces a Swedish subject has."""
    name, address = sender
    addresses = list(recipients)
    message = EmailMessage(policy=policy.SMTP)
    message.set_content(body, charset="utf-8", cte="quoted-printable")
    data = message.as_bytes()
    return b"".join((
        headers.mailbox("From", name, address),
        headers.fold("To", [f"{a}," for a in addresses[:-1]] + addresses[-1:]),
        headers.unstructured("Subject", " ".join(subject.split())),
        b"Date: " + format_datetime(now).encode("ascii") + b"\r\n",
        b"Message-ID: " + make_msgid(domain=address.rpartition("@")[2] or None).encode("ascii") + b"\r\n",
        b"Auto-Submitted: auto-generated\r\nX-Auto-Response-Suppress: OOF, AutoReply\r\n",
        data,
    ))


def summary(label: DispatchLabel, subject: str, counts: dict[str, int], rows: list[dict[str, Any]],
            zone: ZoneInfo, next_attempt: datetime | None) -> tuple[str, str]:
    """(subject, body) of a completion summary, in Swedish for the communications office. The
    subject names the dispatch by its label; the body keeps its key for the command line."""
    dispatch = label.name
    named = wording.swedish_label(label)
    sent, failed = counts.get("sent", 0), counts.get("failed", 0)
    waiting = counts.get("deferred", 0) + counts.get("unknown", 0) + counts.get("pending", 0)
    if failed or waiting:
        title = f"Utskick ej klart: {named}, {sent} levererade, {failed} misslyckade, {waiting} väntar"
    else:
        title = f"Utskick klart: {named}, {sent} levererade"
    lines = [
        f"Utskick: {dispatch}",
        f"Ämne: {subject}",
        "",
        f"Levererade: {sent}",
        f"Misslyckade: {failed}",
        f"Väntar på nytt försök: {waiting}",
    ]
    if counts.get("bounced", 0):
        lines.append(f"Studsade efter leverans: {counts['bounced']}")
    if next_attempt is not None and waiting:
        lines.append(f"Nästa försök: {next_attempt.astimezone(zone):%Y-%m-%d %H:%M}")
    for state, heading in (("failed", "Misslyckade mottagare (serverns svar):"),
                           ("deferred", "Mottagare som väntar (senaste svar):"),
                           ("unknown", "Mottagare med okänt utfall (skickas igen):"),
                           ("bounced", "Studsade (mottagarens server skickade tillbaka rapporten):")):
        listed = [r for r in rows if r["state"] == state]
        if not listed:
            continue
        lines += ["", heading]
        for row in listed[:MAX_LISTED]:
            lines.append(f"- {row['address']}: {row['reply'] or '-'}")
        if len(listed) > MAX_LISTED:
            lines.append(f"- ... och {len(listed) - MAX_LISTED} till")
    lines += ["", f"Hela listan: dispatch status {dispatch}"]
    return title, "\n".join(lines) + "\n"


# -- alerts from the scheduler service ----------------------------------------------


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


def publish_failed(schedule: str, day: date, error: str) -> Alert:
    """The report went out, but its intranet copy could not be written; the service retries."""
    return Alert(
        key=("publish", day.isoformat()),
        subject=f"Intranätskopian av rapporten för {day.isoformat()} kunde inte skrivas",
        body=(
            f"Rapporten för {day.isoformat()} har skickats med e-post som vanligt (schemat '{schedule}'), "
            f"men kopian på intranätet kunde inte skrivas:\n\n{error}\n\n"
            f"Tjänsten försöker igen minst en gång i minuten och skriver sidan så snart det går. "
            f"Åtgärda orsaken (till exempel en full disk). Länken 'Visa i webbläsare' i e-postmeddelandet "
            f"fungerar när sidan är skriven. Den kan också skrivas för hand: dispatch publish --date {day.isoformat()}\n"
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


def list_held(list_name: str, display_name: str, held: Snapshot, accepted: Snapshot | None, change: Change,
              zone: ZoneInfo) -> Alert:
    """A sync of a directory list was held by the shrink guard: a person must look at it."""
    reason = wording.swedish(held.reason) if held.reason is not None else ""
    using = (f"Utskick går tills vidare till den senast godkända listan (ögonblicksbild {accepted.ref}, "
             f"{accepted.members} mottagare, från {accepted.taken_at.astimezone(zone):%Y-%m-%d %H:%M})."
             if accepted is not None else "Listan har ingen godkänd version: inget skickas till den förrän ändringen godkänns.")
    lines = [
        f"Synkningen av mottagarlistan {display_name} ({list_name}) från katalogen "
        f"{held.taken_at.astimezone(zone):%Y-%m-%d %H:%M} godkändes inte automatiskt: {reason}.",
        "",
        using,
        "",
        f"Ny version (ögonblicksbild {held.ref}): {held.members} mottagare; {len(change.added)} tillkommer, "
        f"{len(change.removed)} försvinner.",
    ]
    for heading, people in (("Försvinner:", change.removed), ("Tillkommer:", change.added)):
        if not people:
            continue
        lines += ["", heading]
        lines += [f"- {m.address}" + (f" ({m.name})" if m.name else "") for m in people[:MAX_LISTED]]
        if len(people) > MAX_LISTED:
            lines.append(f"- ... och {len(people) - MAX_LISTED} till")
    lines += ["", "Är ändringen riktig (till exempel en omorganisation)? Godkänn den i konsolen under Mottagare "
                  f"(Godkänn ändringen) eller med: dispatch recipients accept {list_name} --by NAMN",
              "Är den fel? Rätta gruppen eller filtret i katalogen; nästa synkning ersätter den här versionen.",
              f"Se skillnaden: dispatch recipients diff {list_name}"]
    return Alert(key=("list_held", list_name, held.ref),
                 subject=f"Mottagarlistan {display_name} har ändrats mer än tillåtet: ändringen väntar på godkännande",
                 body="\n".join(lines) + "\n")


def list_sync_failed(list_name: str, display_name: str, failed: Snapshot, accepted: Snapshot | None,
                     zone: ZoneInfo) -> Alert:
    """A directory list could not be read from its directory (down, refused our credentials)."""
    reason = wording.swedish(failed.reason) if failed.reason is not None else ""
    using = (f"Utskick går till den senast godkända listan (ögonblicksbild {accepted.ref}, {accepted.members} "
             f"mottagare, från {accepted.taken_at.astimezone(zone):%Y-%m-%d %H:%M})."
             if accepted is not None else "Listan har ingen godkänd version: inget skickas till den.")
    return Alert(
        key=("list_failed", list_name, failed.ref),
        subject=f"Mottagarlistan {display_name} kunde inte hämtas från katalogen",
        body=(f"Synkningen av mottagarlistan {display_name} ({list_name}) misslyckades "
              f"{failed.taken_at.astimezone(zone):%Y-%m-%d %H:%M}: {reason}\n\n{using}\n\n"
              f"Tjänsten försöker igen vid nästa synkning. Prova själv: dispatch recipients sync {list_name}\n"),
    )


# -- delivery -------------------------------------------------------------------------


def deliver(transport: Transport, from_header: tuple[str, str], sender: str, to: tuple[str, ...], subject: str, body: str,
            now: datetime) -> list[str]:
    """Mail one notice to every address in ``to`` over one connection of ``transport``.

    Returns the refusals ("address: reply"; empty when every address took it); raises
    DispatchError (or OSError) when the transport cannot take it at all."""
    data = compose(from_header, to, subject, body, now)
    connection = transport.connect()
    try:
        outcomes = connection.send(sender, list(to), data)
    finally:
        connection.close()
    return [f"{address}: {o.reply}" for address, o in outcomes.items() if o.state is not State.SENT]
