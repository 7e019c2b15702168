"""The bounce tests' mail servers themselves (tests/mailservers.py): a private Postfix that
turns a message to an unknown user into a real RFC 3464 DSN, a private Dovecot that serves
it over IMAP and IMAPS, and both gone without a trace when stopped."""

from __future__ import annotations

import imaplib
import socket
import ssl
import time
from email import policy
from email.message import EmailMessage, Message, MIMEPart
from email.parser import BytesParser

import pytest

import mailservers
from mailservers import Dovecot, Postfix

postfix_server = mailservers.postfix_server  # the module's fixtures
dovecot_server = mailservers.dovecot_server


def _report(message_id: str, to: str = "person01@example.test") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Regional rapport <rapport@example.test>"
    message["To"] = to
    message["Subject"] = "Regional rapport"
    message["Message-ID"] = message_id
    message.set_content("Rapporten.\n")
    return message


def _contained(part: Message) -> list[Message]:
    """The headers blocks of a message/delivery-status part, or the one message of a message/rfc822 part."""
    payload = part.get_payload()
    assert isinstance(payload, list), f"{part.get_content_type()} holds no parts"
    blocks = [item for item in payload if isinstance(item, Message)]
    assert len(blocks) == len(payload)
    return blocks


def _parts(message: EmailMessage) -> dict[str, MIMEPart]:
    return {part.get_content_type(): part for part in message.iter_parts()}


def test_an_unknown_user_comes_back_as_a_real_dsn_to_the_envelope_sender(postfix_server: Postfix) -> None:
    server = postfix_server
    server.clear()
    started = time.monotonic()
    refused = server.send("rapport+t1@example.test", ["person01@example.test", "person02@example.test", "ingen@example.test"],
                          _report("<t1.report@example.test>"))
    assert refused == {}, "unknown users are accepted at RCPT time: the DSN comes from Postfix, not a 550"
    for user in ("person01", "person02"):
        [delivered] = server.wait_for_messages(user, 1)
        assert delivered["Message-ID"] == "<t1.report@example.test>"
        assert delivered["Return-Path"] == "<rapport+t1@example.test>"
    [dsn] = server.wait_for_messages("rapport", 1)
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"the DSN took {elapsed:.1f} s"

    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["Return-Path"] == "<>" and dsn["Auto-Submitted"] == "auto-replied"
    assert dsn["Delivered-To"] == "rapport+t1@example.test" and dsn["To"] == "rapport+t1@example.test"
    parts = _parts(dsn)
    per_message, *per_recipient = _contained(parts["message/delivery-status"])
    assert per_message["X-Postfix-Sender"] == "rfc822; rapport+t1@example.test"
    [recipient] = per_recipient
    assert recipient["Final-Recipient"] == "rfc822; ingen@example.test"
    assert recipient["Action"] == "failed" and recipient["Status"] == "5.1.1"
    assert recipient["Diagnostic-Code"] == 'X-Postfix; unknown user: "ingen@example.test"'
    [returned] = _contained(parts["message/rfc822"])
    assert returned["Message-ID"] == "<t1.report@example.test>"
    assert server.queue() == []

    # RET=HDRS: the headers alone come back, as text/rfc822-headers.
    with __import__("smtplib").SMTP(server.host, server.port) as client:
        client.ehlo()
        assert client.has_extn("dsn")
        client.sendmail("rapport+t2@example.test", ["ingen2@example.test"], _report("<t2.report@example.test>").as_bytes(),
                        mail_options=["RET=HDRS"])
    second = server.wait_for_messages("rapport", 2)[-1]
    returned_headers = _parts(second)["text/rfc822-headers"].get_payload(decode=True)
    assert isinstance(returned_headers, bytes)
    headers = BytesParser(policy=policy.default).parsebytes(returned_headers)
    assert headers["Message-ID"] == "<t2.report@example.test>" and second["To"] == "rapport+t2@example.test"


def test_the_bounce_mailbox_is_served_over_imap_and_over_imaps_with_a_verified_certificate(
        postfix_server: Postfix, dovecot_server: Dovecot) -> None:
    server, imap = postfix_server, dovecot_server
    server.clear("rapport")
    server.send("rapport+t3@example.test", ["saknas@example.test"], _report("<t3.report@example.test>"))
    server.wait_for_messages("rapport", 1)
    server.add_message("rapport", b"From: anna@example.test\r\nTo: rapport@example.test\r\nSubject: Tack\r\n"
                                  b"Message-ID: <human@example.test>\r\n\r\nTack!\r\n")

    plain = imaplib.IMAP4(imap.host, imap.port)
    try:
        assert "LOGINDISABLED" not in plain.capabilities
        assert plain.login(imap.bounce_address, imap.password)[0] == "OK"
        status, data = plain.select("INBOX")
        assert (status, data) == ("OK", [b"2"])
        status, found = plain.search(None, "UNSEEN")
        assert found == [b"1 2"], "neither the DSN nor the human reply has been read"
        status, fetched = plain.fetch("1:*", "(BODY.PEEK[HEADER])")
        headers = [BytesParser(policy=policy.default).parsebytes(item[1]) for item in fetched if isinstance(item, tuple)]
        kinds = {h.get_content_type(): (number, h) for number, h in enumerate(headers, 1)}
        assert set(kinds) == {"multipart/report", "text/plain"}
        number, header = kinds["multipart/report"]
        assert header["To"] == "rapport+t3@example.test"
        assert plain.create("Processed")[0] == "OK"
        assert plain.copy(str(number), "Processed")[0] == "OK"
    finally:
        plain.logout()
    assert [m["To"] for m in server.messages("rapport", "Processed")] == ["rapport+t3@example.test"]

    context = ssl.create_default_context(cafile=str(imap.ca_file))
    secure = imaplib.IMAP4_SSL(imap.host, imap.imaps_port, ssl_context=context)
    try:
        assert secure.login(imap.bounce_address, imap.password)[0] == "OK"
        assert secure.select("INBOX", readonly=True) == ("OK", [b"2"])
    finally:
        secure.logout()

    with pytest.raises(ssl.SSLCertVerificationError):  # without the test CA the certificate is not trusted
        imaplib.IMAP4_SSL(imap.host, imap.imaps_port, ssl_context=ssl.create_default_context())
    wrong = imaplib.IMAP4(imap.host, imap.port)
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            wrong.login(imap.bounce_address, "not-the-password")
    finally:
        wrong.shutdown()


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_both_servers_start_quickly_with_the_users_asked_for_and_stop_leaving_no_process() -> None:
    started = time.monotonic()
    postfix = Postfix(users=["kim"]).start()
    try:
        with Dovecot(postfix) as dovecot:
            elapsed = time.monotonic() - started
            assert elapsed < 2, f"start-up took {elapsed:.2f} s"
            assert postfix.users == ["rapport", "kim"] and postfix.maildir("kim").is_dir()
            assert postfix.send("rapport@example.test", ["kim@example.test", "person01@example.test"], _report("<t4@x>")) == {}
            postfix.wait_for_messages("kim", 1)
            assert postfix.wait_for_messages("rapport", 1)[0]["Content-Type"].startswith("multipart/report")
            client = imaplib.IMAP4(dovecot.host, dovecot.port)
            client.login("kim@example.test", dovecot.password)
            client.logout()
            servers = postfix.pids(), dovecot.pids()
            assert all(servers) and set(servers[0]).isdisjoint(servers[1])
        assert dovecot.pids() == [] and dovecot.process is not None and dovecot.process.returncode == 0
        assert not _answers(dovecot.port) and not _answers(dovecot.imaps_port)
    finally:
        postfix.close()
    assert postfix.pids() == [] and postfix.process is not None and postfix.process.returncode is not None
    assert not _answers(postfix.port)
    assert not postfix.root.exists()
