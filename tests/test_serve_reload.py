"""Issue 30, point 7: a reload (SIGHUP) that cannot be applied is one log line, and the
service goes on with the settings it had: an unreachable ledger, an unknown list, a
missing secret."""

from __future__ import annotations

import json
import signal
from datetime import datetime, timedelta

import pytest

from conftest import STOCKHOLM, FakeClock, Project, ServeProcess, SMTPServer, free_port, set_schedule, write_edition
from dispatch.app.service import Service
from dispatch.config import load_settings
from dispatch.errors import InputError, LedgerError


def events(serve: ServeProcess) -> list[dict[str, str]]:
    return [json.loads(line) for line in list(serve.lines)]


@pytest.mark.slow
def test_sighup_with_an_unreachable_ledger_logs_one_line_and_serve_sends_on_the_old_settings(
        project: Project, smtp_server: SMTPServer, processes: list[ServeProcess]) -> None:
    """Acceptance 7. The schedule's slot has passed (deadline in an hour) and its edition is a
    draft: the service holds it. A reload pointing at a ledger nobody listens on is refused;
    the edition is then approved, and the service (its watch, every second with a 4 s lease)
    sends it through the ledger it had."""
    project.use_smtp(smtp_server)
    slot = datetime.now(STOCKHOLM).replace(second=0, microsecond=0) - timedelta(minutes=2)
    deadline = slot + timedelta(hours=1)
    set_schedule(project, cron=f"{slot.minute} {slot.hour} * * *", lists=["politisk-ledning"],
                 deadline=f"{deadline:%H:%M}", approval_deadline=None)
    project.set_config(lease_seconds=4)
    write_edition(project, slot.date(), status="draft")
    serve = ServeProcess(project, "--log-json")
    processes.append(serve)
    serve.wait_for(lambda: serve.logged("alert_sent"), 30, "the held send and its alert")

    unreachable = f"postgresql://dispatch@127.0.0.1:{free_port()}/test"
    project.set_config(ledger=unreachable)
    before = len(serve.lines)
    serve.process.send_signal(signal.SIGHUP)
    serve.wait_for(lambda: serve.logged("reload_rejected"), 30, "the reload to be refused")
    assert serve.process.poll() is None
    after = events(serve)[before:]
    assert [e["event"] for e in after] == ["reload", "reload_rejected"], serve.log()  # one line, no traceback
    assert f"127.0.0.1:{unreachable.rsplit(':', 1)[1].split('/')[0]}" in after[1]["problems"]

    write_edition(project, slot.date(), status="approved")
    serve.wait_for(lambda: serve.logged("sent"), 60, "the approved edition to go out on the old settings")
    assert len(smtp_server.handler.reports()) == len({r for r in smtp_server.handler.recipients()}) > 0
    assert not serve.logged("watch_failed"), serve.log()
    code, _ = serve.stop()
    assert code == 0, serve.log()


@pytest.mark.parametrize("change", ["unknown list", "missing secret", "unreachable ledger"])
def test_a_reload_that_cannot_be_applied_changes_nothing(project: Project, change: str) -> None:
    settings = load_settings(project.config_path)
    keeper = Service(settings, clock=FakeClock())
    try:
        ledger = keeper.ledger
        if change == "unknown list":
            set_schedule(project, lists=["politisk-ledning", "nya-chefer"])
        elif change == "missing secret":
            project.set_config(transport={"kind": "smtp", "host": "127.0.0.1", "port": 25, "username": "rapport",
                                          "password_env": "DISPATCH_TEST_NOT_SET"})
        else:
            project.set_config(ledger=f"postgresql://dispatch@127.0.0.1:{free_port()}/test")
        with pytest.raises(LedgerError if change == "unreachable ledger" else InputError) as refused:
            keeper.use(load_settings(project.config_path))
        assert keeper.settings is settings and keeper.ledger is ledger
        error = refused.value
        shown = str(error.problems[0]) if isinstance(error, InputError) else str(error)
        assert {"unknown list": "nya-chefer", "missing secret": "DISPATCH_TEST_NOT_SET",
                "unreachable ledger": "127.0.0.1"}[change] in shown
        assert keeper.ledger.list_dispatches() == []  # the old ledger still answers
    finally:
        keeper.close()
