"""Issue 5: delivery through faulty relays, against a real SMTP server (aiosmtpd).

Retries run in injected time: the pipeline's Clock is replaced by one whose sleep
moves time forward, so backoff of minutes takes no real time.
"""

from __future__ import annotations

import collections
import signal
import sqlite3
import threading
import time
from datetime import date, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from conftest import FakeClock, Project, RecordingHandler, SMTPServer, addresses, big_list, body_text, start_dispatch, start_server, unit_of
from dispatch import app
from dispatch.config import load_settings
from dispatch.delivery.pipeline import Clock, Result

COUNT = 2000  # the issue's size: for the runs that are about size (and marked slow)
SOME = 60  # for the faults whose handling does not depend on the size of the list
SEVERAL = 500  # five of a fault that comes once in every 100 messages


def send_in_process(project: Project, clock: Clock, linger: timedelta = timedelta(hours=3)) -> Result:
    settings = load_settings(project.config_path)
    edition = app.read_edition(unit_of(settings), date(2024, 11, 17), None, clock.now())
    ready = app.prepare_edition(unit_of(settings), edition, clock.now(), lists=("stor",))
    return app.send(unit_of(settings), ready, clock, linger=linger)


def ledger_rows(project: Project) -> list[dict[str, Any]]:
    with sqlite3.connect(project.root / "var/ledger.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM deliveries ORDER BY id")]


def assert_each_received_once(server: SMTPServer, count: int) -> None:
    received = server.handler.recipients()
    assert sorted(received) == addresses(count), "every recipient exactly once"


def test_451_twice_for_a_tenth_is_retried_with_backoff(project: Project, smtp_server: SMTPServer) -> None:
    big_list(project, SOME)
    project.use_smtp(smtp_server, connections=4)
    clock = FakeClock()
    smtp_server.handler.clock = clock
    refused: collections.Counter[str] = collections.Counter()
    flaky = set(addresses(SOME)[::10])

    def rcpt(address: str) -> str | None:
        if address in flaky and refused[address] < 2:
            refused[address] += 1
            return "451 4.7.1 Greylisted, try again later"
        return None

    smtp_server.handler.rcpt_reply = rcpt
    result = send_in_process(project, clock)

    assert result.complete, result.counts
    assert_each_received_once(smtp_server, SOME)
    rows = {r["address"]: r for r in ledger_rows(project)}
    assert max(r["attempts"] for r in rows.values()) <= 3
    assert all(rows[a]["attempts"] == 3 for a in flaky)
    # The server saw each flaky recipient three times, at least 1 and then 2 minutes apart.
    attempts: dict[str, list[datetime]] = collections.defaultdict(list)
    for address, when in smtp_server.handler.rcpt_log:
        attempts[address].append(when)
    for address in flaky:
        first, second, third = attempts[address]
        assert second - first >= timedelta(minutes=1)
        assert third - second >= timedelta(minutes=2)


def test_550_fails_exactly_those_once_and_the_summary_names_them(project: Project, smtp_server: SMTPServer) -> None:
    big_list(project, SOME)
    project.use_smtp(smtp_server, connections=4)
    rejected = set(addresses(SOME)[20:25])
    smtp_server.handler.rcpt_reply = lambda a: "550 5.1.1 User unknown" if a in rejected else None

    result = project.run("send", "--date", "2024-11-17", "--list", "stor", "--wait", "0")
    assert result.returncode == 3, result.stderr

    status = project.status()
    failed = [r for r in status["recipients"] if r["state"] == "failed"]
    assert {r["email"] for r in failed} == rejected
    assert all(r["attempts"] == 1 and r["reply"].startswith("550 5.1.1") for r in failed)
    assert status["counts"]["sent"] == SOME - 5
    assert sorted(smtp_server.handler.recipients()) == sorted(set(addresses(SOME)) - rejected)

    summaries = smtp_server.handler.notices()
    assert len(summaries) == 1
    body = body_text(message_from_bytes(summaries[0].data, policy=policy.default))
    for address in rejected:
        assert f"{address}: 550 5.1.1 User unknown" in body


@pytest.mark.slow  # real-time reconnect backoff; fast twin: test_451_twice_for_a_tenth_is_retried_with_backoff
def test_421_and_disconnect_every_100_messages_loses_and_repeats_nobody(project: Project, smtp_server: SMTPServer) -> None:
    big_list(project, SEVERAL)
    project.use_smtp(smtp_server, connections=4)
    clock = FakeClock()
    seen = {"data": 0}
    lock = threading.Lock()

    def data(envelope: Any) -> str | None:
        with lock:
            seen["data"] += 1
            if seen["data"] % 100 == 0:
                return "421 4.3.2 Service shutting down, closing connection"
        return None

    smtp_server.handler.data_reply = data
    result = send_in_process(project, clock)
    assert result.complete, result.counts
    assert seen["data"] >= SEVERAL + SEVERAL // 100 - 1
    assert_each_received_once(smtp_server, SEVERAL)


@pytest.mark.slow  # real-time reconnect backoff; fast twin: test_451_twice_for_a_tenth_is_retried_with_backoff
def test_connection_lost_after_final_dot_is_unknown_and_resent_with_same_message_id(project: Project, smtp_server: SMTPServer) -> None:
    big_list(project, SEVERAL)
    project.use_smtp(smtp_server, connections=4)
    clock = FakeClock()
    dropped: set[str] = set()
    lock = threading.Lock()

    def drop(envelope: Any) -> bool:
        address = envelope.rcpt_tos[0].lower()
        with lock:
            if int(address[6:11]) % 100 == 7 and address not in dropped:  # 1% of messages, once each
                dropped.add(address)
                return True
        return False

    smtp_server.handler.drop_after_data = drop
    result = send_in_process(project, clock)
    assert result.complete, result.counts
    assert len(dropped) == SEVERAL // 100

    by_recipient: dict[str, list[str]] = collections.defaultdict(list)
    for item in smtp_server.handler.reports():
        message_id = message_from_bytes(item.data, policy=policy.default)["Message-ID"]
        by_recipient[item.rcpt_tos[0].lower()].append(message_id)
    assert set(by_recipient) == set(addresses(SEVERAL)), "0 lost"
    for address in dropped:
        ids = by_recipient[address]
        assert len(ids) == 2 and ids[0] == ids[1], "resent once, with the same Message-ID"
    assert all(len(ids) == 1 for a, ids in by_recipient.items() if a not in dropped)
    rows = {r["address"]: r for r in ledger_rows(project)}
    assert all(rows[a]["attempts"] == 2 and rows[a]["state"] == "sent" for a in dropped)


def test_quota_reply_pauses_the_dispatch_instead_of_failing(project: Project, smtp_server: SMTPServer) -> None:
    big_list(project, 50)
    project.use_smtp(smtp_server, connections=1)
    clock = FakeClock()
    state = {"messages": 0}

    def data(envelope: Any) -> str | None:
        state["messages"] += 1
        if state["messages"] == 20:
            return "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message"
        return None

    smtp_server.handler.data_reply = data
    result = send_in_process(project, clock, linger=timedelta(hours=2))
    assert result.complete, result.counts
    assert sum(clock.slept) >= 3600, "waited for the quota"
    assert_each_received_once(smtp_server, 50)


def _run_until(project: Project, server: SMTPServer, at_least: int) -> None:
    process = start_dispatch(project, "send", "--date", "2024-11-17", "--list", "stor", "--wait", "0")
    deadline = time.monotonic() + 90
    while len(server.handler.reports()) < at_least and time.monotonic() < deadline:
        if process.poll() is not None:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.slow  # three processes killed part-way through 2,000 recipients
def test_sigkill_at_three_points_then_rerun(project: Project, smtp_server: SMTPServer) -> None:
    big_list(project, COUNT)
    project.use_smtp(smtp_server, connections=4)
    smtp_server.handler.accept_delay = 0.004  # 4 connections: about 2 s for the whole list
    duplicates_before = 0
    for fraction in (0.25, 0.5, 0.75):
        _run_until(project, smtp_server, int(COUNT * fraction))
        received = smtp_server.handler.recipients()
        assert len(set(received)) < COUNT, "killed part-way"
        duplicates = len(received) - len(set(received))
        assert duplicates - duplicates_before <= 4, "at most one message per connection in flight"
        duplicates_before = duplicates
    final = project.run("send", "--date", "2024-11-17", "--list", "stor", "--wait", "0")
    assert final.returncode == 0, final.stderr
    received = smtp_server.handler.recipients()
    assert set(received) == set(addresses(COUNT)), "0 lost"
    assert len(received) - len(set(received)) <= 12
    assert project.status()["counts"]["sent"] == COUNT


def assert_rate_held(starts: list[datetime], began: datetime, per_minute: float, connections: int) -> None:
    """The limit, in injected time: the k-th transaction of the run starts at least k
    intervals after the run began (the relay's slots are handed out one interval apart,
    and no connection starts a transaction before its slot); and the run took no longer
    than its slots (each connection holds at most one slot it has not used yet)."""
    interval = timedelta(seconds=60 / per_minute)
    ordered = sorted(starts)
    for k, start in enumerate(ordered):
        assert start - began >= k * interval, f"transaction {k} at +{(start - began).total_seconds():g} s"
    assert ordered[-1] - began <= (len(ordered) - 1 + connections) * interval, "waited longer than the limit asks"


def test_rate_limit_and_bcc_batches(project: Project, smtp_server: SMTPServer) -> None:
    big_list(project, 200)  # Exchange's 500 per message, scaled down with the list: 10 messages either way
    project.use_smtp(smtp_server, connections=4, rate_per_minute=30, recipients_per_message=20)
    project.set_config(notify=[])  # count report messages only
    clock = FakeClock()
    smtp_server.handler.clock = clock
    began = clock.now()
    result = send_in_process(project, clock)
    assert result.complete, result.counts
    reports = smtp_server.handler.reports()
    assert len(reports) == 10
    assert all(len(r.rcpt_tos) <= 20 for r in reports)
    assert_each_received_once(smtp_server, 200)
    assert len(smtp_server.handler.mail_clock) == 10
    assert_rate_held(smtp_server.handler.mail_clock, began, 30, connections=4)  # 30/min: one message every 2 s
    message = reports[0].message
    assert message["To"].endswith(":;"), "a Bcc batch shows the list, not the recipients"
    status = project.status()
    assert status["counts"]["sent"] == 200


def test_the_plan_names_recipients_and_messages_before_sending(project: Project, smtp_server: SMTPServer) -> None:
    big_list(project, 200)
    project.use_smtp(smtp_server, connections=4, recipients_per_message=20)
    project.set_config(notify=[])
    result = project.run("send", "--date", "2024-11-17", "--list", "stor", "--wait", "0")
    assert result.returncode == 0, result.stderr
    assert "200 recipients in 10 messages" in result.stderr  # the plan, printed before sending
    assert len(smtp_server.handler.reports()) == 10


def test_rate_holds_across_connections(project: Project, smtp_server: SMTPServer) -> None:
    count = 40
    big_list(project, count)
    per_minute = 30  # Exchange Online's limit: in injected time it costs no real time
    project.use_smtp(smtp_server, connections=4, rate_per_minute=per_minute)
    project.set_config(notify=[])
    clock = FakeClock()
    smtp_server.handler.clock = clock
    began = clock.now()
    assert send_in_process(project, clock).complete
    times = smtp_server.handler.mail_clock
    assert len(times) == count
    assert_rate_held(times, began, per_minute, connections=4)


# -- TLS and credentials ------------------------------------------------------------

PASSWORD = "correct-horse-battery-staple-4711"


class AuthRecorder:
    def __init__(self) -> None:
        self.attempts = 0

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        self.attempts += 1
        return AuthResult(success=True)


def _assert_secret_nowhere(project: Project, *outputs: str) -> None:
    for output in outputs:
        assert PASSWORD not in output
    for path in (project.root / "var").glob("ledger.db*"):
        assert PASSWORD.encode() not in path.read_bytes()


def test_starttls_missing_means_no_auth_and_no_message(project: Project) -> None:
    handler, auth = RecordingHandler(), AuthRecorder()
    controller, server = start_server(handler, authenticator=auth, auth_require_tls=False)
    try:
        big_list(project, 5)
        project.use_smtp(server, security="starttls", username="rapport", password_env="DISPATCH_SMTP_PASSWORD")
        result = project.run("send", "--date", "2024-11-17", "--list", "stor", env={"DISPATCH_SMTP_PASSWORD": PASSWORD})
    finally:
        controller.stop()
    assert result.returncode == 3
    assert "does not offer STARTTLS" in result.stderr
    assert auth.attempts == 0 and handler.received == [] and handler.rcpt_log == []
    _assert_secret_nowhere(project, result.stdout, result.stderr)
    counts = project.status()["counts"]
    # The session was refused, not the recipients: they wait (deferred, with the reason), none failed.
    assert counts["pending"] + counts["deferred"] == 5 and counts["failed"] == 0, "nobody lost: waiting for the next run"
    assert all("STARTTLS" in r["reply"] and r["attempts"] == 0 for r in project.status()["recipients"])


def test_untrusted_certificate_means_no_auth_and_no_message(project: Project, tmp_path: Path) -> None:
    import trustme

    authority = trustme.CA()
    import ssl

    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_context)
    handler, auth = RecordingHandler(), AuthRecorder()
    controller, server = start_server(handler, tls_context=server_context, authenticator=auth, auth_require_tls=True)
    try:
        big_list(project, 5)
        project.use_smtp(server, security="starttls", username="rapport", password_env="DISPATCH_SMTP_PASSWORD")
        untrusted = project.run("send", "--date", "2024-11-17", "--list", "stor", env={"DISPATCH_SMTP_PASSWORD": PASSWORD})
        assert untrusted.returncode == 3
        assert "certificate" in untrusted.stderr.lower()
        assert auth.attempts == 0 and handler.received == []
        _assert_secret_nowhere(project, untrusted.stdout, untrusted.stderr)

        # The same relay with its CA configured: AUTH over TLS, and the report goes.
        ca_file = tmp_path / "ca.pem"
        authority.cert_pem.write_to_path(str(ca_file))
        project.use_smtp(server, security="starttls", username="rapport", password_env="DISPATCH_SMTP_PASSWORD", ca_file=str(ca_file))
        trusted = project.run("send", "--date", "2024-11-17", "--list", "stor", env={"DISPATCH_SMTP_PASSWORD": PASSWORD})
    finally:
        controller.stop()
    assert trusted.returncode == 0, trusted.stderr
    assert auth.attempts >= 1 and len(handler.reports()) == 5
    _assert_secret_nowhere(project, trusted.stdout, trusted.stderr)


def test_auth_without_encryption_is_refused(project: Project, smtp_server: SMTPServer) -> None:
    big_list(project, 3)
    project.use_smtp(smtp_server, security="none", username="rapport", password_env="DISPATCH_SMTP_PASSWORD")
    result = project.run("send", "--date", "2024-11-17", "--list", "stor", env={"DISPATCH_SMTP_PASSWORD": PASSWORD})
    assert result.returncode == 3
    assert "unencrypted" in result.stderr
    assert smtp_server.handler.received == []
    _assert_secret_nowhere(project, result.stdout, result.stderr)


def test_password_in_config_file_is_rejected(project: Project) -> None:
    project.set_config(transport={"kind": "smtp", "host": "127.0.0.1", "port": 2525, "password": PASSWORD})
    result = project.run("check", "--date", "2024-11-17")
    assert result.returncode == 1
    assert "config.yaml:" in result.stderr and "password_env" in result.stderr
    assert PASSWORD not in result.stderr
