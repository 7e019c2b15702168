"""Issue 33 end to end: directory lists synced into snapshots, sends from the last accepted
snapshot, the shrink guard, accepting a held change, serve's one alert, history and export.

Here in-process against the local Graph server (tests/graphserver.py: HTTPS, the documented
shapes) and a real SMTP server: the fast twins of the slow tests in test_directory_slapd.py,
which run the same story through the command line against a real OpenLDAP slapd.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import date, datetime, timedelta

import pytest

from conftest import Project, SMTPServer, body_text, open_ledger, unit_of, write_edition
from dispatch import app
from dispatch.app.scheduled import Service
from dispatch.config import Settings, load_settings
from dispatch.delivery.pipeline import Clock
from dispatch.errors import InputError
from dispatch.wording import english
from graphserver import GraphServer, graph_fixture, graph_server_fixture, user  # noqa: F401  (fixtures)

GROUP = "2b7c5a1e-9d3f-4c8b-a6e2-0f1d2c3b4a59"
SHARED = "person.3@region.example.se"  # on the directory's group and on the file list


def directory_project(project: Project, graph: GraphServer, smtp_server: SMTPServer, members: int = 50) -> Settings:
    """The sample project with `chefer` from the Graph group (``members`` people, two of them
    left out by the directory: one disabled, one without mail), `politisk-ledning` a file of
    three of which one is also in the group; settings that reach the local Graph server."""
    project.use_smtp(smtp_server)
    (project.root / "recipients/chefer.csv").unlink()
    (project.root / "recipients/chefer.yaml").write_text(
        f"name: Chefer\nsource: entra\ngroup: {GROUP}\n", encoding="utf-8")
    (project.root / "recipients/politisk-ledning.yaml").write_text(
        "name: Politisk ledning\nmembers:\n  - {email: anna.johansson@example.org, name: Anna Johansson}\n"
        f"  - {{email: {SHARED.upper()}, name: Person Tre}}\n  - {{email: erik.lindqvist@example.org}}\n",
        encoding="utf-8")
    graph.tenant.groups[GROUP] = [user(n) for n in range(1, members + 1)] + [
        user(9001, enabled=False), user(9002, mail=False)]
    graph.tenant.page_size = 20  # several pages, as a large group has
    settings = load_settings(project.config_path)
    return dataclasses.replace(settings, directories={"entra": graph.directory()})


def group_addresses(numbers: range) -> set[str]:
    return {f"person.{n}@region.example.se" for n in numbers}


def send_edition(project: Project, settings: Settings, day: date) -> app.Result:
    write_edition(project, day)
    clock = Clock()
    edition = app.read_edition(unit_of(settings), day, None, clock.now())
    ready = app.prepare_edition(unit_of(settings), edition, clock.now())
    return app.send(unit_of(settings), ready, clock, created_by="test")


def rcpts(smtp_server: SMTPServer, since: int = 0) -> list[str]:
    return [r.lower() for m in smtp_server.handler.reports()[since:] for r in m.rcpt_tos]


def test_a_synced_list_is_sent_from_its_snapshot_each_person_once(project: Project, graph: GraphServer,
                                                                  smtp_server: SMTPServer) -> None:
    """Acceptance 1 (membership; the slapd twin has the 5,000): after a sync the list shows
    exactly the group's members with mail and an enabled account; a send reaches each once,
    and the person on both lists gets one message; history and export name the snapshot."""
    settings = directory_project(project, graph, smtp_server)
    [outcome] = app.sync(unit_of(settings), (), Clock().now())
    assert outcome.state is app.SnapshotState.ACCEPTED
    assert (outcome.snapshot.members, outcome.snapshot.disabled, outcome.snapshot.without_mail) == (50, 1, 1)
    report = app.lists_report(settings, ("chefer",), unit_of(settings))
    assert report.resolution is not None and not report.problems
    assert set(report.resolution.recipients) == group_addresses(range(1, 51))
    assert report.snapshots == {"chefer": outcome.snapshot.id}

    result = send_edition(project, settings, date(2024, 11, 17))
    assert result.complete
    got = rcpts(smtp_server)
    expected = group_addresses(range(1, 51)) | {"anna.johansson@example.org", "erik.lindqvist@example.org"}
    assert sorted(got) == sorted(expected), "each person once; the one on both lists too"

    ref = outcome.snapshot.ref
    entries = app.history(unit_of(settings), None)
    assert entries[-1]["snapshots"] == {"chefer": ref}
    document = app.export(unit_of(settings), result.dispatch)
    assert document is not None and document["snapshots"] == {"chefer": ref}


def test_a_send_to_a_list_never_synced_sends_nothing_and_says_what_to_run(project: Project, graph: GraphServer,
                                                                         smtp_server: SMTPServer) -> None:
    settings = directory_project(project, graph, smtp_server)
    with pytest.raises(InputError) as refused:
        send_edition(project, settings, date(2024, 11, 17))
    [problem] = refused.value.problems
    # At the line of `source:` (the list file's second line here), naming what to run.
    assert str(problem).endswith("recipients/chefer.yaml:2: list chefer is read from the directory entra and has no "
                                 "accepted snapshot yet: run 'dispatch recipients sync chefer'")
    assert smtp_server.handler.received == []


def test_a_shrink_is_held_sends_keep_the_old_list_serve_alerts_once_and_accepting_it_is_audited(
        project: Project, graph: GraphServer, smtp_server: SMTPServer) -> None:
    """Acceptance 2 (the slapd twin removes 20 % with ldapmodify and drives the CLI)."""
    settings = directory_project(project, graph, smtp_server)
    session = unit_of(settings)
    first = app.sync(session, (), Clock().now())[0].snapshot
    graph.tenant.groups[GROUP] = [user(n) for n in range(1, 41)]  # 10 of 50 gone: 20 %
    held = app.sync(session, ("chefer",), Clock().now())[0]
    assert held.state is app.SnapshotState.HELD and held.accepted == first
    diff = app.list_diff(session, "chefer")
    assert diff.shrink == "20"
    assert {m.address for m in diff.change.removed} == group_addresses(range(41, 51))
    assert {m.name for m in diff.change.removed} == {f"Person {n}" for n in range(41, 51)}

    send_edition(project, settings, date(2024, 11, 18))
    assert group_addresses(range(41, 51)) <= set(rcpts(smtp_server)), "the held change is not used"

    service = Service(settings)
    try:
        service.sync_lists(Clock().now())
        service.sync_lists(Clock().now() + timedelta(minutes=60))  # the next hour: the same held change
    finally:
        service.close()
    alerts = [n for n in smtp_server.handler.notices() if str(n.message["Subject"]).startswith("Mottagarlistan")]
    assert len(alerts) == 1, [a.message["Subject"] for a in smtp_server.handler.notices()]
    alert = alerts[0].message
    assert "Chefer" in str(alert["Subject"]) and "godkännande" in str(alert["Subject"])
    text = body_text(alert)
    assert "person.41@region.example.se (Person 41)" in text and "dispatch recipients accept chefer" in text

    accepted = app.accept(session, "chefer", "Operatör Olle", Clock().now())
    assert accepted is not None and accepted.snapshot.id == held.snapshot.id
    assert app.accept(session, "chefer", "Operatör Olle", Clock().now()) is None, "nothing held any more"
    [entry] = [e for e in app.audit_log(session) if e.action == app.ACCEPT_ACTION]
    assert (entry.user, entry.target) == ("Operatör Olle", "chefer")
    assert re.search(rf"snapshot {held.snapshot.ref}: 40 members, 0 added, 10 removed", entry.detail)

    before = len(smtp_server.handler.reports())
    third = send_edition(project, settings, date(2024, 11, 19))
    after = set(rcpts(smtp_server, before))
    assert not after & group_addresses(range(41, 51)) and group_addresses(range(1, 41)) <= after
    assert app.export(unit_of(settings), third.dispatch)["snapshots"] == {"chefer": held.snapshot.ref}  # type: ignore[index]


def test_a_directory_down_is_a_failed_sync_and_the_send_uses_the_last_accepted_snapshot(
        project: Project, graph: GraphServer, smtp_server: SMTPServer) -> None:
    """Acceptance 3 (the slapd twin stops slapd and tries a wrong bind password)."""
    settings = directory_project(project, graph, smtp_server, members=5)
    first = app.sync(unit_of(settings), (), Clock().now())[0].snapshot
    down = dataclasses.replace(settings, directories={"entra": graph.directory(graph_url="https://127.0.0.1:9/v1.0",
                                                                               authority="https://127.0.0.1:9")})
    [failed] = app.sync(unit_of(down), (), Clock().now())
    assert failed.state is app.SnapshotState.FAILED and failed.accepted == first
    assert failed.server and "127.0.0.1:9" in failed.server
    result = send_edition(project, down, date(2024, 11, 17))
    assert result.complete and group_addresses(range(1, 6)) <= set(rcpts(smtp_server))
    secret = graph.tenant.client_secret
    wrong = dataclasses.replace(settings, directories={"entra": graph.directory(client_secret_file=None,
                                                                                client_secret_env="WRONG_SECRET")})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WRONG_SECRET", "not-the-secret-" + secret[::-1])
        [refused] = app.sync(unit_of(wrong), (), Clock().now())
    assert refused.state is app.SnapshotState.FAILED and refused.snapshot.reason is not None
    said = english(refused.snapshot.reason)
    assert "\n" not in said and secret[::-1] not in said
    ledger = open_ledger(settings)
    ledger.close()
    assert secret[::-1].encode() not in (project.root / "var/ledger.db").read_bytes()


def test_check_says_how_old_the_snapshot_is_without_the_directory(project: Project, graph: GraphServer,
                                                                  smtp_server: SMTPServer) -> None:
    settings = directory_project(project, graph, smtp_server, members=3)
    app.sync(unit_of(settings), (), Clock().now())
    down = dataclasses.replace(settings, directories={"entra": graph.directory(graph_url="https://127.0.0.1:9/v1.0",
                                                                               authority="https://127.0.0.1:9")})
    clock = Clock()
    edition = app.read_edition(unit_of(down), date(2024, 11, 17), None, clock.now())
    ready = app.prepare_edition(unit_of(down), edition, clock.now())
    notes = [english(n) for n in app.snapshot_notes(unit_of(down), ready.snapshots, clock.now() + timedelta(minutes=5))]
    assert notes == ["list chefer: snapshot 1 (3 members), last confirmed by a sync 5 minutes ago"]


def test_serve_syncs_once_in_the_half_hour_before_each_slot(project: Project) -> None:
    """The watch job asks this every minute; the sample schedule sends at 14:00 Stockholm time."""
    settings = load_settings(project.config_path)
    zone = settings.timezone
    service = Service(settings)
    try:
        assert not service.presync_due(datetime(2024, 11, 18, 13, 29, tzinfo=zone))
        assert service.presync_due(datetime(2024, 11, 18, 13, 30, tzinfo=zone))
        assert not service.presync_due(datetime(2024, 11, 18, 13, 45, tzinfo=zone)), "once per slot"
        assert not service.presync_due(datetime(2024, 11, 18, 14, 0, tzinfo=zone)), "the slot itself is the send's"
        assert service.presync_due(datetime(2024, 11, 19, 13, 59, tzinfo=zone)), "the next day's slot"
    finally:
        service.close()


def test_serve_alerts_once_while_a_directory_keeps_failing_and_again_after_it_recovered(
        project: Project, graph: GraphServer, smtp_server: SMTPServer) -> None:
    settings = directory_project(project, graph, smtp_server, members=5)
    working = settings
    down = dataclasses.replace(settings, directories={"entra": graph.directory(graph_url="https://127.0.0.1:9/v1.0",
                                                                               authority="https://127.0.0.1:9")})
    wrong = dataclasses.replace(settings, directories={"entra": graph.directory(client_secret_file=None,
                                                                                client_secret_env="NO_SUCH_SECRET_SET")})

    def alerts() -> list[str]:
        return [str(n.message["Subject"]) for n in smtp_server.handler.notices()
                if str(n.message["Subject"]).startswith("Mottagarlistan")]

    def sync_with(chosen: Settings, hours: int) -> None:
        service = Service(chosen)
        try:
            service.sync_lists(Clock().now() + timedelta(hours=hours))
        finally:
            service.close()

    sync_with(working, 0)
    sync_with(down, 1)
    sync_with(wrong, 2)  # failing otherwise: the same failure streak
    sync_with(down, 3)
    assert alerts() == ["Mottagarlistan Chefer kunde inte hämtas från katalogen"]
    sync_with(working, 4)
    sync_with(down, 5)
    assert len(alerts()) == 2, "a new failure after the directory came back is told"
