"""Issue 20: bounces and automatic replies, through the program's own commands.

VERP and the report run on the sample project with a real SMTP server (aiosmtpd); the
mailbox tests run a real Postfix and a real Dovecot (tests/mailservers.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from conftest import Project, SMTPServer, free_port
from dispatch.config import load_settings
from dispatch.delivery import verp
from dispatch.ledger import Ledger

SECRET = "imap-Secret-that-must-never-show-42"


def test_with_verp_each_envelope_sender_decodes_to_its_dispatch_and_recipient(project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    project.set_config(sender={"from": "Regional rapport <rapport@example.org>", "reply_to": "kommunikation@example.org",
                               "return_path": "studs@example.org", "verp": True})
    sent = project.run("send", "--date", "2024-11-17")
    assert sent.returncode == 0, sent.stderr
    settings = load_settings(project.config_path)
    ledger = Ledger(settings.ledger_url)
    try:
        checked = 0
        for message in smtp_server.handler.reports():
            decoded = verp.decode(message.mail_from, ledger.identity)
            assert decoded is not None and message.mail_from.startswith("studs+"), message.mail_from
            ref = ledger.delivery(decoded[1])
            assert ref is not None and ref.dispatch_id == decoded[0] and ref.dispatch == "2024-11-17.r1.edition"
            assert [ref.address.lower()] == [r.lower() for r in message.rcpt_tos], "the token names this message's recipient"
            assert message.message["Reply-To"] == "kommunikation@example.org", "replies still go to the office"
            checked += 1
        assert checked == 49
    finally:
        ledger.close()


def test_without_verp_the_envelope_sender_is_the_return_path(project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    project.set_config(sender={"from": "Regional rapport <rapport@example.org>", "return_path": "studs@example.org"})
    assert project.run("send", "--date", "2024-11-17").returncode == 0
    assert {m.mail_from for m in smtp_server.handler.reports()} == {"studs@example.org"}


def test_an_unreachable_mailbox_is_one_line_exit_3_and_the_password_is_nowhere(project: Project) -> None:
    port = free_port()  # nothing listens there
    project.set_config(bounces={"host": "127.0.0.1", "port": port, "security": "tls", "username": "rapport@example.test",
                                "password_env": "DISPATCH_TEST_IMAP_PASSWORD"})
    result = project.run("bounces", env={"DISPATCH_TEST_IMAP_PASSWORD": SECRET})
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: bounce mailbox 127.0.0.1:{port}: cannot connect: connection refused"], lines
    assert SECRET not in result.stdout + result.stderr
    assert _nowhere(project.root, SECRET)


def test_without_a_bounces_section_the_command_says_what_to_add(project: Project) -> None:
    result = project.run("bounces")
    assert result.returncode == 1 and "add a 'bounces:' section" in result.stderr


def test_the_report_names_an_address_that_bounced_twice_with_its_list_file_and_line(project: Project) -> None:
    """Three dispatches (three days), one address bounced hard in two of them."""
    for day in ("2024-11-17", "2024-11-18", "2024-11-19"):
        text = (project.root / "reports" / "2024-11-17.md").read_text(encoding="utf-8")
        (project.root / "reports" / f"{day}.md").write_text(text.replace("compiled: 2024-11-17", f"compiled: {day}"),
                                                            encoding="utf-8")
        assert project.run("send", "--date", day).returncode == 0
    settings = load_settings(project.config_path)
    victim, line = "bengt.carlsson@example.org", 4  # recipients/chefer.csv, line 4
    ledger = Ledger(settings.ledger_url)
    try:
        now = datetime.now(UTC)
        for name in ("2024-11-17.r1.edition", "2024-11-19.r1.edition"):
            ref = ledger.delivery_by_key(name, victim.lower())
            assert ref is not None
            assert ledger.record_bounce(ref, "hard", "5.1.1", "User unknown", f"<dsn-{name}>", now)
        other = ledger.delivery_by_key("2024-11-18.r1.edition", "x")
        assert other is None
    finally:
        ledger.close()
    report = project.run("bounces", "--report", "--dispatches", "3")
    assert report.returncode == 0, report.stderr
    assert report.stdout.strip() == (f"{victim}: bounced in 2 of the last 3 dispatches (2024-11-17.r1.edition, "
                                     f"2024-11-19.r1.edition); fix or remove it at recipients/chefer.csv:{line}")
    as_json = json.loads(project.run("bounces", "--report", "--json").stdout)
    assert [entry["email"] for entry in as_json["addresses"]] == [victim]
    status = project.status("2024-11-19.r1.edition")
    assert status["counts"]["bounced"] == 1
    assert [r["reply"] for r in status["recipients"] if r["state"] == "bounced"] == ["5.1.1 User unknown"]
    assert victim in (project.root / "recipients" / "chefer.csv").read_text(encoding="utf-8"), "nobody is removed"


def _nowhere(root: Path, secret: str) -> bool:
    return not any(path.is_file() and secret.encode() in path.read_bytes() for path in root.rglob("*"))
