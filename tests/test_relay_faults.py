"""Issue 15: never silently short. Relays that misbehave (real servers, faults injected by
tests/faultrelay.py), and a ledger that vanishes, locks or fills the disk during a send."""

from __future__ import annotations

import errno
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conftest import (
    IN_CI,
    Background,
    FakeClock,
    Project,
    RecordingHandler,
    SMTPServer,
    addresses,
    big_list,
    free_port,
    start_dispatch,
    start_server,
    start_server_on,
)
from dispatch.app.service import Service
from dispatch.config import load_settings
from faultrelay import Gate, ScriptedRelay, wait_until

STOCKHOLM = ZoneInfo("Europe/Stockholm")
COUNT = 2000


def use_relay(project: Project, host: str, port: int, **extra: Any) -> None:
    project.set_config(transport={"kind": "smtp", "host": host, "port": port, "security": "none",
                                  "connections": 2, **extra})


def send(project: Project, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return project.run("send", "--date", "2024-11-17", "--list", "stor", *extra, timeout=timeout)


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


# -- sessions refused or lost: the run carries on, or waits, and fails nobody ---------------------


@pytest.mark.slow  # 2,000 recipients
def test_a_relay_that_allows_2_sessions_gets_all_2000_through_4_connections(project: Project, smtp_server: SMTPServer) -> None:
    big_list(project, COUNT)
    gate = Gate((smtp_server.host, smtp_server.port), max_sessions=2)
    gate.listen()
    try:
        use_relay(project, gate.host, gate.port, connections=4)
        result = send(project)
    finally:
        gate.stop()
    assert result.returncode == 0, result.stderr
    assert gate.refused > 0, "the relay's limit was hit"
    received = smtp_server.handler.recipients()
    assert sorted(received) == addresses(COUNT), "everyone, once"


def _today_schedule(project: Project, now: datetime, deadline: datetime) -> None:
    """A schedule that fires every minute (so it has fired now), with the sample edition
    for today and tomorrow (a run just before midnight)."""
    project.set_config(schedules=[{"name": "daily", "cron": "* * * * *", "lists": ["stor"],
                                   "deadline": f"{deadline:%H:%M}"}])
    text = (project.root / "reports" / "2024-11-17.md").read_text(encoding="utf-8")
    for day in (now.date(), now.date() + timedelta(days=1)):
        dated = text.replace("compiled: 2024-11-17 14:00", f"compiled: {day:%Y-%m-%d} 00:00")
        (project.root / "reports" / f"{day:%Y-%m-%d}.md").write_text(dated, encoding="utf-8")


@pytest.mark.slow
def test_serve_delivers_all_2000_after_the_relay_was_down_for_5_seconds(project: Project, smtp_server: SMTPServer) -> None:
    now = datetime.now(STOCKHOLM).replace(second=0, microsecond=0)

    big_list(project, COUNT)
    _today_schedule(project, now, now + timedelta(minutes=9))
    gate = Gate((smtp_server.host, smtp_server.port))
    use_relay(project, gate.host, gate.port)
    timer = threading.Timer(5, gate.listen)  # nothing listens for the first 5 s: connections refused
    timer.start()
    service = Service(load_settings(project.config_path))
    started = time.monotonic()
    try:
        result = service.fire("daily", datetime.now(STOCKHOLM))
    finally:
        timer.cancel()
        service.close()
        gate.stop()
    took = time.monotonic() - started
    assert result is not None and result.complete, result
    assert took < 120, f"{took:.0f} s"
    assert sorted(smtp_server.handler.recipients()) == addresses(COUNT)


@pytest.mark.slow  # the sender's reconnect backoff waits in real time (1, 2, 4 ... s), not on the injected clock
def test_a_relay_down_past_the_deadline_gives_exactly_one_alert(project: Project) -> None:
    big_list(project, 20)
    handler = RecordingHandler()
    settings_port = free_port()
    use_relay(project, "127.0.0.1", settings_port)  # nothing listens there yet
    day = date(2024, 11, 17)
    project.set_config(schedules=[{"name": "daily", "cron": "0 14 * * *", "lists": ["stor"], "deadline": "14:30"}])
    clock = FakeClock(datetime(2024, 11, 17, 14, 0, tzinfo=STOCKHOLM))
    service = Service(load_settings(project.config_path), clock=clock)
    try:
        result = service.fire("daily", clock.now())
        assert result is not None and not result.complete
        assert result.counts["failed"] == 0 and result.counts["sent"] == 0
        assert clock.now() >= datetime(2024, 11, 17, 14, 30, tzinfo=STOCKHOLM), "it kept trying until the deadline"
        controller = start_server_on(handler, settings_port)  # the relay is back
        try:
            service.retry_alerts(clock.now())  # the watch job's retry, now that the relay is back
            assert service.fire("daily", clock.now() + timedelta(minutes=1)) is None  # a late fire: no second alert
            service.retry_alerts(clock.now())
        finally:
            controller.stop()
    finally:
        service.close()
    subjects = [str(m.message["Subject"]) for m in handler.notices()]
    assert subjects == [f"Utskicket {day.isoformat()}.r1.edition är ofullständigt: 20 mottagare väntar"], subjects
    assert "Connection refused" in handler.notices()[0].message.get_content()
    assert handler.reports() == []


class RefuseMail(RecordingHandler):
    """Answers MAIL FROM with 530 (a problem of the session: the relay wants AUTH) for the
    first ``refusals`` transactions, then accepts."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]) -> str:
        if self.refusals > 0:
            self.refusals -= 1
            return "530 5.7.0 Authentication required"
        return await super().handle_MAIL(server, session, envelope, address, mail_options)


@pytest.mark.slow  # two CLI sends; fast twin: test_serve_pauses_on_530_alerts_once_naming_the_reply_and_delivers_when_fixed
def test_530_at_mail_from_fails_nobody_and_the_next_run_delivers_all(project: Project) -> None:
    handler = RefuseMail(refusals=10**6)
    controller, server = start_server(handler)
    try:
        use_relay(project, server.host, server.port)
        first = project.run("send", "--date", "2024-11-17")
        assert first.returncode == 3, first.stderr
        no_traceback(first)
        assert "530 5.7.0 Authentication required" in first.stderr and "nobody has failed" in first.stderr
        counts = project.status()["counts"]
        assert counts["failed"] == 0 and counts["sent"] == 0 and counts["pending"] + counts["deferred"] == 49
        assert handler.received == []

        handler.refusals = 0  # the relay is fixed
        second = project.run("send", "--date", "2024-11-17")
        assert second.returncode == 0, second.stderr
    finally:
        controller.stop()
    assert sorted(handler.recipients()) == sorted(set(handler.recipients())) and len(handler.reports()) == 49


def test_serve_pauses_on_530_alerts_once_naming_the_reply_and_delivers_when_fixed(project: Project) -> None:
    handler = RefuseMail(refusals=3)  # the first run's session, its alert, and one retry
    controller, server = start_server(handler)
    clock = FakeClock(datetime(2024, 11, 17, 14, 0, tzinfo=STOCKHOLM))
    try:
        use_relay(project, server.host, server.port)
        service = Service(load_settings(project.config_path), clock=clock)
        try:
            result = service.fire("daily", clock.now())
            assert result is not None and result.complete, result
            assert result.counts["failed"] == 0
            service.retry_alerts(clock.now())
        finally:
            service.close()
    finally:
        controller.stop()
    assert len(handler.reports()) == 49
    alerts = [m for m in handler.notices() if "pausat" in str(m.message["Subject"])]
    assert len(alerts) == 1
    assert "530 5.7.0 Authentication required" in alerts[0].message.get_content()


# -- replies not to be trusted: nothing recorded as sent that the server did not take --------------


@pytest.mark.parametrize("fault", ["data-250", pytest.param("greet-twice", marks=pytest.mark.slow)])  # one of each kind fast
def test_a_relay_that_does_not_take_the_message_records_nobody_as_sent(fault: str, project: Project, smtp_server: SMTPServer) -> None:
    big_list(project, 10)
    if fault == "greet-twice":
        relay: Any = Gate((smtp_server.host, smtp_server.port), greet_twice=True)
        relay.listen()
    else:
        relay = ScriptedRelay(fault=fault)
    try:
        use_relay(project, relay.host, relay.port)
        result = send(project, "--wait", "0")
    finally:
        relay.stop()
    assert result.returncode == 3, result.stderr
    no_traceback(result)
    received = smtp_server.handler.received if fault == "greet-twice" else relay.received
    assert received == [], "the server received no message"
    counts = project.status()["counts"]
    assert counts["sent"] == 0 and counts["failed"] == 0, counts


@pytest.mark.parametrize("fault", ["mixed-after-dot", pytest.param("600-after-dot", marks=pytest.mark.slow)])
def test_an_untrustworthy_reply_after_the_dot_is_unknown_and_resent_with_the_same_message_id(
        fault: str, project: Project, smtp_server: SMTPServer) -> None:
    big_list(project, 10)
    relay = ScriptedRelay(fault=fault)
    try:
        use_relay(project, relay.host, relay.port)
        first = send(project, "--wait", "0")
    finally:
        relay.stop()
    assert first.returncode == 3, first.stderr
    no_traceback(first)
    status = project.status()
    assert status["counts"]["sent"] == 0 and status["counts"]["unknown"] > 0, status["counts"]
    unknown_ids = {r["message_id"] for r in status["recipients"] if r["state"] == "unknown"}
    assert unknown_ids <= {m.message_id for m in relay.received}, "the server did receive those"

    use_relay(project, smtp_server.host, smtp_server.port)
    second = send(project)
    assert second.returncode == 0, second.stderr
    resent = {m.message["Message-ID"] for m in smtp_server.handler.reports()}
    assert unknown_ids <= resent, "resent with the same Message-ID"
    assert project.status()["counts"]["sent"] == 10


@pytest.mark.slow  # waits out a real 2 s reply deadline (the relay drips its greeting)
def test_a_server_that_drips_a_byte_a_second_cannot_hold_a_send(project: Project) -> None:
    big_list(project, 10)
    relay = ScriptedRelay(fault="drip")
    try:
        use_relay(project, relay.host, relay.port, timeout_seconds=2)  # the greeting alone would take 29 s
        started = time.monotonic()
        result = send(project, "--wait", "0", timeout=60)
        took = time.monotonic() - started
    finally:
        relay.stop()
    assert result.returncode == 3, result.stderr
    assert took < 20, f"{took:.1f} s"
    assert "no complete reply within 2 s" in result.stderr
    counts = project.status()["counts"]
    assert counts["sent"] == 0 and counts["failed"] == 0 and counts["deferred"] > 0, counts


# -- the ledger is the ledger ------------------------------------------------------------------------


def _slow_accept(server: SMTPServer, seconds: float = 0.004) -> None:
    server.handler.accept_delay = seconds  # keep the send going long enough to be hit part-way


def _start_send(project: Project) -> Background:
    return start_dispatch(project, "send", "--date", "2024-11-17", "--list", "stor")


@pytest.mark.slow  # a send process hit part-way; fast twin: test_ledger_faults.py
def test_a_ledger_deleted_mid_send_stops_the_send_and_a_rerun_does_not_start_afresh(project: Project, smtp_server: SMTPServer) -> None:
    count = 400  # what matters is a send under way, not its size
    big_list(project, count)
    use_relay(project, smtp_server.host, smtp_server.port)
    _slow_accept(smtp_server, 0.01)  # 2 connections: about 2 s in all
    process = _start_send(project)
    wait_until(lambda: len(smtp_server.handler.received) >= count // 4, 60, "a quarter sent")
    (project.root / "var" / "ledger.db").unlink()
    _, stderr = process.communicate(timeout=60)
    before = len(smtp_server.handler.received)
    assert process.returncode == 3, stderr
    assert "was deleted while in use" in stderr and "Traceback" not in stderr
    assert before < count, "it stopped"

    rerun = send(project)
    assert rerun.returncode == 3, rerun.stderr  # not an input problem: recipients are left, and say so
    assert "does not exist any more" in rerun.stderr and "--new-ledger" in rerun.stderr
    assert len(smtp_server.handler.received) == before, "nobody was sent to again"


@pytest.mark.slow
def test_a_locked_ledger_stops_the_send_cleanly_and_the_rerun_delivers_the_rest(project: Project, smtp_server: SMTPServer) -> None:
    big_list(project, COUNT)
    connections = 2
    use_relay(project, smtp_server.host, smtp_server.port, connections=connections)
    # The operator's lock wait (default 30 s), shortened so the test waits 3 s for it.
    project.set_config(ledger="sqlite:///var/ledger.db?timeout=3")
    _slow_accept(smtp_server)
    process = _start_send(project)
    wait_until(lambda: len(smtp_server.handler.received) >= COUNT // 4, 60, "a quarter sent")
    lock = sqlite3.connect(project.root / "var" / "ledger.db", timeout=60, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another program holds the ledger for longer than the busy timeout
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert process.returncode == 3, stderr
    assert "database is locked" in stderr and "Traceback" not in stderr
    _assert_rerun_completes(project, smtp_server, connections)


def _assert_rerun_completes(project: Project, smtp_server: SMTPServer, connections: int) -> None:
    rerun = send(project)
    assert rerun.returncode == 0, rerun.stderr
    received = smtp_server.handler.recipients()
    assert set(received) == set(addresses(COUNT)), "0 lost"
    assert len(received) - COUNT <= connections, f"{len(received) - COUNT} duplicates"


@pytest.mark.slow  # a process killed part-way through 2,000 recipients
def test_a_corrupted_ledger_is_one_clear_line_and_after_restoring_it_the_send_completes(
        project: Project, smtp_server: SMTPServer) -> None:
    big_list(project, COUNT)
    connections = 2
    use_relay(project, smtp_server.host, smtp_server.port, connections=connections)
    _slow_accept(smtp_server)
    process = _start_send(project)
    wait_until(lambda: len(smtp_server.handler.received) >= COUNT // 4, 60, "a quarter sent")
    process.send_signal(signal.SIGKILL)  # interrupted; then the ledger file is damaged
    process.communicate(timeout=30)
    var = project.root / "var"
    backup = project.root / "backup"
    backup.mkdir()
    for path in var.glob("ledger.db*"):
        shutil.copy2(path, backup / path.name)
    for path in var.glob("ledger.db*"):  # the file and its write-ahead log, damaged throughout
        size = path.stat().st_size
        path.write_bytes((b"this is not a ledger any more " * (size // 30 + 1))[:size])

    before = len(smtp_server.handler.received)
    for args in (("send", "--date", "2024-11-17", "--list", "stor"), ("status",), ("history",)):
        result = project.run(*args)
        no_traceback(result)
        assert result.returncode in (1, 3), result.stderr
        assert "ledger" in result.stderr and len(result.stderr.strip().splitlines()) <= 3, result.stderr
    assert len(smtp_server.handler.received) == before, "nothing sent with a ledger that cannot be read"

    for path in backup.iterdir():  # the fault is removed: the ledger restored
        shutil.copy2(path, var / path.name)
    _assert_rerun_completes(project, smtp_server, connections)


@pytest.fixture
def small_disk(project: Project) -> Any:
    """project/var on a 16 MB tmpfs (the ledger lives there); needs root to mount."""
    var = project.root / "var"
    var.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(var)], capture_output=True, text=True)
    if mounted.returncode != 0:
        message = f"cannot mount a tmpfs for the full-disk test: {mounted.stderr.strip()}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield var
    finally:
        subprocess.run(["umount", "-l", str(var)], check=False)


@pytest.mark.slow
def test_a_full_disk_stops_the_send_cleanly_and_the_rerun_delivers_the_rest(
        project: Project, smtp_server: SMTPServer, small_disk: Path) -> None:
    big_list(project, COUNT)
    connections = 2
    use_relay(project, smtp_server.host, smtp_server.port, connections=connections)
    project.set_config(publish={"dir": "intranet", "on_send": False})
    _slow_accept(smtp_server)
    process = _start_send(project)
    wait_until(lambda: len(smtp_server.handler.received) >= COUNT // 4, 60, "a quarter sent")
    filler = small_disk / "filler"
    try:
        # Unbuffered: a write that fails leaves nothing for close() to flush (and fail on) again.
        handle = open(filler, "wb", buffering=0)  # noqa: SIM115 - the disk may be full before it can be created
    except OSError as exc:
        # On a loaded machine the send's own write-ahead log (its checkpoints starved by the
        # sending threads' reads) can fill the 16 MB first: the same fault, already there.
        if exc.errno != errno.ENOSPC:
            raise
    else:
        with handle:  # the disk fills up under the running send
            try:
                while True:
                    handle.write(b"\0" * 65536)
            except OSError:
                pass
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 3, stderr
    assert "Traceback" not in stderr and "ledger" in stderr
    filler.unlink(missing_ok=True)  # the fault is removed (the log goes with the process that wrote it)
    _assert_rerun_completes(project, smtp_server, connections)


# -- a person's retry, long names, echoed credentials ----------------------------------------------


def test_retry_failed_sends_again_to_the_failed_recipients_after_a_fix(project: Project, smtp_server: SMTPServer) -> None:
    big_list(project, 20)
    use_relay(project, smtp_server.host, smtp_server.port)
    refused = set(addresses(20)[:5])
    smtp_server.handler.rcpt_reply = lambda address: "550 5.1.1 Mailbox unavailable" if address in refused else None
    first = send(project)
    assert first.returncode == 3, first.stderr
    assert project.status()["counts"]["failed"] == 5

    smtp_server.handler.rcpt_reply = None  # the mailboxes were fixed
    again = project.run("send", "--retry-failed", "2024-11-17.r1.edition", "--list", "stor")
    assert again.returncode == 0, again.stderr
    assert "5 failed recipient(s) queued again" in again.stderr
    assert sorted(smtp_server.handler.recipients()) == addresses(20), "each once"
    assert project.status()["counts"] == {"pending": 0, "sent": 20, "deferred": 0, "unknown": 0, "failed": 0, "bounced": 0}


def test_a_bcc_batch_to_line_stays_within_998_octets_whatever_the_list_names(project: Project, smtp_server: SMTPServer) -> None:
    members = "\n".join(f"  - {{email: {a}}}" for a in addresses(30))
    (project.root / "recipients" / "lang.yaml").write_text(
        f"name: \"{'Mycket långt listnamn för regionens chefer ' * 40}\"\nmembers:\n{members}\n", encoding="utf-8")
    use_relay(project, smtp_server.host, smtp_server.port, recipients_per_message=10)
    result = project.run("send", "--date", "2024-11-17", "--list", "lang")
    assert result.returncode == 0, result.stderr
    reports = smtp_server.handler.reports()
    assert len(reports) == 3
    for report in reports:
        head = report.data.split(b"\r\n\r\n", 1)[0]
        assert all(len(line) <= 998 for line in head.split(b"\r\n")), "every header line within 998 octets"


def test_credentials_echoed_in_a_refusal_are_never_shown() -> None:
    from dispatch.delivery.transport import explain_auth_reply, reply_text

    echoed = explain_auth_reply(535, b"5.7.8 Error: authentication failed: AUTH PLAIN AHJhcHBvcnQAaGVtbGlndDEyMw==")
    assert "AHJhcHBvcnQAaGVtbGlndDEyMw==" not in echoed and "535 5.7.8" in echoed
    assert "cmFwcG9ydA" not in reply_text(501, "5.5.2 AUTH LOGIN cmFwcG9ydA== not understood")
    assert reply_text(554, "5.2.0 SubmissionQuotaExceededException") == "554 5.2.0 SubmissionQuotaExceededException"
