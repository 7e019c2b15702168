"""Every header we write decodes to exactly the text it was made from, on the wire.

The fault this guards against: the standard library's folder put the space between two
words of a Swedish subject between two encoded-words, where decoders drop it, and 1,969
readers got "stängerför". The tests send real messages (a real SMTP server and the Maildir
transport), parse the delivered bytes as a reader's program does (``policy.default``)
and compare; a property test runs generated Swedish text through every header.
"""

from __future__ import annotations

import email
import itertools
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Project, RecordingHandler, SMTPServer, start_server
from dispatch.config import TransportSettings, load_settings
from dispatch.delivery.maildir import MaildirTransport
from dispatch.delivery.transport import SMTPTransport
from dispatch.email import headers
from dispatch.email.conversation import Thread, reply_index, thread_index
from dispatch.email.message import Envelope, prepare, to_header
from dispatch.models import Recipient, Rendered, State

NOW = datetime(2026, 12, 7, 13, 13, tzinfo=UTC)
ISSUE_SUBJECT = "Akutmottagningen NÄL stänger för nya patienter 16:00"

# What editors and list keepers write: Swedish letters, digits, punctuation (specials
# included), long words; runs of spaces collapse as the editor sees them.
SWEDISH = "abcdefghijklmnopqrstuvwxyzåäöABCDEFGHIJKLMNOPQRSTUVWXYZÅÄÖéÉü0123456789 .,:;!?-\u2013()\"'/&%@<>[]"
swedish_text = st.text(alphabet=st.sampled_from(SWEDISH) | st.sampled_from(" åäö"), min_size=1, max_size=250).map(
    lambda text: " ".join(text.split())).filter(bool)


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def head_lines(data: bytes) -> list[bytes]:
    return data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].split(b"\n")


def build(subject: str, from_name: str, to_name: str, list_name: str, topic: str) -> bytes:
    envelope = Envelope("rapport@example.org", from_name, "rapport@example.org", "svar@example.org", list_name,
                        "regional-rapport.example.org")
    index = thread_index(NOW, "2024-11-18")
    prepared = prepare(Rendered(subject, f"<html><head><title>{subject}</title></head><body><p>Hej</p></body></html>",
                                "Hej\n"), envelope, NOW, urgent=False, thread=Thread(topic, index))
    data: bytes = prepared.for_recipients(to_header([Recipient("anna@example.org", to_name, "anna@example.org")]), "<x@example.org>")
    return data


def assert_reads_back(data: bytes, subject: str, from_name: str, to_name: str, list_name: str, topic: str) -> None:
    message = parse(data)
    assert message["Subject"] == subject
    assert message["Thread-Topic"] == topic
    (sender,) = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (from_name, "rapport@example.org")
    (to,) = message["To"].addresses
    assert (to.display_name, to.addr_spec) == (to_name, "anna@example.org")
    # List-Id is unstructured to the parser; its phrase is read as a display name, from the raw bytes.
    raw = re.search(rb"(?m)^List-Id: ([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)", data)
    assert raw is not None
    list_id = policy.default.header_factory("To", re.sub(r"\r?\n(?=[ \t])", "", raw.group(1).decode("ascii")))
    assert list_id.addresses[0].display_name == list_name
    lines = head_lines(data)
    assert all(line.isascii() for line in lines), "every header byte is ASCII"
    assert all(len(line) <= 998 for line in lines)
    for name in (b"Subject:", b"Thread-Topic:"):  # unstructured: always folded within 78
        start = next(i for i, line in enumerate(lines) if line.startswith(name))
        block = [lines[start], *[line for line in lines[start + 1:] if line[:1] in (b" ", b"\t")][:50]]
        assert all(len(line) <= 78 for line in block), block


@settings(max_examples=300, deadline=None)
@given(subject=swedish_text, name=swedish_text)
def test_every_header_we_write_round_trips_generated_swedish_text(subject: str, name: str) -> None:
    data = build(subject, name, name, name, subject)
    assert_reads_back(data, subject, name, name, name, subject)


@pytest.mark.parametrize("subject", [
    ISSUE_SUBJECT,
    "BRÅDSKANDE: " + ISSUE_SUBJECT,
    "Rättelse: mån 18 nov: Närhälsan tillbaka i Asynja, men inte på Östra sjukhuset och Sahlgrenska",
    "Ämne  med  dubbla mellanslag",  # kept as written: encoded-words hold every space
    " inledande och avslutande ",
    "=?utf-8?q?ser_ut_som_kodat?= men är det inte",
    "a" * 120,  # one word too long for a line
    "Å" * 120,
])
def test_known_hard_subjects_read_back_exactly(subject: str) -> None:
    data = build(subject, "Regional rapport", "Åsa Öberg", "Regional rapport Millennium 2024", subject)
    message = parse(data)
    assert message["Subject"] == subject


def test_the_subject_that_lost_its_space_keeps_it_and_the_standard_library_would_not() -> None:
    """The regression itself, beside the standard library's fold that caused it."""
    subject = "BRÅDSKANDE: " + ISSUE_SUBJECT
    stdlib = EmailMessage(policy=policy.SMTP)
    stdlib["Subject"] = subject
    stdlib.set_content("x")
    assert parse(stdlib.as_bytes())["Subject"] != subject, "the standard library still drops the space (else this test proves less)"
    ours = headers.unstructured("Subject", subject) + b"\r\nx\r\n"
    assert parse(ours)["Subject"] == subject


def test_a_display_name_never_has_two_adjacent_encoded_words() -> None:
    """RFC 2047 decoders drop the space between two adjacent encoded-words in a phrase, Python
    keeps it: a name written so that the two disagree reads differently in Outlook than here."""
    value = to_header([Recipient("a@example.org", "Åsa Öberg-Lindqvist Håkansson Ängström, Koncernstab kommunikation, "
                                 "Västra Götalandsregionen", "a@example.org")])
    atoms = value.replace("\r\n", "").split(" ")
    encoded = [atom.startswith("=?") for atom in atoms]
    assert not any(a and b for a, b in itertools.pairwise(encoded)), value


def test_thread_index_is_22_bytes_and_a_reply_level_adds_5_with_the_same_start() -> None:
    first = thread_index(NOW, "2024-11-18")
    assert len(first) == 22 and first[0] == 1
    assert thread_index(NOW, "2024-11-18") == first, "derived, not random: every revision and resend agrees"
    assert thread_index(NOW, "2024-11-19")[6:] != first[6:], "another conversation, another GUID"
    later = NOW.replace(hour=15)
    reply = reply_index(first, NOW, later, 1)
    assert len(reply) == 27 and reply[:22] == first
    # The child block's 31 bits of time delta (bits 18-48 of the FILETIME difference).
    delta = (int.from_bytes(reply[22:], "big") >> 8) & 0x7FFFFFFF
    assert delta == (2 * 3600 * 10_000_000) >> 18


# -- through a real send: SMTP and Maildir ----------------------------------------------------


@pytest.fixture(scope="module")
def relay() -> Iterator[SMTPServer]:
    controller, server = start_server(RecordingHandler())
    try:
        yield server
    finally:
        controller.stop()


@pytest.mark.slow  # 300 messages over SMTP and into a Maildir; fast twin: test_every_header_we_write_round_trips_...
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(subject=swedish_text, name=swedish_text)
def test_generated_subjects_and_names_round_trip_through_smtp_and_maildir(
        subject: str, name: str, relay: SMTPServer, tmp_path: Path) -> None:
    data = build(subject, "Regional rapport", name, "Regional rapport Millennium 2024", subject)
    smtp = SMTPTransport(TransportSettings(kind="smtp", host=relay.host, port=relay.port, security="none")).connect()
    try:
        before = len(relay.handler.received)
        outcomes = smtp.send("rapport@example.org", ["anna@example.org"], data)
        assert all(o.state is State.SENT for o in outcomes.values()), outcomes
    finally:
        smtp.close()
    maildir = MaildirTransport(tmp_path / "outbox").connect()
    maildir.send("rapport@example.org", ["anna@example.org"], data)
    delivered = [relay.handler.received[before].data, next((tmp_path / "outbox" / "new").iterdir()).read_bytes()]
    for file in (tmp_path / "outbox" / "new").iterdir():
        file.unlink()
    for got in delivered:
        assert_reads_back(got, subject, "Regional rapport", name, "Regional rapport Millennium 2024", subject)


def generated_names(count: int, seed: int = 29) -> list[str]:
    """Swedish-looking names with titles, commas and quotes, some long."""
    rng = random.Random(seed)
    first = ["Åsa", "Örjan", "Anna", "Ängla", "Björn", "Karin", "Håkan", "Zoë", "Per-Åke", "Märta"]
    last = ["Öberg", "Håkansson", "Ängström", "Lindqvist", "Sandahl", "Looström Muth", "Sundelin", "Åkesson"]
    roles = ["", "", ", chef", " (VGR)", ", hälso- och sjukvårdsproduktionsdirektör", ' "Nina"', ", Koncernstab kommunikation"]
    return [" ".join(f"{rng.choice(first)} {rng.choice(last)}{rng.choice(roles)}".split()) for _ in range(count)]


@pytest.mark.slow  # two whole sends of 300 through the command line
@pytest.mark.parametrize("transport", ["smtp", "maildir"])
def test_an_urgent_send_to_300_generated_names_reads_back_exactly(project: Project, smtp_server: SMTPServer, transport: str) -> None:
    names = generated_names(300)
    rows = "".join(f'p{i}@example.org,"{name.replace(chr(34), chr(34) * 2)}"\n' for i, name in enumerate(names))
    (project.root / "recipients/alla.csv").write_text("email,name\n" + rows, encoding="utf-8")
    message_file = project.root / "akut.md"
    message_file.write_text(f"---\nsubject: {ISSUE_SUBJECT}\nlists: [alla]\n---\n\nAkuten stänger kl 16.\n", encoding="utf-8")
    if transport == "smtp":
        project.use_smtp(smtp_server)
    result = project.run("send", "--urgent", "--file", str(message_file))
    assert result.returncode == 0, result.stderr
    if transport == "smtp":
        delivered = [m.data for m in smtp_server.handler.reports()]
    else:
        files = [path.read_bytes() for path in (project.root / "var/outbox/new").iterdir()]
        delivered = [data for data in files if b"\nList-Id:" in data.split(b"\n\n", 1)[0]]  # not the completion notice
    assert len(delivered) == 300
    expected = {f"p{i}@example.org": name for i, name in enumerate(names)}
    for data in delivered:
        message = parse(data)
        assert message["Subject"] == "BRÅDSKANDE: " + ISSUE_SUBJECT
        (to,) = message["To"].addresses
        assert to.display_name == expected.pop(to.addr_spec)
    assert expected == {}


CORRUPTING_RUN = """
import sys
from email import policy
from email.message import EmailMessage

import dispatch.app.editions as editions
from dispatch.email.message import PreparedMessage

real_prepare = editions.prepare

def stdlib_subject(rendered, *args, **kwargs):
    # The fault this guards against, injected: the Subject folded by the standard library.
    made = real_prepare(rendered, *args, **kwargs)
    stdlib = EmailMessage(policy=policy.SMTP)
    stdlib["Subject"] = rendered.subject
    folded = stdlib.as_bytes().split(b"\\r\\n\\r\\n")[0] + b"\\r\\n"
    lines = made.head.split(b"\\r\\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(b"Subject:"))
    end = start + 1
    while lines[end].startswith(b" "):
        end += 1
    head = b"\\r\\n".join(lines[:start]) + b"\\r\\n" + folded + b"\\r\\n".join(lines[end:])
    return PreparedMessage(head=head, body=made.body, domain=made.domain, threads=made.threads)

editions.prepare = stdlib_subject
from dispatch.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("transport", [pytest.param("smtp", marks=pytest.mark.slow), "maildir"])  # fast twin: maildir
def test_bytes_corrupted_before_sending_are_refused_naming_the_header(project: Project, smtp_server: SMTPServer, transport: str) -> None:
    message_file = project.root / "akut.md"
    message_file.write_text(f"---\nsubject: {ISSUE_SUBJECT}\n---\n\nAkuten stänger kl 16.\n", encoding="utf-8")
    if transport == "smtp":
        project.use_smtp(smtp_server)
    result = subprocess.run([sys.executable, "-c", CORRUPTING_RUN, "--config", str(project.config_path), "send", "--urgent",
                             "--file", str(message_file)], cwd=project.root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"the Subject of the message as it would be sent reads '.*stängerför.*', not '.*stänger för.*'",
                     result.stderr), result.stderr
    assert "nothing was sent" in result.stderr
    assert smtp_server.handler.received == []
    outbox = project.root / "var/outbox/new"
    assert not outbox.exists() or not any(outbox.iterdir())


def test_the_preview_eml_reads_back_with_its_thread_headers(project: Project) -> None:
    result = project.run("preview", "--date", "2024-11-17", "--out", str(project.root / "preview"))
    assert result.returncode == 0, result.stderr
    message = email.message_from_bytes((project.root / "preview/2024-11-17.eml").read_bytes(), policy=policy.default)
    assert message["Thread-Topic"] == message["Subject"] == load_settings(project.config_path).report.subject.replace(
        "{{ date_short }}", "sön 17 nov").replace("{{ title }}", "Regional rapport Millennium 2024")
    import base64

    assert len(base64.b64decode(message["Thread-Index"])) == 22


# -- a headline in the subject ------------------------------------------------------------


def with_front_matter(project: Project, day: str, extra: str) -> None:
    path = project.root / f"reports/{day}.md"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("---\n", "---\n" + extra, 1), encoding="utf-8")


def test_a_headline_puts_the_news_in_the_subject_and_the_message_carries_it(project: Project) -> None:
    with_front_matter(project, "2024-11-18", "headline: Närhälsan tillbaka i Asynja\n")
    result = project.run("preview", "--date", "2024-11-18", "--out", str(project.root / "preview"))
    assert result.returncode == 0, result.stderr
    message = parse((project.root / "preview/2024-11-18.eml").read_bytes())
    assert message["Subject"] == "mån 18 nov: Närhälsan tillbaka i Asynja"
    assert message["Thread-Topic"] == "mån 18 nov: Närhälsan tillbaka i Asynja"
    html = message.get_body(("html",))
    assert html is not None and "<title>mån 18 nov: Närhälsan tillbaka i Asynja</title>" in html.get_content()
    checked = project.run("check", "--date", "2024-11-18")
    assert "warning:" not in checked.stderr, "a short subject is not warned about"


def test_check_warns_about_a_subject_longer_than_an_inbox_shows_but_passes(project: Project) -> None:
    headline = "Närhälsan tillbaka i Asynja efter avbrottet, men inte på Östra sjukhuset"
    with_front_matter(project, "2024-11-18", f"headline: {headline}\n")
    checked = project.run("check", "--date", "2024-11-18")
    line = next(n for n, text in enumerate((project.root / "reports/2024-11-18.md").read_text().splitlines(), 1)
                if text.startswith("headline:"))
    length = len("mån 18 nov: " + headline)
    assert re.search(rf"^warning: reports/2024-11-18\.md:{line}: the subject 'mån 18 nov: {headline}' is {length} characters",
                     checked.stderr, re.M), checked.stderr
    assert "characters; an inbox shows about 60 (a phone about 35): shorten the headline" in checked.stderr
    assert "problem" not in checked.stderr.split("warning:")[0]
    assert checked.returncode == 0


def test_a_headline_must_be_one_line_of_text(project: Project) -> None:
    with_front_matter(project, "2024-11-18", "headline: [en, lista]\n")
    checked = project.run("check", "--date", "2024-11-18")
    assert checked.returncode == 1
    assert re.search(r"^reports/2024-11-18\.md:2: 'headline' must be text", checked.stderr, re.M), checked.stderr


# -- a correction continues the conversation in Outlook ---------------------------------------


def delivered_reports(project: Project, seen: set[Path]) -> list[EmailMessage]:
    new = [path for path in (project.root / "var/outbox/new").iterdir() if path not in seen]
    seen.update(new)
    messages = [parse(path.read_bytes()) for path in new]
    return [m for m in messages if m["List-Id"]]


@pytest.mark.slow  # two sends of 49; fast twin: test_thread_index_is_22_bytes_and_a_reply_level_adds_5_with_the_same_start
def test_a_correction_carries_revision_1s_topic_and_continues_its_thread_index(project: Project) -> None:
    import base64

    seen: set[Path] = set()
    assert project.run("send", "--date", "2024-11-18").returncode == 0
    first = delivered_reports(project, seen)
    assert len(first) == 49
    topics = {m["Thread-Topic"] for m in first}
    indexes = {base64.b64decode(m["Thread-Index"]) for m in first}
    assert topics == {"mån 18 nov: Regional rapport Millennium 2024"} and len(indexes) == 1
    (original,) = indexes
    assert len(original) == 22

    # The correction also takes a headline: its subject changes, its topic must not.
    path = project.root / "reports/2024-11-18.md"
    path.write_text(path.read_text(encoding="utf-8").replace(
        "status: approved\n", "status: approved\nrevision: 2\nheadline: Närhälsan i Asynja från 08:00\n"
        "correction: Närhälsans vårdcentraler arbetar i Asynja sedan 08:00, inte 07:30.\n", 1).replace(
        "sedan klockan 07:30 måndag", "sedan klockan 08:00 måndag"), encoding="utf-8")
    result = project.run("send", "--date", "2024-11-18")
    assert result.returncode == 0, result.stderr
    corrections = delivered_reports(project, seen)
    assert len(corrections) == 49
    for message in corrections:
        assert message["Subject"] == "Rättelse: mån 18 nov: Närhälsan i Asynja från 08:00"
        assert message["Thread-Topic"] == "mån 18 nov: Regional rapport Millennium 2024"
        index = base64.b64decode(message["Thread-Index"])
        assert len(index) == 27 and index[:22] == original
        assert message["In-Reply-To"] and message["References"]
