"""The stages one by one, in this process: edition.assemble (the edition file -> an Edition),
render.render (-> subject, HTML and text), message.prepare and friends (-> the bytes an SMTP
transaction sends). No CLI, no server: each test takes milliseconds, and names the stage
that broke when one of the end-to-end tests fails."""

from __future__ import annotations

import base64
import errno
import re
import smtplib
import socket
import ssl
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from pathlib import Path

import pytest

from conftest import ROOT, STOCKHOLM
from dispatch.config import ReportSettings, StandingSection
from dispatch.email.edition import assemble
from dispatch.email.headers import encode_words
from dispatch.email.message import Envelope, PreparedMessage, prepare, to_header
from dispatch.email.render import render
from dispatch.errors import DispatchError, InputError
from dispatch.models import Edition, Recipient, Rendered
from dispatch.values import Fact

NOW = datetime(2024, 11, 17, 13, 0, tzinfo=UTC)
TEMPLATES = ROOT / "templates" / "email"
FOOTER = "Du får detta eftersom du står på en sändlista."

REPORT = ReportSettings(
    title="Regional rapport Millennium 2024",
    subject="{{ title }}, {{ date_label }}",
    preheader="Läget i dag",
    list_id="regional-rapport",
    standing_sections=(
        StandingSection("Dagligen", "- Rapporten kommer varje dag\n"),
        StandingSection("Talespersoner", "- Håkan Sandahl, regiondirektör\n", urgent_markdown="- Håkan Sandahl, regiondirektör\n"),
        StandingSection("Om rapporten", "Sammanställs av kommunikation.\n\nLång bakgrund om syftet.\n",
                        urgent_markdown="Sammanställs av kommunikation.\n"),
    ),
)

EDITION = """---
compiled: 2024-11-17 14:00
status: approved
lists: [politisk-ledning]
by: Erik
---

## Beskrivning av händelsen

- VGR har pausat breddinförandet.
- Återstart planeras till **tisdag**.

## Verksamhetens kommentar

- Patientsäkerheten går först.
"""


def edition(text: str = EDITION, name: str = "2024-11-17.md", *, urgent: bool = False) -> Edition:
    return assemble(Path("reports") / name, text, REPORT, NOW, urgent=urgent)


# -- edition.assemble ------------------------------------------------------------------------------


def test_front_matter_becomes_the_editions_facts() -> None:
    made = edition()
    assert made.date == date(2024, 11, 17)
    assert made.compiled == datetime(2024, 11, 17, 14, 0)
    assert made.status == "approved" and made.approved
    assert made.revision == 1 and made.correction is None
    assert made.lists == ("politisk-ledning",)
    assert made.author == "Erik"
    assert not made.urgent and made.kind == "edition"
    # The configured subject template, filled in; the preheader from the first bullet.
    assert made.subject == "Regional rapport Millennium 2024, söndag 17 november 2024"
    assert made.preheader == "VGR har pausat breddinförandet."
    assert made.compiled_label == "Sammanställd: 2024-11-17 klockan 14:00"


def test_front_matter_overrides_and_a_correction() -> None:
    text = EDITION.replace("status: approved\n", "status: draft\nrevision: 2\ncorrection: Återstart flyttad.\n"
                           "subject: \"Rapport {{ date }}\"\npreheader: Kort om läget\n")
    made = edition(text)
    assert made.status == "draft" and not made.approved
    assert made.revision == 2 and made.correction == "Återstart flyttad."
    assert made.subject == "Rapport 2024-11-17"
    # A correction's inbox preview is the correction, even over a preheader carried over from
    # revision 1 (the console's "Skapa rättelse" keeps the fields): it must not look like the original.
    assert made.preheader == "Återstart flyttad."
    assert edition(text.replace("revision: 2\n", "").replace("correction: Återstart flyttad.\n", "")).preheader == "Kort om läget"


def test_sections_in_order_with_their_text_html_anchor_and_line() -> None:
    made = edition()
    assert [s.heading for s in made.sections] == ["Beskrivning av händelsen", "Verksamhetens kommentar"]
    first, second = made.sections
    assert (first.line, second.line) == (8, 13)  # the heading lines in the file
    assert first.anchor == "beskrivning-av-handelsen"
    # The editor's **emphasis** stays in the text part as *emphasis*, the plain-text convention.
    assert "VGR har pausat breddinförandet." in first.text and "Återstart planeras till *tisdag*." in first.text
    assert first.text.index("pausat") < first.text.index("Återstart")
    assert "<li>" in first.html and "<strong>tisdag</strong>" in first.html
    assert "Patientsäkerheten går först." in second.text and "Patientsäkerheten" not in first.text


def test_standing_sections_follow_unless_the_edition_has_a_section_of_that_name() -> None:
    made = edition()
    assert [s.heading for s in made.standing] == ["Dagligen", "Talespersoner", "Om rapporten"]
    assert "Lång bakgrund om syftet." in made.standing[2].text
    own = edition(EDITION + "\n## Dagligen\n\n- I dag en egen text.\n")
    assert [s.heading for s in own.sections][-1] == "Dagligen"
    assert [s.heading for s in own.standing] == ["Talespersoner", "Om rapporten"], "not twice"


def test_an_urgent_message_has_its_subject_and_only_the_short_standing_part() -> None:
    text = "---\nsubject: SÄS stänger akuten 16:00\nlists: [chefer]\n---\n\nAkuten i Borås stänger **16:00**.\n"
    made = edition(text, name="sas-akut.md", urgent=True)
    assert made.urgent and made.kind == "urgent"
    assert made.status == "approved", "an urgent message needs no status line"
    assert made.subject == "SÄS stänger akuten 16:00"
    assert made.sections == () and "Akuten i Borås stänger *16:00*." in made.lead_text, "the emphasis is kept"
    assert "<strong>16:00</strong>" in made.lead_html
    assert made.date == NOW.date(), "no date in the name: the day it is sent"
    assert [s.heading for s in made.standing] == ["Talespersoner", "Om rapporten"]
    assert "Lång bakgrund" not in made.standing[1].text and "Sammanställs av kommunikation." in made.standing[1].text
    assert edition(text.replace("---\nsubject", "---\nurgent: true\nsubject"), name="sas-akut.md").urgent, "or from the front matter"


@pytest.mark.parametrize("written", ["Brådskande: SÄS stänger akuten 16:00", "BRÅDSKANDE: SÄS stänger akuten 16:00",
                                     "brådskande \u2013 SÄS stänger akuten 16:00", "SÄS stänger akuten 16:00"])
def test_an_urgent_subject_says_brådskande_once_whatever_its_author_wrote(written: str) -> None:
    from dispatch.email.render import subject_for

    text = f"---\nsubject: '{written}'\nlists: [chefer]\n---\n\nAkuten i Borås stänger **16:00**.\n"
    assert subject_for(edition(text, name="sas-akut.md", urgent=True)) == "BRÅDSKANDE: SÄS stänger akuten 16:00"


def test_an_urgent_message_without_a_subject_is_refused() -> None:
    with pytest.raises(InputError) as caught:
        edition("---\nlists: [chefer]\n---\n\nText.\n", name="akut.md", urgent=True)
    assert "an urgent message needs a 'subject'" in str(caught.value)


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("status: approved\n", "", "reports/2024-11-17.md:2: missing required key 'status'"),
    ("lists: [", "lsts: [", "reports/2024-11-17.md:4: unknown front matter key 'lsts'"),
    ("status: approved", "status: godkänd", "reports/2024-11-17.md:3: 'status' must be draft or approved, not 'godkänd'"),
    ("status: approved\n", "status: approved\nrevision: 2\n", "reports/2024-11-17.md:4: revision 2 is a correction"),
], ids=["missing status", "misspelt key", "unknown status", "revision without correction"])
def test_front_matter_problems_name_the_file_and_line(old: str, new: str, expected: str) -> None:
    with pytest.raises(InputError) as caught:
        edition(EDITION.replace(old, new))
    shown = [str(p) for p in caught.value.problems]
    assert any(p.startswith(expected) for p in shown), shown


def test_the_file_name_must_be_the_editions_date() -> None:
    with pytest.raises(InputError) as caught:
        edition(name="idag.md")
    assert "must be named YYYY-MM-DD.md" in str(caught.value)


# -- render.render -----------------------------------------------------------------------------------


def rendered(made: Edition, *, web_url: str | None = None, test: bool = False) -> Rendered:
    return render(made, TEMPLATES, footer=FOOTER, web_url=web_url, test=test)


def test_the_subject_carries_the_prefix_of_what_it_is() -> None:
    normal = edition()
    correction = edition(EDITION.replace("status: approved\n", "status: approved\nrevision: 2\ncorrection: Ny tid.\n"))
    urgent = edition("---\nsubject: Akuten stänger\n---\n\nText.\n", name="akut.md", urgent=True)
    base = "Regional rapport Millennium 2024, söndag 17 november 2024"
    assert rendered(normal).subject == base
    assert rendered(normal, test=True).subject == f"[TEST] {base}"
    assert rendered(correction).subject == f"Rättelse: {base}"
    assert rendered(correction, test=True).subject == f"[TEST] Rättelse: {base}"
    assert rendered(urgent).subject == "BRÅDSKANDE: Akuten stänger"
    assert rendered(urgent, test=True).subject == "[TEST] BRÅDSKANDE: Akuten stänger"


def test_the_text_part_carries_every_section_in_order_then_the_standing_part_and_the_footer() -> None:
    out = rendered(edition(), web_url="https://intranat.example.org/2024-11-17.html")
    text = out.text
    order = ["Regional rapport Millennium 2024", "Söndag 17 november 2024", "Sammanställd: 2024-11-17 klockan 14:00",
             "Beskrivning av händelsen", "VGR har pausat breddinförandet.", "Återstart planeras till *tisdag*.",
             "Verksamhetens kommentar", "Patientsäkerheten går först.",
             "Dagligen", "Talespersoner", "Håkan Sandahl", "Om rapporten", FOOTER,
             "Visa i webbläsare:\nhttps://intranat.example.org/2024-11-17.html"]
    positions = [text.find(item) for item in order]
    assert -1 not in positions, [item for item, at in zip(order, positions, strict=True) if at < 0]
    assert positions == sorted(positions), "in this order"
    assert "<" not in text and "**" not in text, "plain text, not markup"
    assert "BRÅDSKANDE" not in text and "RÄTTELSE" not in text
    assert text.endswith("\n") and "\n\n\n" not in text and "\r" not in text
    assert "Beskrivning av händelsen" in out.html and "Patientsäkerheten går först." in out.html
    headings = re.findall(r"<h2 [^>]*>Beskrivning av händelsen</h2>", out.html)
    assert headings and "font-size:" in headings[0], "the stylesheet is inlined into the elements"


def test_the_text_part_of_a_correction_and_of_an_urgent_message_says_so_first() -> None:
    correction = rendered(edition(EDITION.replace("status: approved\n", "status: approved\nrevision: 2\ncorrection: Ny tid.\n")))
    assert correction.text.index("RÄTTELSE: Ny tid.") < correction.text.index("Beskrivning av händelsen")
    urgent = rendered(edition("---\nsubject: Akuten stänger\n---\n\nAkuten stänger i dag.\n", name="akut.md", urgent=True))
    assert urgent.text.lstrip().startswith("BRÅDSKANDE MEDDELANDE")
    assert urgent.text.index("Akuten stänger i dag.") < urgent.text.index("Talespersoner")
    assert "Lång bakgrund" not in urgent.text


# -- message: prepare, to_header, encode_words, for_recipients --------------------------------------

ENVELOPE = Envelope(sender="rapport@example.org", from_name="Regional rapport", from_address="rapport@example.org",
                    reply_to="kommunikation@example.org", list_name="Regional rapport", list_address="regional-rapport.example.org")
RENDERED = Rendered(subject="Regional rapport, söndag 17 november 2024",
                    html="<html><body><p>Läget " + "mycket långt " * 200 + "</p></body></html>",
                    text="Läget i dag\n" + "en mycket lång rad " * 100 + "\n")


def prepared(*, urgent: bool = False) -> PreparedMessage:
    return prepare(RENDERED, ENVELOPE, NOW, urgent=urgent)


def test_prepare_serialises_the_common_headers_with_crlf_and_ascii_only() -> None:
    made = prepared()
    head = made.head
    assert head.endswith(b"\r\n") and not head.endswith(b"\r\n\r\n")
    assert made.body.startswith(b"\r\n"), "the blank line between head and body"
    whole = made.head + made.body
    assert b"\n" not in whole.replace(b"\r\n", b""), "every line ends in CRLF"
    assert all(len(line) <= 998 for line in whole.split(b"\r\n"))
    assert head.isascii()
    assert b"=?utf-8?" in head.lower(), "the Swedish subject as an encoded-word"
    assert made.domain == "example.org"
    message = message_from_bytes(made.for_recipients("a@example.org", "<x@example.org>"), policy=policy.default)
    assert message["Subject"] == RENDERED.subject
    assert message["From"] == "Regional rapport <rapport@example.org>" and message["Reply-To"] == ENVELOPE.reply_to
    assert message["List-Id"] == "Regional rapport <regional-rapport.example.org>"
    assert message["Date"].datetime == NOW
    assert (message["Auto-Submitted"], message["X-Auto-Response-Suppress"], message["Precedence"]) == (
        "auto-generated", "OOF, AutoReply", "bulk")
    assert message["Importance"] is None and message["X-Priority"] is None
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p["Content-Transfer-Encoding"] == "quoted-printable" for p in parts)
    assert parts[0].get_content().replace("\r\n", "\n") == RENDERED.text
    assert parts[1].get_content().replace("\r\n", "\n").rstrip("\n") == RENDERED.html


def test_an_urgent_message_is_marked_important() -> None:
    message = message_from_bytes(prepared(urgent=True).for_recipients("a@example.org", "<x@example.org>"), policy=policy.default)
    assert message["Importance"] == "High" and message["X-Priority"] == "1"


def test_without_reply_to_there_is_no_reply_to_header() -> None:
    envelope = Envelope(ENVELOPE.sender, ENVELOPE.from_name, ENVELOPE.from_address, None, ENVELOPE.list_name, ENVELOPE.list_address)
    assert b"Reply-To:" not in prepare(RENDERED, envelope, NOW, urgent=False).head


def test_for_recipients_puts_to_and_message_id_first_and_keeps_the_rest() -> None:
    made = prepared()
    data = made.for_recipients("Anna <anna@example.org>", "<abc.123@example.org>")
    assert data.startswith(b"To: Anna <anna@example.org>\r\nMessage-ID: <abc.123@example.org>\r\n")
    assert data.endswith(made.head + made.body)
    message = message_from_bytes(data, policy=policy.default)
    assert message["To"] == "Anna <anna@example.org>" and message["Message-ID"] == "<abc.123@example.org>"


@pytest.mark.parametrize(("to", "message_id"), [
    ("anna@example.org\r\nBcc: everyone@example.org", "<a@example.org>"),
    ("anna@example.org\nBcc: everyone@example.org", "<a@example.org>"),
    ("anna@example.org\rBcc: everyone@example.org", "<a@example.org>"),
    ("anna@example.org", "<a@example.org>\r\nBcc: everyone@example.org"),
    ("anna@example.org", "<a@example.org>\nX-Evil: 1"),
], ids=["crlf in to", "lf in to", "cr in to", "crlf in message-id", "lf in message-id"])
def test_for_recipients_refuses_a_line_break_in_either_header(to: str, message_id: str) -> None:
    with pytest.raises(DispatchError, match="header injection"):
        prepared().for_recipients(to, message_id)


def person(name: str, address: str = "anna@example.org") -> Recipient:
    return Recipient(address=address, name=name, key=address.lower())


def decoded(header_value: str) -> str:
    return str(make_header(decode_header(header_value)))


def test_to_header_for_one_person() -> None:
    assert to_header([person("")]) == "anna@example.org"
    assert to_header([person("Anna  Johansson ")]) == "Anna Johansson <anna@example.org>", "whitespace folded"
    assert to_header([person("Johansson, Anna")]) == '"Johansson, Anna" <anna@example.org>', "specials quoted"
    assert to_header([person('Anna "AJ" J')]) == '"Anna \\"AJ\\" J" <anna@example.org>'
    swedish = to_header([person("Åke Häggström")])
    assert swedish.isascii() and swedish.endswith(" <anna@example.org>")
    assert decoded(swedish.rsplit(" <", 1)[0]) == "Åke Häggström"


def test_to_header_for_a_bcc_batch_is_an_empty_group() -> None:
    batch = [person("Anna"), person("Erik", "erik@example.org")]
    assert to_header(batch) == "Mottagare:;"
    assert to_header(batch, "Chefer: <alla> (VGR)") == '"Chefer: <alla> (VGR)":;', "specials quoted: nothing left to break the group"
    assert "anna@example.org" not in to_header(batch, "Chefer")
    swedish = to_header(batch, "Politisk ledning, Västra Götaland")
    assert swedish.isascii() and swedish.endswith(":;")
    assert decoded(swedish[:-2]) == "Politisk ledning, Västra Götaland"
    assert to_header([person("Anna")], "Chefer") == "Chefer:;", "a group name makes a group even of one"


@pytest.mark.parametrize("text", [
    "Åke",
    "Häggström, Åke \"Åke H\"",
    "Å" * 200,
    "Ångström " * 40,
    "Akut 🚑 " * 30,  # the ambulance is four bytes
], ids=["short", "specials", "long-2-byte", "long-mixed", "long-4-byte"])
def test_encode_words_are_at_most_75_characters_on_one_line_and_decode_to_the_text(text: str) -> None:
    words = encode_words(text)
    encoded = " ".join(words)
    assert "\r" not in encoded and "\n" not in encoded and encoded.isascii()
    assert all(len(word) <= 75 for word in words), max(len(w) for w in words)
    assert all(re.fullmatch(r"=\?utf-8\?b\?[A-Za-z0-9+/=]+\?=", word) for word in words)
    for word in words:  # no character split across two words: each decodes on its own
        base64.b64decode(word[len("=?utf-8?b?"):-2]).decode("utf-8")
    assert decoded(encoded) == text
    if len(text.encode()) > 45:
        assert len(words) > 1, "a long text takes several words"
    if len(text.encode()) <= 45:
        assert len(words) == 1, "a short one fits in one"


# -- the console's audit log in Swedish ------------------------------------------------------------


def _fact(code: str, count: int | None = None, **params: str | int | Fact) -> Fact:
    return Fact.of(f"audit_detail.{code}", count=count, **params)


def _role(role: str) -> Fact:
    return Fact.of(f"role.{role}")


# Issue 31: details are recorded as facts (and in English beside them); the console words the
# facts, no longer the English. Each case: the facts, the English recorded as before, the Swedish shown.
@pytest.mark.parametrize(("facts", "recorded", "shown"), [
    ([_fact("from", remote="10.0.0.7"), _fact("wrong_password", attempt=2)],
     "from 10.0.0.7; wrong password (2)", "från 10.0.0.7; fel lösenord (försök 2)"),
    ([_fact("from", remote="10.0.0.7"), _fact("unknown_user")],
     "from 10.0.0.7; unknown user or no password", "från 10.0.0.7; okänd användare eller inget lösenord"),
    ([_fact("locked_until", until="2024-11-18T09:15+00:00")],
     "account locked until 2024-11-18T09:15+00:00", "kontot spärrat till 2024-11-18 10:15"),  # Stockholm time
    ([_fact("locked_for", attempts=5, minutes=15)],
     "5 failed sign-ins: locked for 15 minutes", "5 misslyckade inloggningar: spärrat i 15 minuter"),
    ([_fact("from", remote="10.0.0.7"), _fact("account_disabled")],
     "from 10.0.0.7; account disabled", "från 10.0.0.7; kontot är avstängt"),
    ([_fact("from", remote="10.0.0.7"), _fact("single_sign_on")],
     "from 10.0.0.7; single sign-on", "från 10.0.0.7; enkel inloggning"),
    ([_fact("role_and_address", role=_role("approver"), address="bo@region.example.se")],
     "role approver, bo@region.example.se", "roll godkännare, bo@region.example.se"),
    ([_fact("role_no_address", role=_role("editor")), _fact("single_sign_on")],
     "role editor, no address; single sign-on", "roll redaktör, ingen e-postadress; enkel inloggning"),
    ([_fact("role_changed", old=_role("editor"), new=_role("approver")),
      _fact("email_changed_by_provider", old="-", new="bo@example.org")],
     "role editor -> approver; email - -> bo@example.org (from the identity provider)",
     "roll redaktör -> godkännare; e-post - -> bo@example.org (från identitetsleverantören)"),
    ([_fact("revision", revision=2)], "revision 2", "version 2"),
    ([_fact("revision_of", revision=2, name="2024-11-17.r1.edition")],
     "revision 2 of 2024-11-17.r1.edition", "version 2 av 2024-11-17.r1.edition"),
    ([_fact("approvals", count=1)], "1 approval(s)", "1 godkännande"),
    ([_fact("approvals", count=3)], "3 approval(s)", "3 godkännanden"),
    ([_fact("kept_text", id=7), _fact("file", hash="826f0a291683")],
     "kept text 7; file 826f0a291683", "texten sparad som 7; filen 826f0a291683"),
    ([_fact("waiting_recipients", count=12)], "12 waiting recipient(s)", "12 väntande mottagare"),
    ([_fact("recipients", count=49)], "49 recipient(s)", "49 mottagare"),
    ([_fact("test_recipients", count=1)], "1 recipient(s) (test)", "1 mottagare (provutskick)"),
    ([_fact("no_console_role", groups="groups ['kommunikation']")],
     "no console role for groups ['kommunikation']", "ingen roll i konsolen för groups ['kommunikation']"),
    ([_fact("from", remote="10.0.0.1"), _fact("name_of_local_account")],
     "from 10.0.0.1; the name belongs to a local account", "från 10.0.0.1; namnet hör till ett lokalt konto"),
    ([_fact("disabled_in_console")], "the account is disabled in the console", "kontot är avstängt i konsolen"),
    ([_fact("export", format="json")], "json", "json"),
    ([_fact("said", text="invalid_grant: the code was used")], "invalid_grant: the code was used",
     "invalid_grant: the code was used"),  # the provider's own words, as said
    ([], "", ""),
])
def test_the_audit_logs_details_are_recorded_in_english_and_shown_in_swedish(facts: list[Fact], recorded: str,
                                                                               shown: str) -> None:
    from dispatch.models import AuditEntry
    from dispatch.web.console import audit_detail
    from dispatch.wording import english

    assert "; ".join(english(fact) for fact in facts) == recorded
    entry = AuditEntry(1, datetime(2024, 11, 18, tzinfo=UTC), "anna", "sign_in", "", None, recorded, tuple(facts))
    assert audit_detail(entry, STOCKHOLM) == shown


def test_an_audit_entry_recorded_before_details_were_facts_is_shown_as_recorded() -> None:
    from dispatch.models import AuditEntry
    from dispatch.web.console import audit_detail

    entry = AuditEntry(1, datetime(2024, 11, 18, tzinfo=UTC), "olle", "retry_now", "x", None, "12 deferred recipient(s)")
    assert audit_detail(entry, STOCKHOLM) == "12 deferred recipient(s)"


@pytest.mark.parametrize(("cause", "host", "permanent", "said"), [
    ("timeout", "relay.region.se:587", False,
     "Servern relay.region.se:587 går inte att nå just nu: inget svar inom tidsgränsen. Ingen mottagare räknas som "
     "misslyckad för det; utskicket försöker igen klockan 14:05 (eller tryck Försök igen nu när felet är åtgärdat)."),
    ("tls", "relay.region.se:587", True,
     "Servern relay.region.se:587 tar inte emot utskicket: den krypterade anslutningen (TLS) gick inte att upprätta "
     "eller serverns certifikat är inte betrott (transport.ca_file). Det måste åtgärdas; ingen mottagare räknas som "
     "misslyckad för det. Tryck Försök igen nu när det är åtgärdat."),
    ("permanent_reply", "relay.region.se:25", True,
     "Servern relay.region.se:25 tar inte emot utskicket: servern nekade sessionen. Det måste åtgärdas; ingen "
     "mottagare räknas som misslyckad för det. Tryck Försök igen nu när det är åtgärdat."),
    ("authentication", "relay.region.se:587", True,
     "Servern relay.region.se:587 tar inte emot utskicket: inloggningen hos servern nekades. Det måste åtgärdas; "
     "ingen mottagare räknas som misslyckad för det. Tryck Försök igen nu när det är åtgärdat."),
])
def test_the_relays_trouble_is_said_in_swedish_from_its_cause(cause: str, host: str, permanent: bool, said: str) -> None:
    """Issue 31: the trouble is a fact (cause, host, detail) worded from the catalogue; the exact
    reply stays in the technical detail (it used to be reworded by pattern from the error's text)."""
    from dispatch.values import DispatchKind, Progress, RelayCause, RelayTrouble, RunState
    from dispatch.web.swedish import say_relay

    trouble = RelayTrouble(RelayCause(cause), host, "554 5.7.1 whatever the server said", permanent)
    progress = Progress("2024-11-17.r1.edition", DispatchKind.EDITION, RunState.PAUSED_BY_RELAY, 40, 0, 40, 0,
                        trouble=trouble, next_try=datetime(2024, 11, 17, 13, 5, tzinfo=UTC), held_by_relay=40,
                        relay_permanent=permanent)
    assert say_relay(progress, STOCKHOLM) == said
    assert "whatever" not in said


@pytest.mark.parametrize(("error", "cause"), [
    (ConnectionRefusedError(111, "Connection refused"), "connection_refused"),
    (TimeoutError("timed out"), "timeout"),
    (socket.gaierror(-2, "Name or service not known"), "unreachable"),
    (OSError(errno.EHOSTUNREACH, "No route to host"), "unreachable"),
    (ssl.SSLCertVerificationError("self-signed certificate"), "tls"),
    (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), "disconnected"),
    (smtplib.SMTPResponseException(421, b"try later"), "temporary_reply"),
    (smtplib.SMTPResponseException(554, b"Access denied"), "permanent_reply"),
    (ValueError("something new"), "other"),
])
def test_a_failed_session_is_classified_once_by_the_errors_type(error: BaseException, cause: str) -> None:
    from dispatch.delivery.trouble import cause_of, relay_trouble
    from dispatch.errors import AuthenticationError, TransportError

    assert cause_of(error).value == cause
    trouble = relay_trouble(TransportError("relay:25", f"cannot connect: {error}", cause=cause_of(error)))
    assert (trouble.cause.value, trouble.host, trouble.detail) == (cause, "relay:25", f"cannot connect: {error}")
    assert relay_trouble(AuthenticationError("relay:587", "authentication failed: 535")).cause.value == "authentication"


# -- the run page's rate (found on a walk: "39 per minut" at a limit of 20, "0 per minut" on a fresh page) --


def test_a_rate_is_said_only_over_five_seconds_of_samples_and_never_above_the_relays_limit() -> None:
    from dispatch.app.runs import sending_rate

    assert sending_rate([(100.0, 0)], 100.0, 20) is None, "one sample: no rate, not 0 per minute"
    assert sending_rate([(100.0, 0), (103.0, 2)], 103.0, 20) is None, "3 s of samples are not enough"
    # A rate-limited send: one message at once, then one every 3 s. Measured over 6 s it looks like
    # 30 a minute; the relay's limit of 20 is the truth.
    assert sending_rate([(100.0, 0), (103.0, 2), (106.0, 3)], 106.0, 20) == 20
    assert sending_rate([(100.0, 0), (106.0, 3)], 106.0, 0) == 30, "no limit: as measured"
    # Only the last 30 s count: an early burst is forgotten.
    assert sending_rate([(0.0, 0), (10.0, 500), (40.0, 510), (50.0, 520)], 50.0, 0) == 60
