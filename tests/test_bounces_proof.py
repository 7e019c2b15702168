"""Issue 30 (points 3 and 4), the fast lane: only proof changes a recipient, and what cannot
be read safely is set aside. A real SQLite ledger and the real reader; the mailbox itself
(real Postfix and Dovecot) is in tests/test_bounces_hostile.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from conftest import Project
from dispatch.app.bounces import FOR_PEOPLE, HANDLED, BounceRun, record_reading
from dispatch.bounces.reading import HUMAN, MAX_CONTENT_TYPES, UNREADABLE, read
from dispatch.delivery import verp
from dispatch.email.message import message_id
from dispatch.ledger import Ledger, NewRecipient
from dispatch.models import Outcome, State

NOW = datetime(2024, 11, 18, 9, 0, tzinfo=UTC)
DISPATCH = "2024-11-17.r1.edition"
DOMAIN = "example.org"


def dsn(*, final: str, quoted_id: str, to: str = "rapport@example.org", original: str = "", source: str = "<dsn-1@mx>",
        status: str = "5.1.1") -> bytes:
    """A Postfix-shaped RFC 3464 report: what a forger writes as easily as a server."""
    original_line = f"Original-Recipient: rfc822;{original}\n" if original else ""
    return f"""\
Delivered-To: {to}
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender
Message-Id: {source}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain

Your message could not be delivered.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {final}
{original_line}Action: failed
Status: {status}
Diagnostic-Code: smtp; 550 {status} no such user

--B1
Content-Type: text/rfc822-headers

From: Regional rapport <rapport@example.org>
Message-ID: {quoted_id}

--B1--
""".encode()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """One dispatch: anna, bertil sent; cecilia unknown (the relay's answer was lost)."""
    opened = Ledger(f"sqlite:///{tmp_path}/l.db", allow_new=True)
    record, _ = opened.open_dispatch(DISPATCH, date(2024, 11, 17), 1, "edition", "S", "", "t", NOW)
    opened.add_recipients(record.id, [
        NewRecipient(key=k, address=k, name="", message_id=message_id(DISPATCH, k, DOMAIN), state=State.PENDING)
        for k in ("anna@region.se", "bertil@region.se", "cecilia@region.se")], NOW)
    rows = opened.claim(record.id, "me", NOW, timedelta(minutes=5), 10)
    opened.record("me", [(row.id, Outcome(State.UNKNOWN if row.key.startswith("cecilia") else State.SENT, "250 ok"), None)
                         for row in rows], NOW)
    try:
        yield opened
    finally:
        opened.close()


def states(ledger: Ledger) -> dict[str, str]:
    ref = ledger.delivery_by_key(DISPATCH, "anna@region.se")
    assert ref is not None
    return {row["address"]: row["state"] for row in ledger.rows(ref.dispatch_id)}


def token_of(ledger: Ledger, key: str) -> str:
    ref = ledger.delivery_by_key(DISPATCH, key)
    assert ref is not None
    return verp.address("rapport@example.org", ref.dispatch_id, ref.id, ledger.identity)


BEFORE = {"anna@region.se": "sent", "bertil@region.se": "sent", "cecilia@region.se": "unknown"}


def test_with_verp_a_bounce_quoting_the_exact_message_id_and_address_is_noted_unverified_and_changes_nobody(
        ledger: Ledger) -> None:
    forged = read(dsn(final="anna@region.se", quoted_id=message_id(DISPATCH, "anna@region.se", DOMAIN)))
    run = BounceRun()
    assert record_reading(ledger, forged, run, NOW, verp_on=True) == FOR_PEOPLE, "it stays in sight, not in Processed"
    assert (run.unverified, run.hard, run.bounced) == (1, 0, [])
    assert states(ledger) == BEFORE
    assert ledger.repeat_bouncers(5, 1) == [], "an unverified note counts as no bounce"


def test_with_verp_a_token_with_a_wrong_mac_changes_nobody(ledger: Ledger) -> None:
    real = token_of(ledger, "anna@region.se")
    wrong = real[:real.index("@") - 10] + "0000000000" + real[real.index("@"):]
    assert wrong != real and verp.decode(wrong, ledger.identity) is None
    run = BounceRun()
    forged = read(dsn(to=wrong, final="anna@region.se", quoted_id=message_id(DISPATCH, "anna@region.se", DOMAIN)))
    assert record_reading(ledger, forged, run, NOW, verp_on=True) == FOR_PEOPLE
    assert states(ledger) == BEFORE and run.hard == 0


def test_with_verp_a_valid_token_marks_its_row_even_unknown_and_whatever_address_the_report_names(ledger: Ledger) -> None:
    run = BounceRun()
    # The token proves the message went out; the report may name a forwarded-to address.
    reading = read(dsn(to=token_of(ledger, "cecilia@region.se"), final="cecilia@elsewhere.example", quoted_id="<x@y>"))
    assert record_reading(ledger, reading, run, NOW, verp_on=True) == HANDLED
    assert states(ledger) == {**BEFORE, "cecilia@region.se": "bounced"}
    assert run.bounced == [(DISPATCH, "cecilia@region.se", "5.1.1 550 5.1.1 no such user")]


def test_without_verp_the_quoted_message_id_must_be_the_named_recipients(ledger: Ledger) -> None:
    run = BounceRun()
    anna_id = message_id(DISPATCH, "anna@region.se", DOMAIN)
    # Anna's Message-ID, Bertil's address: believed for nobody.
    crossed = read(dsn(final="bertil@region.se", quoted_id=anna_id))
    assert record_reading(ledger, crossed, run, NOW, verp_on=False) == FOR_PEOPLE and run.unmatched == 1
    # The dispatch's name and a victim's address, the Message-ID made up: nobody either.
    made_up = read(dsn(final="bertil@region.se", quoted_id=f"<{DISPATCH}.000000000000@{DOMAIN}>", source="<dsn-2@mx>"))
    assert record_reading(ledger, made_up, run, NOW, verp_on=False) == FOR_PEOPLE and run.unmatched == 2
    assert states(ledger) == BEFORE
    # Her own Message-ID, and her address as the Original-Recipient (forwarded elsewhere): hers.
    real = read(dsn(final="anna@forwarded.example", original="anna@region.se", quoted_id=anna_id, source="<dsn-3@mx>"))
    assert record_reading(ledger, real, run, NOW, verp_on=False) == HANDLED
    assert states(ledger) == {**BEFORE, "anna@region.se": "bounced"}


def test_without_verp_a_bounce_never_turns_unknown_into_bounced(ledger: Ledger) -> None:
    run = BounceRun()
    reading = read(dsn(final="cecilia@region.se", quoted_id=message_id(DISPATCH, "cecilia@region.se", DOMAIN)))
    assert record_reading(ledger, reading, run, NOW, verp_on=False) == HANDLED, "noted, and out of the way"
    assert states(ledger) == BEFORE


def test_with_bcc_batches_and_no_verp_the_dispatch_name_and_the_named_address_match(ledger: Ledger) -> None:
    """A batch's Message-ID is on no row: the dispatch it names and the DSN's recipient."""
    run = BounceRun()
    batch_id = message_id(DISPATCH, "anna@region.se|bertil@region.se", DOMAIN)
    reading = read(dsn(final="bertil@region.se", quoted_id=batch_id))
    assert record_reading(ledger, reading, run, NOW, verp_on=False, batched=False) == FOR_PEOPLE
    assert record_reading(ledger, reading, run, NOW, verp_on=False, batched=True) == HANDLED
    assert states(ledger) == {**BEFORE, "bertil@region.se": "bounced"}


def test_a_persons_reply_stays_for_people(ledger: Ledger) -> None:
    from test_bounces_unit import HUMAN_REPLY

    run = BounceRun()
    reading = read(HUMAN_REPLY.encode())
    assert reading.kind == HUMAN
    assert record_reading(ledger, reading, run, NOW, verp_on=True) == FOR_PEOPLE and run.human == 1
    assert states(ledger) == BEFORE


def deep_multipart(levels: int) -> bytes:
    opening = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(levels))
    closing = "".join(f"--b{i}--\n" for i in reversed(range(levels)))
    return f"From: x@example.net\nSubject: deep\n{opening}Content-Type: text/plain\n\nhej\n{closing}".encode()


def test_a_message_nested_3000_deep_is_unreadable_at_once_not_a_recursion_error() -> None:
    data = deep_multipart(3000)
    started = time.process_time()
    reading = read(data)
    assert reading.kind == UNREADABLE and "MIME parts" in reading.reason, reading
    assert time.process_time() - started < 1.0, "counted, not parsed (parsing it takes seconds, then fails)"
    assert read(deep_multipart(MAX_CONTENT_TYPES - 2)).kind == HUMAN, "deep but within bounds: read as usual"


def test_nested_messages_without_boundaries_are_bounded_too() -> None:
    data = ("From: x@example.net\nSubject: deep\n" + "Content-Type: message/rfc822\n\n" * 3000 + "hej\n").encode()
    assert read(data).kind == UNREADABLE


def test_the_config_takes_the_quarantine_folder_and_the_size_limit_with_line_numbers(project: Project) -> None:
    from dispatch.config import load_settings
    from dispatch.errors import InputError

    project.set_config(bounces={"host": "imap.example.org", "username": "u", "password_env": "X",
                                "quarantine_folder": "Karantän", "max_message_bytes": 2_000_000})
    box = load_settings(project.config_path).bounces
    assert box is not None and (box.quarantine_folder, box.max_message_bytes) == ("Karantän", 2_000_000)
    project.set_config(bounces={"host": "imap.example.org", "username": "u", "password_env": "X"})
    box = load_settings(project.config_path).bounces
    assert box is not None and (box.quarantine_folder, box.max_message_bytes) == ("Quarantine", 1_000_000)
    project.set_config(bounces={"host": "imap.example.org", "username": "u", "password_env": "X", "folder": "INBOX",
                                "quarantine_folder": "inbox", "max_message_bytes": 12})
    with pytest.raises(InputError) as refused:
        load_settings(project.config_path)
    said = str(refused.value)
    text = project.config_path.read_text(encoding="utf-8").splitlines()
    size_line = next(i for i, line in enumerate(text, 1) if "max_message_bytes" in line)
    folder_line = next(i for i, line in enumerate(text, 1) if "quarantine_folder" in line)
    assert (f"config.yaml:{size_line}: 'bounces.max_message_bytes' must be a whole number of bytes from 10000 to 50000000, "
            "not 12") in said, said
    assert f"config.yaml:{folder_line}: 'bounces.quarantine_folder' must differ from 'bounces.folder'" in said, said


def test_an_unexpected_error_in_the_services_bounce_job_is_logged_and_the_job_returns(
        project: Project, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 30: a RecursionError once escaped the job (it caught only our own errors). The
    fault is injected where the job calls the use case; the job must survive any."""
    from dispatch.app import service as serving
    from dispatch.app.scheduled import Service
    from dispatch.config import load_settings

    def broken(*_: object) -> BounceRun:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(serving, "process_bounces", broken)
    service = Service(load_settings(project.config_path))
    try:
        with caplog.at_level("INFO"):
            serving.read_bounces(service)  # returns: APScheduler and serve go on
    finally:
        service.close()
    [failed] = [r for r in caplog.records if getattr(r, "event", "") == "bounces_failed"]
    assert failed.levelname == "ERROR" and failed.exc_info is not None and failed.exc_info[0] is RecursionError


def test_a_ca_file_that_holds_no_certificate_is_one_line_exit_3(project: Project) -> None:
    (project.root / "ca.pem").write_text("not a certificate\n", encoding="utf-8")
    project.set_config(bounces={"host": "127.0.0.1", "port": 9, "security": "tls", "username": "u",
                                "password_env": "DISPATCH_TEST_IMAP_PASSWORD", "ca_file": "ca.pem"})
    result = project.run("bounces", env={"DISPATCH_TEST_IMAP_PASSWORD": "x"})
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    assert "error: bounce mailbox 127.0.0.1:9: cannot use bounces.ca_file" in result.stderr
    assert "ca.pem: no certificate in it" in result.stderr, result.stderr
