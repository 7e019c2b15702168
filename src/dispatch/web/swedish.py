"""The console speaks Swedish: the problems and refusals the program states in English (for
the command line and the logs) as the office reads them in the browser.

Each entry is a pattern for one English message and its Swedish wording; a message without
an entry is shown as it is (English, but exact). Keep an entry beside every message an editor
meets often: tests/test_console.py checks that the common ones are translated.
"""

from __future__ import annotations

import re

_CATALOGUE: list[tuple[re.Pattern[str], str]] = [(re.compile(pattern, re.DOTALL), swedish) for pattern, swedish in [
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
    (r"^unknown recipient list '(?P<n>.*)'; known lists: (?P<k>.*)$", "mottagarlistan '{n}' finns inte; listor som finns: {k}"),
    # change control (app)
    (r"^(?P<p>.*) wrote this content \(its last editor\) and cannot also approve it; another person must approve \(four eyes\)$",
     "{p} har själv skrivit den här versionen och kan inte också godkänna den; en annan person måste godkänna (fyra ögon)"),
    (r"^the edition changed while (?P<p>.*) was reading it .*$",
     "rapporten ändrades medan {p} läste den; läs den nya versionen och godkänn den som den är nu"),
    (r"^not sendable: (?P<r>.*)$", "kan inte skickas: {r}"),
    (r"^not approved yet: .*$", "rapporten är inte godkänd av en andra person ännu"),
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


def swedish(message: str) -> str:
    """The Swedish wording of a known message (nested: "not sendable: <reason>" too)."""
    for pattern, wording in _CATALOGUE:
        found = pattern.match(message)
        if found:
            parts = {key: swedish(value) if key == "r" else value for key, value in found.groupdict().items()}
            return wording.format(**parts)
    return message
