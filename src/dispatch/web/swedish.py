"""What is left of the console's rewording of English text: the plan line and the relay's
trouble (being replaced by facts worded from locale/, issue 31). Problems, refusals, role
names and the audit log's details are facts, worded by dispatch.wording.swedish."""

from __future__ import annotations

import re
from collections.abc import Callable

# A catalogue: patterns for English text, each with its Swedish wording ({group} filled in).
Catalogue = list[tuple[re.Pattern[str], str]]


_PLAN_MAILDIR = re.compile(r"^plan: (?P<n>\d+) recipients into the Maildir (?P<p>\S+)(?P<rest>.*)$")
_PLAN_SMTP = re.compile(r"^plan: (?P<n>\d+) recipients in (?P<m>\d+) messages(?P<bcc> of up to (?P<b>\d+) recipients \(Bcc\))?"
                        r" over (?P<c>\d+) connection\(s\) to (?P<h>\S+?)(?: at (?P<r>[\d.]+)/min: about (?P<d>[^;(]+))?"
                        r"(?:; (?P<have>\d+) already have it| \(recipients already accepted are skipped\))$")


def swedish_plan(line: str) -> str:
    """The plan line `send` prints, as the console shows it."""
    found = _PLAN_SMTP.match(line)
    if found:
        text = (f"{found['n']} mottagare i {found['m']} meddelanden"
                + (f" (högst {found['b']} mottagare per meddelande, som dold kopia)" if found["bcc"] else "")
                + f" över {found['c']} anslutning(ar) till {found['h']}")
        if found["r"]:
            text += f", {found['r']} per minut: cirka {_swedish_duration(found['d'].strip())}"
        return text + (f"; {found['have']} har den redan" if found["have"] else "; de som redan har fått den hoppas över")
    found = _PLAN_MAILDIR.match(line)
    if found:
        return f"{found['n']} mottagare till Maildir-katalogen {found['p']}"
    return line


def _swedish_duration(text: str) -> str:
    return text.replace(" min", " minuter").replace(" h", " timmar").replace(" s", " sekunder")


def _reworded(catalogue: Catalogue, text: str, value: Callable[[str, str], str] = lambda key, value: value) -> str | None:
    """The wording of the first entry whose pattern matches ``text``, its groups filled in
    (each passed through ``value(name, text)``); None when no entry matches."""
    for pattern, wording in catalogue:
        found = pattern.match(text)
        if found:
            return wording.format(**{key: value(key, group or "") for key, group in found.groupdict().items()})
    return None


# -- the relay's trouble, on a send's page -------------------------------------------------------

_RELAY_CAUSES: Catalogue = [(re.compile(pattern), wording) for pattern, wording in [
    (r"^cannot connect: ConnectionRefusedError", "anslutningen nekades (ingen server svarar på den adressen och porten)"),
    (r"^(?:cannot connect: (?:TimeoutError|timeout|socket\.timeout)|.*timed out)", "inget svar inom tidsgränsen"),
    (r"^cannot connect: gaierror", "servernamnet går inte att slå upp (DNS)"),
    (r"^cannot connect: (?:ConnectionResetError|SMTPServerDisconnected|BrokenPipeError)", "servern stängde anslutningen"),
    (r"^TLS certificate not trusted", "serverns TLS-certifikat är inte betrott (transport.ca_file)"),
    (r"^TLS failed", "TLS-förhandlingen misslyckades"),
    (r"^server refused the session: (?P<r>.*)$", "servern nekade sessionen: {r}"),
    (r"^(?:XOAUTH2 )?authentication failed: (?P<r>.*)$", "inloggningen hos servern nekades: {r}"),
    (r"^refusing to send credentials over an unencrypted connection",
     "inloggningsuppgifterna skickas inte över en okrypterad anslutning (transport.security)"),
]]


def _relay_cause(reason: str) -> tuple[str, str]:
    """The server and the cause, in Swedish where it is a common one."""
    endpoint, _, cause = reason.partition(": ")
    if not cause:
        endpoint, cause = "", reason
    return endpoint, _reworded(_RELAY_CAUSES, cause) or cause


def swedish_held(reason: str, held: int, next_attempt: str | None) -> str:
    """What the ledger says of recipients held back for the relay's sake by a send that runs
    elsewhere (serve, another node): past tense, since this page cannot know how it is now."""
    if not reason:
        return ""
    endpoint, cause = _relay_cause(reason)
    server = f"servern {endpoint}" if endpoint else "servern"
    when = f" klockan {next_attempt}" if next_attempt else ""
    return (f"{held} mottagare väntar eftersom {server} inte tog emot utskicket: {cause}. Ingen av dem räknas som "
            f"misslyckad för det; de får ett nytt försök{when} (Försök igen nu skickar till dem direkt).")


def swedish_relay(reason: str, permanent: bool, next_attempt: str | None) -> str:
    """What the operator reads when the relay is not taking messages: which server, why (in
    Swedish where the cause is a common one, else as the server or the system said it), and
    that nobody has been counted as failed for it."""
    if not reason:
        return ""
    endpoint, cause = _relay_cause(reason)
    server = f"Servern {endpoint}" if endpoint else "Servern"
    if permanent:
        return (f"{server} tar inte emot utskicket: {cause}. Det måste åtgärdas; ingen mottagare räknas som "
                "misslyckad för det. Tryck Försök igen nu när det är åtgärdat.")
    when = f"klockan {next_attempt}" if next_attempt else "om en stund"
    return (f"{server} går inte att nå just nu: {cause}. Ingen mottagare räknas som misslyckad för det; "
            f"utskicket försöker igen {when} (eller tryck Försök igen nu när felet är åtgärdat).")
