"""Issue 14: editions under change control. What was approved is what goes out; sent content
is final; urgent messages are identified by their content; a stopped send says so."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conftest import ROOT, FakeClock, Project, SMTPServer, addresses, big_list, body_text, open_ledger, start_dispatch
from dispatch.app.eventlog import EventFormatter
from dispatch.app.service import Service
from dispatch.config import load_settings

STOCKHOLM = ZoneInfo("Europe/Stockholm")
DAY = date(2024, 11, 17)
SAMPLE = ROOT / "reports" / "2024-11-17.md"
SAMPLE_RECIPIENTS = 49
CHEFER = 40


def run_ok(project: Project, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = project.run(*args)
    assert result.returncode == code, f"{args}: exit {result.returncode}\n{result.stderr}"
    return result


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def history(project: Project) -> list[dict[str, Any]]:
    return dispatches_in(run_ok(project, "history", "--json").stdout)


def dispatches_in(history_json: str) -> list[dict[str, Any]]:
    dispatches = json.loads(history_json)["dispatches"]
    assert isinstance(dispatches, list), history_json
    return dispatches


# -- 1. urgent messages are identified by their content ------------------------------------------

URGENT_FIRST = """---
subject: Ambulansdirigering vid SÄS
lists: [chefer]
---

Ambulanser till SÄS dirigeras om till NÄL från klockan 16:00.
"""

URGENT_SECOND = """---
subject: Ny information om ambulansdirigering vid SÄS
lists: [chefer]
---

Omdirigeringen av ambulanser till NÄL upphör klockan 20:00; SÄS tar emot ambulanser igen.
"""


@pytest.mark.slow  # several CLI runs; fast twin: test_urgent_files_can_be_checked_and_previewed
def test_a_changed_urgent_file_is_a_new_dispatch_and_unchanged_it_sends_nothing(project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    path = project.root / "bradskande-ambulans.md"
    path.write_text(URGENT_FIRST, encoding="utf-8")
    first = run_ok(project, "send", "--urgent", "--file", str(path))
    assert len(smtp_server.handler.reports()) == CHEFER

    path.write_text(URGENT_SECOND, encoding="utf-8")
    second = run_ok(project, "send", "--urgent", "--file", str(path))
    reports = smtp_server.handler.reports()
    assert len(reports) == 2 * CHEFER, "40 more messages, with the new content"
    newer = reports[CHEFER:]
    assert {str(m.message["Subject"]) for m in newer} == {"BRÅDSKANDE: Ny information om ambulansdirigering vid SÄS"}
    assert all("upphör klockan 20:00" in body_text(m.message) for m in newer)
    assert len({r for m in newer for r in m.rcpt_tos}) == CHEFER
    assert "this is a new urgent dispatch" in second.stderr
    dispatches = [d for d in history(project) if d["kind"].startswith("urgent")]
    assert len(dispatches) == 2 and dispatches[0]["dispatch"] != dispatches[1]["dispatch"]
    assert dispatches[1]["dispatch"] in second.stderr and dispatches[0]["dispatch"] in first.stderr
    assert dispatches[0]["content_hash"] != dispatches[1]["content_hash"]
    assert [d["counts"]["sent"] for d in dispatches] == [CHEFER, CHEFER]
    assert project.status()["subject"] == "BRÅDSKANDE: Ny information om ambulansdirigering vid SÄS"

    third = run_ok(project, "send", "--urgent", "--file", str(path))
    assert len(smtp_server.handler.reports()) == 2 * CHEFER, "the same content again: nothing"
    assert "everyone already has this message" in third.stderr
    assert len([d for d in history(project) if d["kind"].startswith("urgent")]) == 2


def test_urgent_files_can_be_checked_and_previewed(project: Project) -> None:
    sample = project.root / "reports" / "urgent" / "sas-akutmottagning.md"
    checked = run_ok(project, "check", "--urgent", "--file", str(sample))
    assert "urgent message" in checked.stderr
    preview = run_ok(project, "preview", "--urgent", "--file", str(sample), "--out", str(project.root / "out"))
    eml = Path(preview.stdout.split()[-1])
    assert eml.suffix == ".eml" and b"\r\nImportance: High\r\n" in eml.read_bytes()
    html = Path(preview.stdout.split()[0]).read_text(encoding="utf-8")
    assert "akutmottagning i Borås" in html

    broken = project.root / "broken.md"
    broken.write_text("---\nlists: [chefer]\n---\n\nText utan ämne.\n", encoding="utf-8")
    failed = project.run("check", "--urgent", "--file", str(broken))
    assert failed.returncode == 1 and "broken.md:2: an urgent message needs a 'subject'" in failed.stderr


# -- 2. sent content is final ----------------------------------------------------------------------


@pytest.mark.slow  # several CLI runs; fast twin: test_publish_after_sending_builds_the_page_from_what_was_sent_not_from_a_newer_revision
def test_an_edit_after_sending_is_refused_with_a_diff_and_the_intranet_keeps_what_was_sent(
        project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    run_ok(project, "send", "--date", "2024-11-17")
    assert len(smtp_server.handler.reports()) == SAMPLE_RECIPIENTS
    page = project.root / "var" / "intranet" / "2024-11-17.html"
    published = page.read_bytes()

    edition = project.root / "reports" / "2024-11-17.md"
    edit(edition, "Prognos är att vidtagna", "Bedömningen är att vidtagna")
    for args, code in ((("check",), 1), (("send", "--dry-run"), 1), (("send",), 1), (("publish",), 1)):
        result = project.run(*args, "--date", "2024-11-17")
        assert result.returncode == code, f"{args}: {result.stderr}"
        err = result.stderr
        assert "reports/2024-11-17.md:" in err and "already sent to 49 recipient(s)" in err, args
        assert "set 'revision: 2' and 'correction: <what changed>'" in err, args
        assert "--- 2024-11-17.r1.edition (as sent)" in err and "+++ reports/2024-11-17.md" in err, args
        assert "-- Omdirigering från SÄS till övriga sjukhus fortsätter som tidigare. Prognos" in err, args
        assert "+- Omdirigering från SÄS till övriga sjukhus fortsätter som tidigare. Bedömningen" in err, args
    assert len(smtp_server.handler.reports()) == SAMPLE_RECIPIENTS, "nothing sent"
    assert page.read_bytes() == published, "the intranet page is the one published at send time"

    # The way forward the message names: a correction, to everyone, and then on the intranet.
    edit(edition, "status: approved", "status: approved\nrevision: 2\ncorrection: Prognosen är en bedömning.")
    run_ok(project, "send", "--date", "2024-11-17")
    corrections = smtp_server.handler.reports()[SAMPLE_RECIPIENTS:]
    assert len(corrections) == SAMPLE_RECIPIENTS
    assert str(corrections[0].message["Subject"]).startswith("Rättelse: ")
    assert "Bedömningen är att" in page.read_text(encoding="utf-8")


def test_publish_after_sending_builds_the_page_from_what_was_sent_not_from_a_newer_revision(project: Project) -> None:
    run_ok(project, "send", "--date", "2024-11-17")  # Maildir: the sample's quick start
    edition = project.root / "reports" / "2024-11-17.md"
    edit(edition, "status: approved", "status: approved\nrevision: 2\ncorrection: Ny prognos.")
    edit(edition, "Prognos är att vidtagna", "Ny prognos: vidtagna")
    result = run_ok(project, "publish", "--date", "2024-11-17")
    assert "revision 1 is what was sent" in result.stderr
    page = (project.root / "var" / "intranet" / "2024-11-17.html").read_text(encoding="utf-8")
    assert "Prognos är att vidtagna" in page and "Ny prognos: vidtagna" not in page


@pytest.mark.slow  # several CLI runs; fast twin: test_publish_after_sending_builds_the_page_from_what_was_sent_not_from_a_newer_revision
def test_a_config_change_after_sending_is_named_even_when_the_file_is_unchanged(project: Project) -> None:
    run_ok(project, "send", "--date", "2024-11-17")
    config = project.config_path.read_text(encoding="utf-8")
    project.config_path.write_text(config.replace("Håkan Sandahl, regiondirektör", "Håkan Sandahl, tf regiondirektör"),
                                   encoding="utf-8")
    checked = run_ok(project, "check", "--date", "2024-11-17")
    assert "but the standing sections (report.standing_sections in the config) changed since" in checked.stderr
    refused = project.run("send", "--date", "2024-11-17")
    assert refused.returncode == 1
    assert "the file is unchanged, but the standing sections (report.standing_sections in the config) changed" in refused.stderr
    status = run_ok(project, "status", "2024-11-17").stdout
    assert "unchanged; the config's standing sections or templates have changed since" in status
    # The intranet shows what was sent, not the new config.
    run_ok(project, "publish", "--date", "2024-11-17")
    page = (project.root / "var" / "intranet" / "2024-11-17.html").read_text(encoding="utf-8")
    assert "Håkan Sandahl, regiondirektör" in page and "tf regiondirektör" not in page


# -- 3. approval is a recorded act, bound to content (four eyes) -----------------------------------


def local(hm: str) -> datetime:
    hour, minute = (int(x) for x in hm.split(":"))
    return datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=STOCKHOLM)


@pytest.mark.slow  # several CLI runs; fast twin: test_changing_by_does_not_let_the_editor_approve_their_own_text
def test_four_eyes_an_approval_is_void_after_an_edit_and_the_editor_cannot_approve(project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    project.set_config(approval="four_eyes")
    edition = project.root / "reports" / "2024-11-17.md"
    edit(edition, "status: approved", "status: draft\nby: Erik Editor")

    not_yet = run_ok(project, "check", "--date", "2024-11-17")
    assert "NOT ready to send: not approved yet" in not_yet.stderr
    refused = project.run("send", "--date", "2024-11-17")
    assert refused.returncode == 1 and "not approved yet" in refused.stderr
    run_ok(project, "approve", "--date", "2024-11-17", "--by", "Anna Approver")

    edit(edition, "Prognos är att vidtagna", "Bedömningen är att vidtagna")
    check = run_ok(project, "check", "--date", "2024-11-17")
    assert "changed after approval by Anna Approver" in check.stderr
    status_line = [line for line in check.stderr.splitlines() if "NOT ready to send" in line]
    assert status_line, check.stderr

    keeper = Service(load_settings(project.config_path), clock=FakeClock(local("14:00")))
    try:
        with_log = _capture("dispatch.serve")
        assert keeper.fire("daily", local("14:00")) is None
        assert smtp_server.handler.reports() == [], "serve sends nothing at the slot"
        alerts = [m for m in smtp_server.handler.notices()]
        assert len(alerts) == 1
        body = alerts[0].message.get_content()
        assert "ändrades efter godkännandet av Anna Approver" in body
        assert "automatiskt om den godkänns före tidsgränsen 18:00" in body
        assert any("changed after approval by Anna Approver" in line for line in with_log.lines)

        self_approval = project.run("approve", "--date", "2024-11-17", "--by", "erik editor")
        assert self_approval.returncode == 1
        assert ("reports/2024-11-17.md:4: erik editor wrote this content (its last editor) and cannot also approve it"
                in self_approval.stderr)

        assert keeper.approved_late(local("14:03")) == [], "still held: nothing approved since"
        run_ok(project, "approve", "--date", "2024-11-17", "--by", "Bertil Approver")
        assert keeper.approved_late(local("14:05")) == ["daily"], "the watch starts the held send"
        result = keeper.fire("daily", local("14:05"))  # the next run, as the watch starts it
        assert result is not None and result.complete
        assert len(smtp_server.handler.reports()) == SAMPLE_RECIPIENTS
        assert "Bedömningen är att" in body_text(smtp_server.handler.reports()[0].message)
    finally:
        keeper.close()
        logging.getLogger("dispatch.serve").removeHandler(with_log)

    entries = history(project)
    assert len(entries) == 1
    checked_hash = run_ok(project, "status", "2024-11-17", "--json").stdout
    assert entries[0]["approved_by"] == "Bertil Approver"
    assert entries[0]["content_hash"] == json.loads(checked_hash)["content_hash"]
    assert len(entries[0]["content_hash"]) == 64
    # The hash is that of the file as it is (a check tomorrow gives the same).
    assert entries[0]["content_hash"][:12] in run_ok(project, "check", "--date", "2024-11-17").stderr


def test_revoking_an_approval_stops_the_edition(project: Project) -> None:
    project.set_config(approval="four_eyes")
    edit(project.root / "reports" / "2024-11-17.md", "status: approved", "status: approved\nby: Erik")
    run_ok(project, "approve", "--date", "2024-11-17", "--by", "Anna")
    run_ok(project, "approve", "--date", "2024-11-17", "--by", "Anna", "--revoke")
    refused = project.run("send", "--date", "2024-11-17")
    assert refused.returncode == 1 and "was revoked by Anna" in refused.stderr
    assert not (project.root / "var" / "outbox" / "new").exists() or not any((project.root / "var" / "outbox" / "new").iterdir())
    nothing = project.run("approve", "--date", "2024-11-17", "--revoke")
    assert nothing.returncode == 1 and "no standing approval" in nothing.stderr


class _capture(logging.Handler):
    """The service's event lines, formatted as the log shows them."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(EventFormatter(zone=STOCKHOLM))
        logger = logging.getLogger(name)
        logger.addHandler(self)
        logger.setLevel(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


# -- 4. Ctrl-C stops a send --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_rate_limited_send_within_2_s_and_the_rerun_completes_it(
        sig: signal.Signals, project: Project, smtp_server: SMTPServer) -> None:
    count = 500
    big_list(project, count)
    project.use_smtp(smtp_server, connections=2, rate_per_minute=2400)  # 40/s: 12.5 s in all
    process = start_dispatch(project, "send", "--date", "2024-11-17", "--list", "stor")
    deadline = time.monotonic() + 60
    while len(smtp_server.handler.received) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(sig)
    signalled = time.monotonic()
    _, stderr = process.communicate(timeout=30)
    took = time.monotonic() - signalled
    assert process.returncode == 128 + sig, stderr
    assert took < 2, f"exited {took:.1f} s after the signal"
    before = len(smtp_server.handler.reports())
    assert 0 < before < count, "the signal landed part-way"
    assert f"stopped: {before} sent now, {count - before} left; run the same command to resume" in stderr
    assert project.status()["counts"]["sent"] == before, "every message the server accepted is recorded"

    project.use_smtp(smtp_server, connections=2)  # the rerun need not wait for the rate
    run_ok(project, "send", "--date", "2024-11-17", "--list", "stor")
    received = smtp_server.handler.recipients()
    assert len(received) == count and set(received) == set(addresses(count))


# -- 5. editor mistakes that only the edition's front matter shows ------------------------------


@pytest.mark.parametrize("old,new,line,phrase", [
    ("compiled: 2024-11-17 14:00", "compiled: 2024-11-18 13:00", 2,
     "'compiled' is 2024-11-18 13:00, but this is the edition of 2024-11-17"),
    ("status: approved", "status: approved\nrevision: 2", 4, "revision 2 is a correction: add 'correction: what changed'"),
], ids=["compiled on another day", "revision without correction"])
def test_front_matter_mistakes_are_found_at_their_line_and_nothing_is_sent(
        old: str, new: str, line: int, phrase: str, project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    edit(project.root / "reports" / "2024-11-17.md", old, new)
    checked = project.run("check", "--date", "2024-11-17")
    assert checked.returncode == 1 and f"reports/2024-11-17.md:{line}: {phrase}" in checked.stderr
    sent = project.run("send", "--date", "2024-11-17")
    assert sent.returncode == 1 and smtp_server.handler.received == []


# -- 6. finding past dispatches; a dry run that exits as the send would --------------------------


@pytest.mark.slow  # several CLI runs; fast twin: test_revoking_an_approval_stops_the_edition
def test_history_status_and_export_by_date(project: Project) -> None:
    run_ok(project, "send", "--date", "2024-11-17")
    run_ok(project, "send", "--date", "2024-11-17", "--to", "test@example.org")
    entries = history(project)
    assert [(e["kind"][:4], e["edition"], e["revision"]) for e in entries] == [("edit", "2024-11-17", 1), ("test", "2024-11-17", 1)]
    first = entries[0]
    assert first["counts"]["sent"] == SAMPLE_RECIPIENTS and first["started_at"] and first["finished_at"]
    assert first["approved_by"] == "status: approved (front matter)" and len(first["content_hash"]) == 64
    text = run_ok(project, "history").stdout
    assert first["dispatch"] in text and first["content_hash"][:12] in text and first["content_hash"] not in text
    assert "  finished 20" in text, "a finished dispatch says when it finished"
    assert "finished not finished" not in text
    assert history_since(project, "2024-11-18") == []

    by_date = project.status("2024-11-17")
    assert by_date["dispatch"] == first["dispatch"], "a date names its latest real dispatch, not a test"
    assert by_date["content_hash"] == first["content_hash"]
    status_text = run_ok(project, "status", "2024-11-17").stdout
    assert f"content {first['content_hash'][:12]}" in status_text and "+0100" in status_text
    exported = json.loads(run_ok(project, "export", "2024-11-17").stdout)
    assert exported["dispatch"] == first["dispatch"] and exported["content_hash"] == first["content_hash"]

    for command in ("status", "export"):
        unknown = project.run(command, "2024-11-18")
        assert unknown.returncode == 1 and "no dispatch '2024-11-18'" in unknown.stderr


def history_since(project: Project, day: str) -> list[dict[str, Any]]:
    return dispatches_in(run_ok(project, "history", "--since", day, "--json").stdout)


def test_dry_run_exits_as_the_send_would_and_lists_what_else_it_does(project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    chefer = project.root / "recipients" / "chefer.csv"
    chefer.write_text(chefer.read_text(encoding="utf-8") + "inte-en-adress,Fel Adress\n", encoding="utf-8")
    dry = project.run("send", "--date", "2024-11-17", "--dry-run")
    assert dry.returncode == 3, dry.stderr
    assert "would publish" in dry.stderr and "would mail a completion summary to kommunikation@example.org" in dry.stderr
    assert "would record 1 invalid list entry as failed" in dry.stderr
    assert smtp_server.handler.received == []
    real = project.run("send", "--date", "2024-11-17")
    assert real.returncode == 3, real.stderr
    assert len(smtp_server.handler.reports()) == SAMPLE_RECIPIENTS


# -- one clock in what people read -------------------------------------------------------------------


def test_log_lines_and_mail_dates_carry_the_configured_zone(project: Project, smtp_server: SMTPServer) -> None:
    record = logging.LogRecord("dispatch.serve", logging.INFO, __file__, 1, "sent", None, None)
    record.created = datetime(2024, 11, 17, 13, 0, tzinfo=UTC).timestamp()
    line = EventFormatter(zone=STOCKHOLM).format(record)
    assert line.startswith("2024-11-17T14:00:00.000+01:00 ")

    project.use_smtp(smtp_server)
    run_ok(project, "send", "--date", "2024-11-17")
    offset = datetime.now(STOCKHOLM).strftime("%z")
    summary = smtp_server.handler.notices()[0].message
    assert str(summary["Date"]).endswith(offset), summary["Date"]
    assert str(smtp_server.handler.reports()[0].message["Date"]).endswith(offset)


# -- what the first walk through found (a fresh clone, used as its users would) -------------------


@pytest.mark.slow  # several CLI runs; fast twin: test_dry_run_exits_as_the_send_would_and_lists_what_else_it_does
def test_a_dry_run_names_exactly_whom_the_send_would_reach(project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    run_ok(project, "send", "--date", "2024-11-17", "--list", "politisk-ledning")  # 11
    dry = run_ok(project, "send", "--date", "2024-11-17", "--dry-run")  # both lists: 38 more
    assert "to 38 recipient(s) (politisk-ledning, chefer) who do not have it yet; 11 already do" in dry.stderr
    run_ok(project, "send", "--date", "2024-11-17")
    assert len(smtp_server.handler.reports()) == SAMPLE_RECIPIENTS
    again = run_ok(project, "send", "--date", "2024-11-17", "--dry-run")
    assert "everyone already has it" in again.stderr


def test_a_correction_goes_to_the_lists_the_mistake_went_to(project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    run_ok(project, "send", "--date", "2024-11-17", "--list", "politisk-ledning")
    edition = project.root / "reports" / "2024-11-17.md"
    edit(edition, "status: approved", "status: approved\nrevision: 2\ncorrection: Fel datum i första punkten.")
    dry = run_ok(project, "send", "--date", "2024-11-17", "--dry-run")
    assert "to 11 recipients (politisk-ledning)" in dry.stderr
    sent = run_ok(project, "send", "--date", "2024-11-17")
    assert "correction: to the lists the earlier revision went to: politisk-ledning" in sent.stderr
    first, second = smtp_server.handler.reports()[:11], smtp_server.handler.reports()[11:]
    assert sorted(r for m in second for r in m.rcpt_tos) == sorted(r for m in first for r in m.rcpt_tos)


def recorded_editors(project: Project) -> list[str]:
    """Every name the ledger holds as an edition's editor (rows that keep only a text hold none)."""
    import sqlalchemy as sa

    from dispatch.ledger.schema import edits

    ledger = open_ledger(load_settings(project.config_path))
    try:
        with ledger.db.engine.connect() as conn:
            return [name for name in conn.execute(sa.select(edits.c.author)).scalars() if name]
    finally:
        ledger.close()


def test_changing_by_does_not_let_the_editor_approve_their_own_text(project: Project) -> None:
    project.set_config(approval="four_eyes")
    edition = project.root / "reports" / "2024-11-17.md"
    edit(edition, "status: approved", "status: draft\nby: Erik")
    run_ok(project, "check", "--date", "2024-11-17")  # records Erik as the author of this content
    assert recorded_editors(project) == ["Erik"]
    edit(edition, "by: Erik", "by: Anna")  # the content (and its hash) is unchanged
    refused = project.run("approve", "--date", "2024-11-17", "--by", "Erik")
    assert refused.returncode == 1 and "Erik wrote this content" in refused.stderr
    assert project.run("approve", "--date", "2024-11-17", "--by", "Anna").returncode == 1
    run_ok(project, "approve", "--date", "2024-11-17", "--by", "Bertil")


def test_check_records_the_files_author_and_never_the_os_user(project: Project) -> None:
    """Issue 32, found on a walk: `check` recorded the OS user as the edition's editor (who then
    could not approve it). Looking records only what the file says: its 'by'; with no 'by',
    nobody, and `approve` takes the OS user running it as its editor."""
    import getpass

    project.set_config(approval="four_eyes")
    edition = project.root / "reports" / "2024-11-17.md"
    edit(edition, "status: approved", "status: draft")
    run_ok(project, "check", "--date", "2024-11-17")
    assert recorded_editors(project) == [], "check recorded the OS user as an editor"
    refused = project.run("approve", "--date", "2024-11-17")  # --by defaults to the OS user
    assert refused.returncode == 1 and f"{getpass.getuser()} wrote this content" in refused.stderr
    run_ok(project, "approve", "--date", "2024-11-17", "--by", "Bertil")
    assert "approved by Bertil" in run_ok(project, "check", "--date", "2024-11-17").stderr
    assert recorded_editors(project) == [], "the approval keeps the text it approved, by nobody"
    run_ok(project, "send", "--date", "2024-11-17")
@pytest.mark.slow
def test_revoking_the_approval_stops_a_send_under_way(project: Project, smtp_server: SMTPServer) -> None:
    count = 300
    big_list(project, count)
    project.set_config(approval="four_eyes")
    edit(project.root / "reports" / "2024-11-17.md", "status: approved", "status: approved\nby: Erik")
    project.use_smtp(smtp_server, connections=1, rate_per_minute=1200)  # 20/s: 15 s in all
    run_ok(project, "approve", "--date", "2024-11-17", "--by", "Anna")
    process = start_dispatch(project, "send", "--date", "2024-11-17", "--list", "stor")
    deadline = time.monotonic() + 60
    while len(smtp_server.handler.received) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    revoked = run_ok(project, "approve", "--date", "2024-11-17", "--by", "Anna", "--revoke")
    assert "a send under way stops before its next batch" in revoked.stderr
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 3, stderr
    assert "the approval was revoked while sending" in stderr
    reached = len(smtp_server.handler.reports())
    assert reached < count, "it stopped"
    status = run_ok(project, "status", "2024-11-17").stdout
    assert "approval revoked by Anna" in status
