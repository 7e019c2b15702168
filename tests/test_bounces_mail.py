"""Issue 20, acceptance with real servers: a dispatch through a real Postfix that bounces
unknown users with real DSNs, read back from a real Dovecot over IMAPS (tests/mailservers.py).

The servers are shared by this module's tests; each test works on its own recipients and
empties the bounce mailbox first."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import mailservers
from conftest import Project
from mailservers import Dovecot, Postfix

dovecot_server = mailservers.dovecot_server


@pytest.fixture(scope="module")
def postfix_server() -> Iterator[Postfix]:
    # A domain the address checks accept (example.test is reserved, so the lists would refuse it).
    with Postfix(domain="rapport.example.org") as server:
        yield server

SECRET = "test-imap-password"  # tests/mailservers.py's password for every mailbox
ENV = {"DISPATCH_TEST_IMAP_PASSWORD": SECRET}
UNKNOWN = ("ingen01", "ingen02", "ingen03")


def use_servers(project: Project, postfix: Postfix, dovecot: Dovecot, *, verp: bool, users: list[str]) -> None:
    postfix.clear()
    project.set_config(
        sender={"from": f"Regional rapport <{postfix.bounce_address}>", "reply_to": f"redaktionen@{postfix.domain}",
                "return_path": postfix.bounce_address, "verp": verp},
        transport={"kind": "smtp", "host": postfix.host, "port": postfix.port, "security": "none", "connections": 2},
        bounces={"host": dovecot.host, "port": dovecot.imaps_port, "security": "tls", "ca_file": str(dovecot.ca_file),
                 "username": dovecot.bounce_address, "password_env": "DISPATCH_TEST_IMAP_PASSWORD",
                 "folder": "INBOX", "processed_folder": "Processed"},
        notify=[],
    )
    rows = "".join(f"{name}@{postfix.domain},{name}\n" for name in users)
    (project.root / "recipients" / "stor.csv").write_text("email,name\n" + rows, encoding="utf-8")


def bounced(project: Project) -> dict[str, str]:
    status = project.status("2024-11-17")
    return {r["email"]: r["reply"] for r in status["recipients"] if r["state"] == "bounced"}


@pytest.mark.slow  # a send through Postfix and two IMAP runs; fast twin: tests/test_bounces_unit.py
@pytest.mark.parametrize("verp", [True, False], ids=["verp", "message-id"])
def test_three_unknown_users_of_twenty_are_marked_bounced_and_a_second_run_changes_nothing(
        project: Project, postfix_server: Postfix, dovecot_server: Dovecot, verp: bool) -> None:
    users = [f"person{i:02d}" for i in range(1, 18)] + list(UNKNOWN)
    use_servers(project, postfix_server, dovecot_server, verp=verp, users=users)
    sent = project.run("send", "--date", "2024-11-17", "--list", "stor")
    assert sent.returncode == 0, sent.stderr
    postfix_server.wait_for_messages(postfix_server.bounce_user, 3)

    first = project.run("bounces", env=ENV)
    assert first.returncode == 0, first.stderr
    assert bounced(project) == {f"{name}@{postfix_server.domain}": f'5.1.1 unknown user: "{name}@{postfix_server.domain}"'
                                for name in UNKNOWN}
    assert project.status("2024-11-17")["counts"]["bounced"] == 3
    assert "read 3: 3 hard bounce(s) recorded" in first.stderr and "3 moved to Processed" in first.stderr
    assert len(postfix_server.messages(postfix_server.bounce_user, "Processed")) == 3
    assert postfix_server.messages(postfix_server.bounce_user, "INBOX") == []

    again = project.run("bounces", "--json", env=ENV)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["read"] == 0 and json.loads(again.stdout)["hard"] == 0
    assert project.status("2024-11-17")["counts"]["bounced"] == 3, "nothing changes the second time"
    history = json.loads(project.run("history", "--json").stdout)["dispatches"]
    assert history[-1]["counts"]["bounced"] == 3


@pytest.mark.slow  # a send through Postfix and an IMAP run; fast twin: tests/test_bounces_unit.py
def test_an_out_of_office_and_an_exchange_ndr_are_handled_and_a_persons_reply_stays_unread(
        project: Project, postfix_server: Postfix, dovecot_server: Dovecot) -> None:
    from test_bounces_unit import EXCHANGE_ONLINE_NDR, HUMAN_REPLY, ORIGINAL_ID, OUT_OF_OFFICE

    users = [f"person{i:02d}" for i in range(1, 6)]
    use_servers(project, postfix_server, dovecot_server, verp=False, users=users)
    assert project.run("send", "--date", "2024-11-17", "--list", "stor").returncode == 0
    status = project.status("2024-11-17")
    target = next(r for r in status["recipients"] if r["email"] == f"person02@{postfix_server.domain}")
    ndr = EXCHANGE_ONLINE_NDR.replace("avgatt.chef@region.example.se", target["email"]).replace(ORIGINAL_ID,
                                                                                               target["message_id"])
    bounce_user = postfix_server.bounce_user
    postfix_server.add_message(bounce_user, OUT_OF_OFFICE.replace(ORIGINAL_ID, target["message_id"]))
    postfix_server.add_message(bounce_user, ndr)
    reply = postfix_server.add_message(bounce_user, HUMAN_REPLY)

    run = project.run("bounces", "--json", env=ENV)
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert (document["auto_replies"], document["hard"], document["human_replies"], document["moved"]) == (1, 1, 1, 2)
    assert bounced(project) == {target["email"]: "5.1.10 550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by "
                                                 "SMTP address lookup"}
    inbox = postfix_server.messages(bounce_user, "INBOX")
    assert [m["Message-ID"] for m in inbox] == ["<reply-1@region.example.se>"], "the person's reply stays in place"
    flags = Path(str(getattr(inbox[0], "path", reply))).name.rpartition(":2,")[2]
    assert "S" not in flags and "F" in flags, "unread, and flagged so that the next run reads past it"
    assert len(postfix_server.messages(bounce_user, "Processed")) == 2


@pytest.mark.slow  # a send through Postfix; fast twin: test_a_verp_token_decodes_with_its_key_only_and_hides_the_address
def test_with_verp_a_bounce_that_quotes_no_headers_still_matches(project: Project, postfix_server: Postfix,
                                                                 dovecot_server: Dovecot) -> None:
    users = [f"person{i:02d}" for i in range(1, 4)]
    use_servers(project, postfix_server, dovecot_server, verp=True, users=users)
    assert project.run("send", "--date", "2024-11-17", "--list", "stor").returncode == 0
    delivered = postfix_server.messages("person03")
    return_path = str(delivered[-1]["Return-Path"]).strip("<>")
    assert return_path.startswith(f"{postfix_server.bounce_user}+"), return_path
    bare = (f"From: MAILER-DAEMON@elsewhere.example\nTo: {return_path}\nDelivered-To: {return_path}\n"
            "Subject: failure notice\nMessage-ID: <bare-1@elsewhere.example>\n"
            "Content-Type: multipart/report; report-type=delivery-status; boundary=\"X\"\n\n"
            "--X\nContent-Type: text/plain\n\nThe mailbox is full and no longer used.\n\n"
            f"--X\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; elsewhere.example\n\n"
            f"Final-Recipient: rfc822; person03@{postfix_server.domain}\nAction: failed\nStatus: 5.2.1\n"
            "Diagnostic-Code: smtp; 550 5.2.1 mailbox disabled\n\n--X--\n")
    postfix_server.add_message(postfix_server.bounce_user, bare)
    assert project.run("bounces", env=ENV).returncode == 0
    assert bounced(project) == {f"person03@{postfix_server.domain}": "5.2.1 550 5.2.1 mailbox disabled"}


def test_wrong_credentials_are_one_line_exit_3_nothing_moved_and_the_password_nowhere(
        project: Project, postfix_server: Postfix, dovecot_server: Dovecot, tmp_path: Path) -> None:
    use_servers(project, postfix_server, dovecot_server, verp=False, users=["person01"])
    postfix_server.add_message(postfix_server.bounce_user, "From: a@example.test\nSubject: x\n\nx\n")
    wrong = "wrong-" + SECRET
    result = project.run("bounces", env={"DISPATCH_TEST_IMAP_PASSWORD": wrong})
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: bounce mailbox {dovecot_server.host}:{dovecot_server.imaps_port}: the server refused the sign-in of "
        f"{dovecot_server.bounce_address} (check bounces.username and the password)"]
    assert wrong not in result.stdout + result.stderr
    assert not any(wrong.encode() in p.read_bytes() for p in project.root.rglob("*") if p.is_file())
    assert len(postfix_server.messages(postfix_server.bounce_user, "INBOX")) == 1, "nothing moved"
    project.set_config(bounces={**project.config()["bounces"], "ca_file": None})
    result = project.run("bounces", env=ENV)
    assert result.returncode == 3 and "the server's certificate is not trusted" in result.stderr, result.stderr
