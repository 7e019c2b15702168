"""Issue 30, point 10: a full intranet disk never stops the email.

The publish directory is a real file system that is full: a 256 KiB tmpfs mounted by the
test and filled with one file until the kernel says ENOSPC. Mounting needs root (CI runs
as root); elsewhere these tests are skipped, saying so. Freeing the space is deleting that
file; the service's next retry writes the page.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from conftest import STOCKHOLM, FakeClock, Project, ServeProcess, SMTPServer, set_schedule, write_edition
from dispatch.app.service import Service
from dispatch.config import load_settings

DAY = date(2024, 11, 17)
RECIPIENTS = 49
INTRANET_ALERT = "Intranätskopian av rapporten för {day} kunde inte skrivas"


@dataclass
class FullDisk:
    directory: Path
    filler: Path

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[FullDisk]:
    if os.geteuid() != 0:
        pytest.skip("a full file system is a small tmpfs mounted by the test, which needs root (CI runs as root)")
    directory = tmp_path / "intranet"
    directory.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(directory)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        filler = directory / "filler"
        with open(filler, "wb", buffering=0) as out:  # unbuffered: nothing left to fail on close
            try:
                while True:
                    out.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        yield FullDisk(directory, filler)
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def intranet_alerts(server: SMTPServer, day: date) -> list[str]:
    subjects = [str(m.message["Subject"]) for m in server.handler.notices()]
    return [s for s in subjects if s == INTRANET_ALERT.format(day=day.isoformat())]


def test_service_sends_alerts_once_and_writes_the_copy_when_there_is_room(
        project: Project, smtp_server: SMTPServer, full_disk: FullDisk) -> None:
    project.use_smtp(smtp_server)
    project.set_config(publish__dir=str(full_disk.directory))
    now = datetime(2024, 11, 17, 14, 0, tzinfo=STOCKHOLM)
    service = Service(load_settings(project.config_path), clock=FakeClock(now))
    try:
        result = service.fire("daily", now)
        assert result is not None and result.complete
        assert len(set(smtp_server.handler.recipients())) == RECIPIENTS
        assert any("intranet copy was not written" in e and "No space left on device" in e for e in result.errors)
        assert service.copies.days() == [DAY]
        assert intranet_alerts(smtp_server, DAY) == [INTRANET_ALERT.format(day=DAY.isoformat())]

        assert service.copies.retry(service.settings, service.ledger, now + timedelta(seconds=5)) == []  # still full
        full_disk.free()
        written = service.copies.retry(service.settings, service.ledger, now + timedelta(seconds=10))
        assert [p.page for p in written] == [full_disk.directory / "2024-11-17.html"]
        assert "2024-11-17.html" in (full_disk.directory / "index.html").read_text(encoding="utf-8")
        assert service.copies.days() == []
        assert len(intranet_alerts(smtp_server, DAY)) == 1
    finally:
        service.close()


@pytest.mark.slow
def test_send_command_delivers_everyone_with_the_publish_directory_full(
        project: Project, smtp_server: SMTPServer, full_disk: FullDisk) -> None:
    project.use_smtp(smtp_server)
    project.set_config(publish__dir=str(full_disk.directory))
    done = project.run("send", "--date", DAY.isoformat())
    assert done.returncode == 0, done.stderr
    assert "error: the intranet copy was not written" in done.stderr and "No space left on device" in done.stderr
    assert f"dispatch publish --date {DAY.isoformat()}" in done.stderr
    assert len(set(smtp_server.handler.recipients())) == RECIPIENTS
    full_disk.free()
    published = project.run("publish", "--date", DAY.isoformat())
    assert published.returncode == 0, published.stderr
    assert (full_disk.directory / "2024-11-17.html").is_file()


@pytest.mark.slow
def test_serve_with_the_publish_directory_full_mails_everyone_alerts_once_and_publishes_on_retry(
        project: Project, smtp_server: SMTPServer, full_disk: FullDisk) -> None:
    """Acceptance 10, with a real `serve`: its slot passed two minutes ago (deadline in an
    hour), so it sends at start-up; the watch job (every second, with a 4 s lease) retries
    the copy until the space is freed."""
    project.use_smtp(smtp_server)
    slot = datetime.now(STOCKHOLM).replace(second=0, microsecond=0) - timedelta(minutes=2)
    deadline = slot + timedelta(hours=1)
    set_schedule(project, cron=f"{slot.minute} {slot.hour} * * *", deadline=f"{deadline:%H:%M}", approval_deadline=None)
    project.set_config(publish__dir=str(full_disk.directory), lease_seconds=4)
    write_edition(project, slot.date())
    serve = ServeProcess(project, "--log-json")
    try:
        serve.wait_for(lambda: serve.logged("sent"), 60, "the send")
        assert len(set(smtp_server.handler.recipients())) == RECIPIENTS
        serve.wait_for(lambda: len(intranet_alerts(smtp_server, slot.date())) == 1, 30, "the alert")
        page = full_disk.directory / f"{slot.date().isoformat()}.html"
        assert not page.exists()

        full_disk.free()
        serve.wait_for(page.exists, 30, "the page, written by a retry")
        serve.wait_for(lambda: serve.logged("published"), 30, "the published event")
        events = [json.loads(line) for line in list(serve.lines)]
        assert [e["event"] for e in events].count("publish_failed") == 1
        assert [e.get("retried") for e in events if e["event"] == "published"] == [True]
        assert len(intranet_alerts(smtp_server, slot.date())) == 1
        code, _ = serve.stop()
        assert code == 0, serve.log()
    finally:
        serve.kill()
