"""Short operational emails to the `notify` addresses: completion summaries (pure composition).

The office must know, without asking, who did not get the report and why.
"""

from __future__ import annotations

from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Iterable
from zoneinfo import ZoneInfo

MAX_LISTED = 200  # beyond this the summary points to `dispatch status`


def compose(sender: str, recipients: Iterable[str], subject: str, body: str, now: datetime) -> bytes:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip(">") or None)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "OOF, AutoReply"
    message.set_content(body, charset="utf-8", cte="quoted-printable")
    return message.as_bytes()


def summary(dispatch: str, subject: str, counts: dict[str, int], rows: list[dict[str, Any]],
            zone: ZoneInfo, next_attempt: datetime | None) -> tuple[str, str]:
    """(subject, body) of a completion summary, in Swedish for the communications office."""
    sent, failed = counts.get("sent", 0), counts.get("failed", 0)
    waiting = counts.get("deferred", 0) + counts.get("unknown", 0) + counts.get("pending", 0)
    if failed or waiting:
        title = f"Utskick {dispatch}: {sent} levererade, {failed} misslyckade, {waiting} väntar"
    else:
        title = f"Utskick {dispatch} klart: {sent} levererade"
    lines = [
        f"Utskick: {dispatch}",
        f"Ämne: {subject}",
        "",
        f"Levererade: {sent}",
        f"Misslyckade: {failed}",
        f"Väntar på nytt försök: {waiting}",
    ]
    if next_attempt is not None and waiting:
        lines.append(f"Nästa försök: {next_attempt.astimezone(zone):%Y-%m-%d %H:%M}")
    for state, heading in (("failed", "Misslyckade mottagare (serverns svar):"),
                           ("deferred", "Mottagare som väntar (senaste svar):"),
                           ("unknown", "Mottagare med okänt utfall (skickas igen):")):
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
