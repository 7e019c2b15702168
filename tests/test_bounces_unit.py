"""Issue 20, the pure parts: what a message in the bounce mailbox is (fixtures built from the
published formats: RFC 3464, Exchange Online's NDR, Exchange's older text NDR, RFC 3834 and
Exchange out-of-office replies, a person's reply), VERP tokens, and the ledger's records."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from dispatch.bounces.reading import AUTO_REPLY, HARD, HUMAN, SOFT, read
from dispatch.delivery import verp
from dispatch.ledger import Ledger, NewRecipient
from dispatch.models import Outcome, State

ORIGINAL_ID = "<2024-11-17.r1.edition.0123456789abcdef01234567@example.org>"

POSTFIX_DSN = f"""\
Return-Path: <>
Delivered-To: rapport+1-2-abcdef0123@example.test
From: MAILER-DAEMON@mail.example.test (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: rapport+1-2-abcdef0123@example.test
Message-Id: <20241117140102.ABC12@mail.example.test>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not be delivered.

--B1
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.example.test
X-Postfix-Queue-ID: ABC12
Arrival-Date: Sun, 17 Nov 2024 14:01:01 +0100

Final-Recipient: rfc822; gone@example.test
Original-Recipient: rfc822;gone@example.test
Action: failed
Status: 5.1.1
Diagnostic-Code: X-Postfix; unknown user: "gone"

--B1
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: Regional rapport <rapport@example.org>
To: gone@example.test
Subject: Regional rapport
Message-ID: {ORIGINAL_ID}

--B1--
"""

EXCHANGE_ONLINE_NDR = f"""\
From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@region.example.se>
To: <rapport@region.example.se>
Subject: Undeliverable: Regional rapport
Message-ID: <ndr-1@AM0PR01MB.eurprd01.prod.exchangelabs.com>
Content-Type: multipart/report; report-type=delivery-status; boundary="NDR"
X-MS-Exchange-Message-Is-Ndr:
MIME-Version: 1.0

--NDR
Content-Type: text/plain; charset="utf-8"

Delivery has failed to these recipients or groups:
avgatt.chef@region.example.se
The email address you entered couldn't be found.

--NDR
Content-Type: message/delivery-status

Reporting-MTA: dns;AM0PR01MB.eurprd01.prod.exchangelabs.com
Received-From-MTA: dns;mail.example.org
Arrival-Date: Sun, 17 Nov 2024 13:01:00 +0000

Final-Recipient: rfc822;avgatt.chef@region.example.se
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup

--NDR
Content-Type: message/rfc822

Message-ID: {ORIGINAL_ID}
From: Regional rapport <rapport@example.org>
Subject: Regional rapport

Rapporten.
--NDR--
"""

EXCHANGE_TEXT_NDR = f"""\
From: System Administrator <postmaster@old.example.se>
To: rapport@example.org
Subject: Undeliverable: Regional rapport
Message-ID: <ndr-2@old.example.se>
In-Reply-To: {ORIGINAL_ID}
MIME-Version: 1.0
Content-Type: text/plain; charset="us-ascii"

Your message

  Subject: Regional rapport

did not reach the following recipient(s):

slutat@old.example.se on Sun, 17 Nov 2024 14:03:12 +0100
    The e-mail account does not exist at the organization this message was sent to.
    <old.example.se #5.1.1 smtp;550 5.1.1 User unknown>

MSEXCH:IMS:REGION:OLD:SERVER01 0 (000C05A6) Unknown Recipient
"""

DELAYED = POSTFIX_DSN.replace("Action: failed", "Action: delayed").replace("Status: 5.1.1", "Status: 4.4.1").replace(
    'X-Postfix; unknown user: "gone"', "X-Postfix; connect to mx.example.test: Connection timed out")

OUT_OF_OFFICE = f"""\
From: Anna Chef <anna.chef@region.example.se>
To: rapport@example.org
Subject: Automatiskt svar: Regional rapport
Message-ID: <oof-1@region.example.se>
In-Reply-To: {ORIGINAL_ID}
Auto-Submitted: auto-replied
X-MS-Exchange-Inbox-Rules-Loop: anna.chef@region.example.se
Content-Type: text/plain; charset="utf-8"

Jag är på semester till och med 25 november.
"""

HUMAN_REPLY = f"""\
From: Bertil Politiker <bertil@region.example.se>
To: rapport@example.org
Subject: Re: Regional rapport
Message-ID: <reply-1@region.example.se>
In-Reply-To: {ORIGINAL_ID}
Content-Type: text/plain; charset="utf-8"

Tack. Vad gäller för akutmottagningen i Borås i morgon?
"""


def test_a_postfix_dsn_is_a_hard_bounce_with_status_diagnostic_and_the_original_message_id() -> None:
    reading = read(POSTFIX_DSN.encode())
    assert reading.kind == "dsn" and reading.source == "<20241117140102.ABC12@mail.example.test>"
    [failure] = reading.failures
    assert (failure.recipient, failure.kind, failure.status) == ("gone@example.test", HARD, "5.1.1")
    assert failure.diagnostic == 'unknown user: "gone"'
    assert ORIGINAL_ID in reading.message_ids
    assert "rapport+1-2-abcdef0123@example.test" in reading.envelope_to


def test_an_exchange_online_ndr_is_a_hard_bounce_with_exchanges_words() -> None:
    [failure] = read(EXCHANGE_ONLINE_NDR.encode()).failures
    assert (failure.recipient, failure.kind, failure.status) == ("avgatt.chef@region.example.se", HARD, "5.1.10")
    assert failure.diagnostic.startswith("550 5.1.10 RESOLVER.ADR.RecipientNotFound")
    assert ORIGINAL_ID in read(EXCHANGE_ONLINE_NDR.encode()).message_ids


def test_an_older_exchange_text_ndr_is_found_by_mailmans_detector() -> None:
    reading = read(EXCHANGE_TEXT_NDR.encode())
    [failure] = reading.failures
    assert (failure.recipient, failure.kind, failure.status) == ("slutat@old.example.se", HARD, "5.1.1")
    assert ORIGINAL_ID in reading.message_ids


def test_a_delayed_dsn_is_soft() -> None:
    [failure] = read(DELAYED.encode()).failures
    assert (failure.kind, failure.status) == (SOFT, "4.4.1") and "timed out" in failure.diagnostic


@pytest.mark.parametrize("variant", [
    OUT_OF_OFFICE,
    OUT_OF_OFFICE.replace("Auto-Submitted: auto-replied\n", ""),  # Exchange's own header
    OUT_OF_OFFICE.replace("Auto-Submitted: auto-replied\nX-MS-Exchange-Inbox-Rules-Loop: anna.chef@region.example.se\n", "")
    .replace("Automatiskt svar:", "Out of Office:"),  # only the subject says so
])
def test_out_of_office_replies_are_automatic_replies(variant: str) -> None:
    assert read(variant.encode()).kind == AUTO_REPLY


def test_a_persons_reply_is_left_alone() -> None:
    reading = read(HUMAN_REPLY.encode())
    assert reading.kind == HUMAN and reading.failures == ()


def test_a_verp_token_decodes_with_its_key_only_and_hides_the_address() -> None:
    key = "a" * 64
    sender = verp.address("rapport@region.example.se", 31, 4242, key)
    assert sender.startswith("rapport+1f-1092-") and sender.endswith("@region.example.se")
    assert "person" not in sender
    assert verp.decode(sender, key) == (31, 4242)
    assert verp.decode(sender.upper(), key) == (31, 4242), "servers may change the case"
    assert verp.decode(sender, "b" * 64) is None, "another ledger's token never matches"
    forged = sender.replace("-1092-", "-1093-")
    assert verp.decode(forged, key) is None, "a forged row id fails the MAC"
    assert verp.decode("rapport@region.example.se", key) is None
    assert verp.address("rapport+old@region.example.se", 1, 2, key).startswith("rapport+1-2-")


def test_a_hard_bounce_marks_the_row_bounced_once_and_a_soft_one_only_notes(tmp_path: Path) -> None:
    now = datetime(2024, 11, 17, 13, 0, tzinfo=UTC)
    ledger = Ledger(f"sqlite:///{tmp_path}/l.db", allow_new=True)
    try:
        record, _ = ledger.open_dispatch("2024-11-17.r1.edition", date(2024, 11, 17), 1, "edition", "S", "", "t", now)
        ledger.add_recipients(record.id, [NewRecipient(key=k, address=k, name="", message_id=f"<{k}>", state=State.PENDING)
                                          for k in ("a@x.se", "b@x.se")], now)
        rows = ledger.claim(record.id, "me", now, timedelta(minutes=5), 10)
        ledger.record("me", [(row.id, Outcome(State.SENT, "250 ok"), None) for row in rows], now)
        a = ledger.delivery_by_message_id("<a@x.se>")
        assert a is not None and a.address == "a@x.se" and a.dispatch == "2024-11-17.r1.edition"
        assert ledger.record_bounce(a, "hard", "5.1.1", "User unknown", "<dsn-1>", now)
        assert not ledger.record_bounce(a, "hard", "5.1.1", "User unknown", "<dsn-1>", now), "the same message: once"
        b = ledger.delivery_by_key("2024-11-17.r1.edition", "b@x.se")
        assert b is not None and ledger.record_bounce(b, "soft", "4.4.1", "timed out", "<dsn-2>", now)
        counts = ledger.counts(record.id)
        assert counts["bounced"] == 1 and counts["sent"] == 1
        states = {row["address"]: (row["state"], row["reply"]) for row in ledger.rows(record.id)}
        assert states["a@x.se"] == ("bounced", "5.1.1 User unknown") and states["b@x.se"][0] == "sent"
        assert ledger.soft_bounce_notes(record.id) == {b.id: "4.4.1 timed out"}
    finally:
        ledger.close()
