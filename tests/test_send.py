"""Issue 2: the daily edition end to end, against a real SMTP server and a real Maildir."""

from __future__ import annotations

import mailbox
import re
import signal
import subprocess
import sys
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from conftest import Project, SMTPServer, addresses, big_list, body_text, run_cli, seed_bullets, seed_headings, start_dispatch, unit_of

SUBJECT = "sön 17 nov: Regional rapport Millennium 2024"  # what changes daily first (issue 19)
REQUIRED_HEADERS = (
    "From", "To", "Reply-To", "Subject", "Date", "Message-ID", "List-Id",
    "Auto-Submitted", "X-Auto-Response-Suppress", "Precedence", "MIME-Version",
)
DISTINCT_SAMPLE_RECIPIENTS = 49  # 11 + 40 on the two sample lists, 2 people on both


def _sample_addresses(project: Project) -> set[str]:
    import csv

    import yaml

    yaml_list = yaml.safe_load((project.root / "recipients/politisk-ledning.yaml").read_text(encoding="utf-8"))
    addresses = {m["email"].lower() for m in yaml_list["members"]}
    with (project.root / "recipients/chefer.csv").open(encoding="utf-8") as handle:
        addresses |= {row["email"].lower() for row in csv.DictReader(handle)}
    return addresses


def _parts(message: EmailMessage) -> tuple[str, str]:
    text = body_text(message)
    html = body_text(message, "html")
    return text, html


def address_in(field: str) -> str:
    """The address of a To field (``Name <addr>`` or a bare address), lower-cased."""
    found = re.search(r"<([^>]+)>|(\S+@\S+)", field)
    assert found is not None, f"no address in {field!r}"
    return found.group(0).strip("<>").lower()


def _visible(html: str) -> str:
    import html as html_module

    body = html.split("<body", 1)[1]
    body = re.sub(r"<div class=\"preheader\".*?</div>", " ", body, flags=re.S)
    body = re.sub(r"<!--.*?-->", " ", body, flags=re.S)
    return " ".join(html_module.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def _assert_in_order(haystack: str, needles: list[str]) -> None:
    flat = " ".join(haystack.split())
    position = 0
    for needle in needles:
        found = flat.find(" ".join(needle.split()), position)
        assert found >= 0, f"missing or out of order: {needle!r}"
        position = found + 1


def test_quick_start_delivers_sample_into_maildir_once_per_person(project: Project) -> None:
    result = project.run("send", "--date", "2024-11-17")
    assert result.returncode == 0, result.stderr

    box = mailbox.Maildir(project.root / "var/outbox", create=False)
    delivered = [m for m in box if m["List-Id"]]
    summaries = [m for m in box if not m["List-Id"]]
    assert len(delivered) == DISTINCT_SAMPLE_RECIPIENTS
    assert len(summaries) == 1 and summaries[0]["To"] == "kommunikation@example.org"  # config notify
    to_addresses = [address_in(m["To"]) for m in delivered]
    assert sorted(to_addresses) == sorted(_sample_addresses(project))  # a person on both lists: once

    status = project.status()
    assert status["dispatch"] == "2024-11-17.r1.edition"
    assert status["counts"]["sent"] == DISTINCT_SAMPLE_RECIPIENTS
    assert {r["state"] for r in status["recipients"]} == {"sent"}
    assert len(status["recipients"]) == DISTINCT_SAMPLE_RECIPIENTS


def test_smtp_send_delivers_well_formed_messages(project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    result = project.run("send", "--date", "2024-11-17")
    assert result.returncode == 0, result.stderr

    received = smtp_server.handler.reports()
    assert sorted(r.rcpt_tos[0].lower() for r in received) == sorted(_sample_addresses(project))
    assert len(received) == DISTINCT_SAMPLE_RECIPIENTS
    message_ids = set()
    for item in received:
        for line in item.data.split(b"\r\n"):
            assert len(line) <= 998
        head = item.data.split(b"\r\n\r\n", 1)[0]
        assert head.isascii(), "every header byte must be ASCII"
        message = BytesParser(policy=policy.default).parsebytes(item.data)
        for header in REQUIRED_HEADERS:
            assert message[header], f"missing {header}"
        assert message["Subject"] == SUBJECT
        assert "=?utf-8?" in head.decode().lower()  # the Swedish subject travels as an encoded-word
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["X-Auto-Response-Suppress"] == "OOF, AutoReply"
        assert message["Precedence"] == "bulk"
        assert message["Message-ID"].endswith("@example.org>")
        assert message["Importance"] is None and message["X-Priority"] is None
        assert message.get_content_type() == "multipart/alternative"
        parts = list(message.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        assert all(p["Content-Transfer-Encoding"] == "quoted-printable" for p in parts)
        assert item.rcpt_tos[0].lower() in message["To"].lower()
        message_ids.add(message["Message-ID"])
    assert len(message_ids) == DISTINCT_SAMPLE_RECIPIENTS


def test_both_parts_carry_every_bullet_in_the_seed_order(project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server, connections=1)
    assert project.run("send", "--date", "2024-11-17", "--list", "politisk-ledning").returncode == 0
    message = smtp_server.handler.reports()[0].message
    text, html = _parts(message)
    bullets = seed_bullets()
    assert len(bullets) >= 25
    _assert_in_order(text, seed_headings())
    _assert_in_order(_visible(html), seed_headings())
    _assert_in_order(text, bullets)
    _assert_in_order(_visible(html), bullets)
    assert 'href="#"' not in html


def test_second_send_delivers_nothing_and_says_so(project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    assert project.run("send", "--date", "2024-11-17").returncode == 0
    first = len(smtp_server.handler.reports())
    again = project.run("send", "--date", "2024-11-17")
    assert again.returncode == 0
    assert len(smtp_server.handler.reports()) == first
    assert "everyone already has this message" in again.stderr and "nothing sent" in again.stderr


def test_a_lost_ledger_is_refused_and_new_ledger_starts_over_on_purpose(project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    assert project.run("send", "--date", "2024-11-17").returncode == 0
    first = len(smtp_server.handler.reports())
    for path in (project.root / "var").glob("ledger.db*"):
        path.unlink()  # the ledger is lost (a disk replaced without its backup)
    refused = project.run("send", "--date", "2024-11-17")
    assert refused.returncode == 3 and "does not exist any more" in refused.stderr and "--new-ledger" in refused.stderr
    assert len(smtp_server.handler.reports()) == first, "nobody is sent to again without being asked"
    dry = project.run("send", "--date", "2024-11-17", "--new-ledger", "--dry-run")
    assert dry.returncode == 3 and "does not exist any more" in dry.stderr, "a dry run accepts nothing"
    again = project.run("send", "--date", "2024-11-17", "--new-ledger")
    assert again.returncode == 0, again.stderr
    assert len(smtp_server.handler.reports()) == 2 * first, "started over on purpose: everyone again"
    assert project.run("send", "--date", "2024-11-17").returncode == 0, "the new ledger is remembered from now on"
    assert len(smtp_server.handler.reports()) == 2 * first


@pytest.mark.slow  # a process killed part-way through 1,500 recipients
def test_sigkill_part_way_then_rerun_loses_nobody(project: Project, smtp_server: SMTPServer) -> None:
    count, connections = 1500, 4
    big_list(project, count)
    project.use_smtp(smtp_server, connections=connections)
    smtp_server.handler.accept_delay = 0.008  # keep the send running long enough to be killed part-way
    process = start_dispatch(project, "send", "--date", "2024-11-17", "--list", "stor")
    deadline = time.monotonic() + 60
    while len(smtp_server.handler.received) < count // 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = len(smtp_server.handler.received)
    assert 0 < before < count, "the kill must land part-way"

    rerun = project.run("send", "--date", "2024-11-17", "--list", "stor")
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed" in rerun.stderr
    received = smtp_server.handler.recipients()
    assert set(received) == set(addresses(count)), "0 lost"
    duplicates = len(received) - len(set(received))
    assert duplicates <= connections
    assert project.status()["counts"]["sent"] == count


BROKEN_EDITIONS = {
    "broken YAML": ("---\ncompiled: 2024-11-18 14:00\nstatus: [approved\n---\n\n## A\n\n- b\n", 3, "invalid YAML"),
    "missing key": ("---\ncompiled: 2024-11-18 14:00\n---\n\n## A\n\n- b\n", 2, "missing required key 'status'"),
    "unknown list": ("---\ncompiled: 2024-11-18 14:00\nstatus: approved\nlists: [politisk-ledning, styrelsen]\n---\n\n## A\n\n- b\n",
                     4, "unknown recipient list 'styrelsen'"),
    "unknown variable": ("---\ncompiled: 2024-11-18 14:00\nstatus: approved\nsubject: \"Rapport {{ datum }}\"\n---\n\n## A\n\n- b\n",
                         4, "'datum' is undefined"),
}


@pytest.mark.parametrize("case", list(BROKEN_EDITIONS))
def test_broken_edition_is_reported_with_file_and_line_and_nothing_is_sent(case: str, project: Project, smtp_server: SMTPServer) -> None:
    text, line, message = BROKEN_EDITIONS[case]
    (project.root / "reports/2024-11-18.md").write_text(text, encoding="utf-8")
    project.use_smtp(smtp_server)

    check = project.run("check", "--date", "2024-11-18")
    assert check.returncode == 1
    assert f"reports/2024-11-18.md:{line}: " in check.stderr
    assert message in check.stderr

    send = project.run("send", "--date", "2024-11-18")
    assert send.returncode == 1
    assert f"reports/2024-11-18.md:{line}: " in send.stderr
    assert smtp_server.handler.received == []


def test_raw_html_in_markdown_is_shown_as_text_and_the_edition_still_goes(project: Project, smtp_server: SMTPServer) -> None:
    (project.root / "reports/2024-11-18.md").write_text(
        "---\ncompiled: 2024-11-18 14:00\nstatus: approved\n---\n\n## Läget\n\n- Se <script>alert(1)</script> och <b>fet</b> text\n",
        encoding="utf-8",
    )
    project.use_smtp(smtp_server, connections=1)
    assert project.run("send", "--date", "2024-11-18", "--list", "politisk-ledning").returncode == 0
    text, html = _parts(smtp_server.handler.reports()[0].message)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>fet</b>" not in html
    assert "<script>alert(1)</script>" in text


def test_help_describes_every_option(tmp_path: Path) -> None:
    from dispatch.cli import main

    top = run_cli(["--help"], cwd=tmp_path)
    assert top.returncode == 0
    for option in ("--config", "--version", "--help"):
        assert option in top.stdout
    for name, command in main.commands.items():
        assert name in top.stdout
        output = run_cli([name, "--help"], cwd=tmp_path)
        assert output.returncode == 0, name
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--"):
                    assert opt in output.stdout, f"{name} {opt}"
            if hasattr(param, "help") and param.param_type_name == "option":
                assert param.help, f"{name} {param.name} has no help text"


def test_config_relative_paths_work_from_any_directory(project: Project, tmp_path: Path) -> None:
    # Also the fast lane's check that `python -m dispatch` starts in a fresh interpreter
    # (elsewhere the tests' CLI server forks one that has imported the package).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "dispatch", "--config", str(project.config_path), "check", "--date", "2024-11-17"],
        cwd=elsewhere, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr


def test_a_test_send_prints_the_name_it_sends_as(project: Project) -> None:
    """`send --to` names its test dispatch before sending; `status` must find that name."""
    result = project.run("send", "--date", "2024-11-17", "--to", "prov@example.org")
    assert result.returncode == 0, result.stderr
    named = re.search(r"^(2024-11-17\.r1\.test-\d{8}T\d{6}): content", result.stderr, re.M)
    assert named, result.stderr
    assert project.run("status", named.group(1)).returncode == 0


def test_a_test_dispatch_is_named_from_when_it_was_prepared_not_when_it_is_decided(project: Project) -> None:
    """The command line decides (and prints the name) before app.send decides again: a second
    apart, a name made from the clock would differ."""
    from datetime import UTC, datetime, timedelta

    from dispatch import app
    from dispatch.config import load_settings

    settings = load_settings(project.config_path)
    at = datetime(2024, 11, 17, 13, 0, 59, tzinfo=UTC)
    ready = app.prepare_edition(unit_of(settings), app.read_edition(unit_of(settings), at.date(), None, at), at, to=("prov@example.org",))
    first, later = app.decide_now(unit_of(settings), ready, at), app.decide_now(unit_of(settings), ready, at + timedelta(seconds=2))
    assert first.name == later.name == "2024-11-17.r1.test-20241117T130059"
