"""The console speaks Swedish: the problems and refusals the program states in English (for
the command line and the logs) as the office reads them in the browser.

Each entry is a pattern for one English message and its Swedish wording; a message without
an entry is shown as it is (English, but exact). Keep an entry beside every message an editor
meets often: tests/test_console.py checks that the common ones are translated.

The facts the app returns as values (a send's progress, plan and relay trouble, a dispatch's
label, an edition's state) are worded below from the Swedish catalogue (``say_*``), never by
pattern; the patterns above are for messages not yet turned into facts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, tzinfo

from dispatch import wording
from dispatch.app import EditionState, label_from
from dispatch.values import DispatchLabel, Fact, Progress, RelayCause, RunState, SendPlan

# A catalogue: patterns for English messages, each with its Swedish wording ({group} filled in).
Catalogue = list[tuple[re.Pattern[str], str]]

_CATALOGUE: Catalogue = [(re.compile(pattern, re.DOTALL), swedish) for pattern, swedish in [
    # editorial.py: what editors write
    (r"^section '(?P<h>.*)' is empty: add content under it or remove the heading$",
     "avsnittet '{h}' är tomt: skriv något under rubriken eller ta bort den"),
    (r"^text before the first section: .*move '(?P<t>.*)' into a section or delete it$",
     "text före första avsnittet: allt innehåll ska stå under en rubrik '## Rubrik'; flytta '{t}' in i ett avsnitt eller ta bort det"),
    (r"^(?P<w>'.*') is a top-level heading, but the report title is the only one \(dispatch adds it\): "
     r"start a section with (?P<f>'## .*') instead$",
     "{w} är en huvudrubrik, men rapporten har bara en (rapportens titel, som läggs till automatiskt): börja avsnittet med {f} i stället"),
    (r"^'(?P<t>.*)' is shown as literal text, not as a heading: put a space after the '#' characters, (?P<f>'.*')$",
     "'{t}' visas som vanlig text, inte som rubrik: skriv ett mellanslag efter #-tecknen: {f}"),
    (r"^unclosed link '(?P<t>.*)' is shown as literal text: .*$",
     "länken '{t}' är inte avslutad och visas som vanlig text: avsluta adressen med ')'"),
    (r"^'(?P<t>.*)' is shown as literal text, not as a link: remove the space between '\]' and '\('$",
     "'{t}' visas som vanlig text, inte som länk: ta bort mellanslaget mellan ']' och '('"),
    (r"^'(?P<m>.*?)' is shown as literal text, not as bold .*$",
     "'{m}' visas som tecken, inte som fetstil: avsluta den feta texten med '{m}' direkt efter sista ordet (utan mellanslag innanför)"),
    (r"^'(?P<w>.*)' is shown as literal text, not as a link: an address needs its scheme, write '(?P<f>.*)'$",
     "'{w}' blir ingen länk: en adress behöver börja med https://; skriv '{f}'"),
    (r"^the link address '(?P<a>.*)' has no scheme such as 'https://', so in an email it leads nowhere: write (?P<f>.*)$",
     "länkadressen '{a}' saknar https:// och leder ingenstans i ett mejl: skriv {f}"),
    (r"^image .*: images are not sent with the report .*link to it instead: (?P<f>'.*')$",
     "bilder skickas inte med rapporten (Outlook blockerar bilder från nätet); länka till bilden i stället: {f}"),
    (r"^the link text '(?P<t>.*)' says nothing on its own .*$",
     "länktexten '{t}' säger inget för sig själv (skärmläsare listar länkar utan texten runt dem): skriv vad länken "
     "leder till, till exempel '[Samlad information om Millennium](...)'"),
    # preflight.py: the message as it would be sent
    (r"^an empty link in the HTML; give every link a real https:// address$",
     "en länk saknar adress: ge varje länk en riktig adress som börjar med https://"),
    (r"^a placeholder link (?P<h>.*) in the HTML; give every link a real https:// address$",
     "länken {h} är en platshållare: ge den en riktig adress som börjar med https://"),
    (r"^a script link (?P<h>.*) in the HTML; give every link a real https:// address$",
     "länken {h} är ett skript och tas inte med: ge den en riktig adress som börjar med https://"),
    (r"^the HTML part is (?P<n>\d+) KB, over the (?P<m>\d+) KB limit.*$",
     "meddelandet är {n} KB, över gränsen på {m} KB (Gmail klipper längre meddelanden): korta texten"),
    # edition.py: the front matter (the console's fields)
    (r"^revision (?P<n>\d+) is a correction: add 'correction: what changed'.*$",
     "version {n} är en rättelse: skriv i fältet Rättelse vad som är rättat (det visas överst i mejlet), "
     "eller sätt version 1 om inget har skickats ännu"),
    (r"^'compiled' is (?P<c>.*), but this is the edition of (?P<d>[\d-]+) \(the file's name\); set it to (?P<f>.*), or rename.*$",
     "'Sammanställd' är {c}, men det här är rapporten för {d}: ändra till {f}"),
    (r"^'compiled' must be a local time like 2024-11-17 14:00, not (?P<v>.*)$",
     "'Sammanställd' ska vara en tid som 2024-11-17 14:00, inte {v}"),
    (r"^missing required key 'compiled'.*$", "'Sammanställd' saknas: skriv till exempel 2024-11-17 14:00"),
    (r"^'revision' must be a whole number from 1, not (?P<v>.*)$", "'Version' ska vara ett heltal från 1, inte {v}"),
    (r"^'(?P<k>subject|preheader|correction|by)' contains a line break or control character; keep it on one line$",
     "fältet innehåller en radbrytning eller ett styrtecken; skriv det på en rad"),
    (r"^the edition has no content; add sections starting with '## Heading'$",
     "rapporten har inget innehåll: skriv avsnitt som börjar med '## Rubrik'"),
    (r"^an urgent message needs a 'subject'$", "ett brådskande meddelande behöver ett ämne"),
    # app.passwords: a new password ("Byt lösenord")
    (r"^the password must be at least (?P<n>\d+) characters.*$",
     "det nya lösenordet måste vara minst {n} tecken (några ord i följd är lättare att minnas än specialtecken)"),
    (r"^the new password is the same as the current one.*$", "det nya lösenordet är detsamma som det nuvarande: välj ett annat"),
    (r"^unknown recipient list '(?P<n>.*)'; known lists: (?P<k>.*)$", "mottagarlistan '{n}' finns inte; listor som finns: {k}"),
    # change control (app)
    (r"^(?P<p>.*) wrote this content \(its last editor\) and cannot also approve it; another person must approve \(four eyes\)$",
     "{p} har själv skrivit den här versionen och kan inte också godkänna den; en annan person måste godkänna (fyra ögon)"),
    (r"^the edition changed while (?P<p>.*) was reading it .*$",
     "rapporten ändrades medan {p} läste den; läs den nya versionen och godkänn den som den är nu"),
    (r"^not sendable: (?P<r>.*)$", "kan inte skickas: {r}"),
    (r"^not approved yet: .*$", "rapporten är inte godkänd av en andra person ännu"),
    (r"^the approval does not say which content the approver read .*$",
     "godkännandet säger inte vilken version du läste; öppna rapporten igen, läs den och godkänn det som står där"),
    (r"^the approval by (?P<a>.*?) was revoked by (?P<b>.*?) at (?P<t>.*?); approve it again to send it$",
     "godkännandet av {a} återkallades av {b} {t}; den måste godkännas igen innan den kan skickas"),
    (r"^changed after approval by (?P<p>.*?) at (?P<t>.*?) \(.*$",
     "rapporten ändrades efter godkännandet av {p} {t}; den nya versionen måste godkännas på nytt"),
    (r"^the edition is a draft \('status: (?P<s>\w+)'\).*$", "rapporten är ett utkast: ange status Godkänd för att skicka den"),
    (r"^the content changed after the confirmation .*$",
     "innehållet ändrades efter bekräftelsen; bekräfta igen så att det som skickas är det du såg"),
    (r"^nothing of this edition has been sent: edit it instead$",
     "inget av den här rapporten har skickats: ändra den i stället för att skapa en rättelse"),
    (r"^this edition was already sent to (?P<n>\d+) recipient\(s\) as .*$",
     "den här versionen är redan skickad till {n} mottagare och kan inte ändras; en ändring görs som rättelse "
     "('Skapa rättelse')"),
]]


def _reworded(catalogue: Catalogue, text: str, value: Callable[[str, str], str] = lambda key, value: value) -> str | None:
    """The wording of the first entry whose pattern matches ``text``, its groups filled in
    (each passed through ``value(name, text)``); None when no entry matches."""
    for pattern, said in catalogue:
        found = pattern.match(text)
        if found:
            return said.format(**{key: value(key, group or "") for key, group in found.groupdict().items()})
    return None


def swedish(message: str) -> str:
    """The Swedish wording of a known message (nested: "not sendable: <reason>" too)."""
    return _reworded(_CATALOGUE, message, lambda key, value: swedish(value) if key == "r" else value) or message


# -- the audit log's details ---------------------------------------------------------------------
# The ledger keeps them in English (the command line and the exports read them); the console's
# log shows them in Swedish, part by part ("from 10.0.0.7; wrong password (2)").

_MOMENT = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:[+-]\d\d:\d\d|Z)")


def _local(moment: str, zone: tzinfo) -> str:
    try:
        return datetime.fromisoformat(moment).astimezone(zone).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return moment


ROLE_NAMES = {"editor": "redaktör", "approver": "godkännare", "operator": "operatör"}
_FROM_PROVIDER = " (from the identity provider)"

# Groups named ...role are role names, shown in Swedish.
_DETAIL_PARTS: Catalogue = [(re.compile(pattern), wording) for pattern, wording in [
    (r"^from (?P<r>.+)$", "från {r}"),
    (r"^unknown user or no password$", "okänd användare eller inget lösenord"),
    (r"^account locked until (?P<t>.+)$", "kontot spärrat till {t}"),
    (r"^wrong password \((?P<n>\d+)\)$", "fel lösenord (försök {n})"),
    (r"^wrong password during the lock$", "fel lösenord under spärren"),
    (r"^right password: told the lock's end$", "rätt lösenord: fick veta när spärren upphör"),
    (r"^(?P<n>\d+) attempts counted: password not checked$", "{n} försök räknade: lösenordet prövades inte"),
    (r"^too many unknown names from this address$", "för många okända användarnamn från den här adressen"),
    (r"^by the account's owner$", "av kontots ägare"),
    (r"^sessions ended$", "alla inloggningar avslutade"),
    (r"^(?P<n>\d+) failed sign-ins: locked for (?P<m>\d+) minutes$", "{n} misslyckade inloggningar: spärrat i {m} minuter"),
    (r"^account disabled$", "kontot är avstängt"),
    (r"^single sign-on$", "enkel inloggning"),
    (r"^role (?P<role>\w+), no address$", "roll {role}, ingen e-postadress"),
    (r"^role (?P<role>\w+), (?P<a>.+)$", "roll {role}, {a}"),
    (r"^role (?P<old_role>\S+) -> (?P<new_role>\S+)$", "roll {old_role} -> {new_role}"),
    (r"^email (?P<c>.+)$", "e-post {c}"),
    (r"^revision (?P<n>\d+)$", "version {n}"),
    (r"^revision (?P<n>\d+) of (?P<d>.+)$", "version {n} av {d}"),
    (r"^1 approval\(s\)$", "1 godkännande"),
    (r"^(?P<n>\d+) approval\(s\)$", "{n} godkännanden"),
    (r"^kept text (?P<k>\S+)$", "texten sparad som {k}"),
    (r"^file (?P<h>\S+)$", "filen {h}"),
    (r"^(?P<n>\d+) (?:deferred|waiting) recipient\(s\)$", "{n} väntande mottagare"),
    (r"^(?P<n>\d+) recipient\(s\) \(test\)$", "{n} mottagare (provutskick)"),
    (r"^(?P<n>\d+) recipient\(s\)$", "{n} mottagare"),
    (r"^no console role for (?P<c>.+)$", "ingen roll i konsolen för {c}"),
    (r"^the name belongs to a local account$", "namnet hör till ett lokalt konto"),
    (r"^the name belongs to another person at the identity provider$", "namnet hör till en annan person hos identitetsleverantören"),
    (r"^the account is disabled in the console$", "kontot är avstängt i konsolen"),
]]


def _role_in_swedish(key: str, value: str) -> str:
    return ROLE_NAMES.get(value, value) if key.endswith("role") else value


def swedish_audit_detail(detail: str, zone: tzinfo = UTC) -> str:
    """An audit entry's detail as the console shows it; a part without an entry stays as written.
    Moments in it (recorded in UTC) are shown in ``zone``, as the log's own times are."""
    detail = _MOMENT.sub(lambda m: _local(m[0], zone), detail)
    shown = []
    for part in detail.split("; "):
        suffix = ""
        if part.endswith(_FROM_PROVIDER):
            part, suffix = part[: -len(_FROM_PROVIDER)], " (från identitetsleverantören)"
        shown.append((_reworded(_DETAIL_PARTS, part, _role_in_swedish) or part) + suffix)
    return "; ".join(shown)


NOTHING = "\N{EN DASH}"  # shown where there is no value (no rate, no time left)


# -- facts worded from the Swedish catalogue (dispatch.wording) -----------------------------------


def say_plan(plan: SendPlan) -> str:
    """A send plan as the console shows it (the command line prints the English ``plan:`` line)."""
    return wording.word_plan(plan, wording.swedish, wording.swedish(wording.duration(plan.seconds or 0)))


def say_label(label: DispatchLabel | None) -> str:
    """"Rapporten tis 8 dec, version 2", "Brådskande: ...", "Test till eva"."""
    return wording.swedish_label(label) if label is not None else ""


def say_state(state: RunState) -> str:
    return wording.swedish(Fact.of(f"run_state.{state.value}"))


def say_fact(fact: Fact | None) -> str:
    return wording.swedish(fact) if fact is not None else ""


def say_duration(seconds: float | None) -> str:
    return wording.swedish(wording.duration(seconds)) if seconds is not None else NOTHING


def say_relay(progress: Progress, zone: tzinfo) -> str:
    """What the operator reads when the relay is not taking messages: which server, why, and
    that nobody has been counted as failed for it. A send here that pauses speaks in the
    present; recipients held back by a send elsewhere (serve, another node) in the past, since
    this page cannot know how it is now."""
    trouble = progress.trouble
    if trouble is None:
        return ""
    cause = wording.swedish(wording.relay_cause(trouble.cause))
    at = f"{progress.next_try.astimezone(zone):%H:%M}" if progress.next_try else None
    if progress.state is RunState.PAUSED_BY_RELAY or (progress.state is RunState.INCOMPLETE and progress.relay_permanent):
        if progress.relay_permanent:
            return wording.swedish(Fact.of("relay.refused", host=trouble.host, cause=cause))
        when = wording.swedish(Fact.of("relay.at", time=at) if at else Fact.of("relay.soon"))
        return wording.swedish(Fact.of("relay.paused", host=trouble.host, cause=cause, when=when))
    when = " " + wording.swedish(Fact.of("relay.at", time=at)) if at else ""
    return wording.swedish(Fact.of("relay.held", count=progress.held_by_relay, host=trouble.host, cause=cause, when=when))


def say_reply(row: Mapping[str, object]) -> str:
    """A recipient's last reply as a table shows it: why it waits when the relay held it back
    (its exact text then belongs in the technical detail), else the server's reply as given."""
    cause = row.get("relay_cause")
    if cause:
        known = str(cause) in {c.value for c in RelayCause}
        return wording.swedish(Fact.of("relay.row", cause=wording.swedish(
            wording.relay_cause(RelayCause(str(cause)) if known else RelayCause.OTHER))))
    return str(row.get("reply") or "")


def say_held_elsewhere(progress: Progress, zone: tzinfo) -> str:
    """Why recipients wait for another run (a node, serve, a run that failed) and until when."""
    if not progress.held_elsewhere or progress.held_until is None:
        return ""
    return wording.swedish(Fact.of("held.elsewhere", count=progress.held_elsewhere,
                                   time=f"{progress.held_until.astimezone(zone):%H:%M:%S}"))


def say_urgent(progress: Progress) -> str:
    return wording.swedish(Fact.of("urgent.ahead", subject=progress.urgent_ahead)) if progress.urgent_ahead else ""


def say_edition(state: EditionState) -> str:
    """One day's edition as Idag and the edition's page say it."""
    fact = state.fact
    if state.key == "draft" and state.verdict is not None:
        fact = Fact.of("edition.draft", reason=state.verdict.reason_sv)
    said = wording.swedish(fact) + (wording.swedish(state.tail) if state.tail is not None else "")
    if state.correction is not None:
        said = wording.swedish(Fact.of("edition.correction", revision=state.correction, state=said))
    return said


def entry_label(entry: Mapping[str, object]) -> str:
    """A ``history`` entry's label (the entries are the command's JSON objects)."""
    return say_label(label_from(str(entry["dispatch"]), str(entry["kind"]), str(entry["edition"]),
                                int(str(entry["revision"])), str(entry["subject"]), str(entry["created_by"] or "")))
