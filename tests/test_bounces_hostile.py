"""Issue 30, points 3 and 4, with real servers: a dispatch through a real Postfix (which sends
real DSNs for unknown users) and the bounce mailbox read from a real Dovecot over IMAPS
(tests/mailservers.py). Forged bounces change nobody; a flooded mailbox still gives up its
one real bounce in one run, at a bounded cost. Fast twins: tests/test_bounces_proof.py."""

from __future__ import annotations

import imaplib
import json
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

import mailservers
from conftest import Project
from mailservers import Dovecot, Postfix
from test_bounces_mail import ENV, SECRET, bounced, use_servers
from test_hostile_input import run_measured

dovecot_server = mailservers.dovecot_server


@pytest.fixture(scope="module")
def postfix_server() -> Iterator[Postfix]:
    with Postfix(domain="rapport.example.org") as server:  # a domain the address checks accept
        yield server


def flags(message: EmailMessage | Path) -> str:
    """The Maildir flags in the file's name (``...:2,FS``): what IMAP says of it."""
    path = message if isinstance(message, Path) else Path(str(getattr(message, "path", "")))
    return path.name.rpartition(":2,")[2]


def files(postfix: Postfix, user: str, folder: str = "INBOX") -> list[Path]:
    """The message files of a folder, unparsed (some here are 40 MB)."""
    base = postfix.maildir(user) if folder == "INBOX" else postfix.maildir(user) / f".{folder}"
    return [p for sub in ("new", "cur") if (base / sub).is_dir() for p in (base / sub).iterdir()]


def wait_for_files(postfix: Postfix, user: str, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(files(postfix, user)) < count:
        assert time.monotonic() < deadline, f"{len(files(postfix, user))} of {count} messages; queue: {postfix.queue()}"
        postfix.flush()
        time.sleep(0.2)


def forged_dsn(*, to: str, victim: str, quoted_id: str, source: str) -> str:
    """What anyone can write: the victim's address, and the Message-ID of the report sent to
    them (ours are derived from the dispatch's name and the address)."""
    return (f"From: MAILER-DAEMON@mx.elsewhere.example\nTo: {to}\nDelivered-To: {to}\n"
            f"Subject: Undelivered Mail Returned to Sender\nMessage-ID: {source}\nMIME-Version: 1.0\n"
            "Content-Type: multipart/report; report-type=delivery-status; boundary=\"F\"\n\n"
            "--F\nContent-Type: text/plain\n\nThe mailbox does not exist.\n\n"
            "--F\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.elsewhere.example\n\n"
            f"Final-Recipient: rfc822; {victim}\nOriginal-Recipient: rfc822; {victim}\nAction: failed\nStatus: 5.1.1\n"
            "Diagnostic-Code: smtp; 550 5.1.1 user unknown\n\n"
            f"--F\nContent-Type: text/rfc822-headers\n\nFrom: Regional rapport <rapport@example.org>\nTo: {victim}\n"
            f"Message-ID: {quoted_id}\n\n--F--\n")


@pytest.mark.slow  # a send through Postfix and two IMAP runs; fast twin: tests/test_bounces_proof.py
def test_with_verp_forged_bounces_change_nobody_and_stay_in_sight_while_a_real_dsn_marks_its_recipient(
        project: Project, postfix_server: Postfix, dovecot_server: Dovecot) -> None:
    domain = postfix_server.domain
    use_servers(project, postfix_server, dovecot_server, verp=True, users=["person01", "person02", "ingen01"])
    assert project.run("send", "--date", "2024-11-17", "--list", "stor").returncode == 0
    [real] = postfix_server.wait_for_messages(postfix_server.bounce_user, 1)
    before = {r["email"]: r for r in project.status("2024-11-17")["recipients"]}
    victim = before[f"person02@{domain}"]
    assert victim["state"] == "sent"
    token_address = str(postfix_server.messages("person02")[-1]["Return-Path"]).strip("<>")
    assert token_address.startswith(f"{postfix_server.bounce_user}+"), token_address
    local, _, host = token_address.partition("@")
    wrong_mac = f"{local[:-10]}{'0' if local[-10] != '0' else '1'}{local[-9:]}@{host}"
    bounce_user = postfix_server.bounce_user
    postfix_server.add_message(bounce_user, forged_dsn(to=postfix_server.bounce_address, victim=victim["email"],
                                                       quoted_id=victim["message_id"], source="<forged-1@elsewhere>"))
    postfix_server.add_message(bounce_user, forged_dsn(to=wrong_mac, victim=victim["email"],
                                                       quoted_id=victim["message_id"], source="<forged-2@elsewhere>"))

    run = project.run("bounces", "--json", env=ENV)
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert (document["read"], document["hard"], document["unverified"], document["moved"]) == (3, 1, 2, 1), document
    assert bounced(project) == {f"ingen01@{domain}": f'5.1.1 unknown user: "ingen01@{domain}"'}, "the real DSN still counts"
    after = {r["email"]: (r["state"], r["reply"]) for r in project.status("2024-11-17")["recipients"]}
    assert after[victim["email"]] == ("sent", victim["reply"]), "the victim is untouched"
    assert after[f"person01@{domain}"][0] == "sent"

    assert [m["Message-ID"] for m in postfix_server.messages(bounce_user, "Processed")] == [real["Message-ID"]]
    inbox = postfix_server.messages(bounce_user, "INBOX")
    assert sorted(m["Message-ID"] for m in inbox) == ["<forged-1@elsewhere>", "<forged-2@elsewhere>"], "in sight"
    assert all("F" in flags(m) and "S" not in flags(m) for m in inbox), [flags(m) for m in inbox]

    again = project.run("bounces", "--json", env=ENV)
    assert again.returncode == 0 and json.loads(again.stdout)["read"] == 0, "flagged: read past, not again"
    assert project.status("2024-11-17")["counts"]["bounced"] == 1


def human_reply(number: int) -> str:
    return (f"From: Person {number} <person{number}@region.example.se>\nTo: rapport@rapport.example.org\n"
            f"Subject: Re: Regional rapport\nMessage-ID: <reply-{number}@region.example.se>\n"
            "Content-Type: text/plain; charset=utf-8\n\nTack för rapporten. En fråga om Borås.\n")


def deep_multipart(levels: int) -> str:
    opening = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(levels))
    closing = "".join(f"--b{i}--\n" for i in reversed(range(levels)))
    return f"From: x@example.net\nSubject: deep\nMessage-ID: <deep@example.net>\n{opening}Content-Type: text/plain\n\nhej\n{closing}"


def large(number: int, megabytes: int = 40) -> bytes:
    head = (f"From: Stor Bilaga <stor@region.example.se>\nSubject: Bilder {number}\nMessage-ID: <large-{number}@region>\n"
            "Content-Type: text/plain\n\n").encode()
    return head + (b"A" * 76 + b"\n") * (megabytes * 1024 * 1024 // 77)


def sync(dovecot: Dovecot) -> None:
    """Have Dovecot see the mailbox now, so what arrives later gets higher UIDs (as on a server
    that had the flood for days)."""
    client = imaplib.IMAP4(dovecot.host, dovecot.port)
    try:
        client.login(dovecot.bounce_address, dovecot.password)
        client.select("INBOX", readonly=True)
    finally:
        client.logout()


@pytest.mark.slow  # 400 MB of mail in a Maildir and three IMAP runs; fast twin: tests/test_bounces_proof.py
def test_a_flooded_mailbox_gives_up_its_real_bounce_in_one_run_within_a_minute_and_300_mb(
        project: Project, postfix_server: Postfix, dovecot_server: Dovecot, monkeypatch: pytest.MonkeyPatch) -> None:
    domain = postfix_server.domain
    use_servers(project, postfix_server, dovecot_server, verp=True, users=["person01", "ingen02"])
    bounce_user = postfix_server.bounce_user
    for number in range(600):
        postfix_server.add_message(bounce_user, human_reply(number))
    postfix_server.add_message(bounce_user, deep_multipart(3000))
    for number in range(10):
        postfix_server.add_message(bounce_user, large(number))
    sync(dovecot_server)
    assert project.run("send", "--date", "2024-11-17", "--list", "stor").returncode == 0
    wait_for_files(postfix_server, bounce_user, 612)

    monkeypatch.setenv("DISPATCH_TEST_IMAP_PASSWORD", SECRET)
    result = run_measured(project, "bounces", "--json", timeout=120)
    assert result.returncode in (0, 3) and "Traceback" not in result.output, result.output
    document = json.loads(result.stdout)
    assert document["hard"] == 1 and bounced(project) == {f"ingen02@{domain}": f'5.1.1 unknown user: "ingen02@{domain}"'}
    assert result.wall < 60, f"took {result.wall:.1f} s"
    assert result.peak_mb < 300, f"peak RSS {result.peak_mb:.0f} MB"
    # The newest 500: the DSN and 499 of the others (Dovecot numbers a batch of new files in
    # the order it finds them), each either a person's reply or set aside.
    assert document["read"] == 500 and document["human_replies"] + len(document["quarantined"]) == 499, document

    second = run_measured(project, "bounces", "--json", timeout=120)
    assert second.returncode == 0, second.output
    rest = json.loads(second.stdout)
    assert rest["read"] == 112 and rest["hard"] == 0, "never the same 500 again: the 112 older ones"
    assert document["human_replies"] + rest["human_replies"] == 600
    reasons = [q["reason"] for q in document["quarantined"] + rest["quarantined"]]
    assert len(reasons) == 11 and sum("over bounces.max_message_bytes (1000000)" in r for r in reasons) == 10, reasons
    assert sum("3001 MIME parts" in r for r in reasons) == 1, reasons
    quarantined = files(postfix_server, bounce_user, "Quarantine")
    assert len(quarantined) == 11 and all("S" not in flags(m) for m in quarantined), "set aside, unread, for a person"
    third = run_measured(project, "bounces", "--json", timeout=120)
    assert json.loads(third.stdout)["read"] == 0
    inbox = files(postfix_server, bounce_user)
    assert len(inbox) == 600 and all("F" in flags(m) and "S" not in flags(m) for m in inbox), "people's replies stay, unread"
