"""Issue 33's acceptance 1-4 through the command line against a real OpenLDAP slapd (tests/ldapserver.py:
TLS from a test CA, size limit 500 so paging is needed, read with an ordinary bind account) and a
real SMTP server: sync, the members, sends from the accepted snapshot, a 20 % shrink held until
accepted (and serve's one alert), the directory stopped, a wrong bind password, history and export.

Slow (slapd with thousands of entries, CLI processes); the fast twins run the same story in-process
against the local Graph server in test_directory_sends.py and test_directory_console.py.
"""

from __future__ import annotations

import html
import json
import random
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import pytest

import ldapserver
from conftest import Project, ServeProcess, SMTPServer, unit_of, write_edition
from consolekit import add_users, console_in_thread, sign_in
from dispatch import app
from dispatch.config import load_settings
from ldapserver import READER_PASSWORD, Slapd, expected_members, nested_directory

pytestmark = pytest.mark.slow
ENV = {"DISPATCH_LDAP_PASSWORD": READER_PASSWORD}
CHEFER = f"cn=chefer,{ldapserver.GROUPS_DN}"


def directory_project(project: Project, server: Slapd, smtp_server: SMTPServer) -> None:
    """The sample project with `chefer` from the slapd group (nested), `politisk-ledning` a file
    whose second member is also on `chefer`; SMTP in Bcc batches (thousands of recipients)."""
    project.use_smtp(smtp_server, recipients_per_message=100, connections=2)
    config = project.config_path.read_text(encoding="utf-8")
    project.config_path.write_text(config + server.settings_yaml("ad"), encoding="utf-8")
    (project.root / "recipients/chefer.csv").unlink()
    (project.root / "recipients/chefer.yaml").write_text(f"name: Chefer\nsource: ad\ngroup: \"{CHEFER}\"\n", encoding="utf-8")
    shared = next(iter(expected_members(server.model, "chefer")))
    (project.root / "recipients/politisk-ledning.yaml").write_text(
        "name: Politisk ledning\nmembers:\n  - {email: anna.johansson@example.org, name: Anna Johansson}\n"
        f"  - {{email: {shared.upper()}}}\n", encoding="utf-8")


def members_of(project: Project, name: str = "chefer") -> dict[str, str]:
    shown = project.run("recipients", name, "--json", "--members", env=ENV)
    assert shown.returncode == 0, shown.stderr
    [found] = json.loads(shown.stdout)["lists"]
    return {row["email"]: row["name"] for row in found["addresses"]}


def sent_to(smtp_server: SMTPServer, since: int = 0) -> list[str]:
    return [r.lower() for m in smtp_server.handler.reports()[since:] for r in m.rcpt_tos]


def mailable(directory: ldapserver.Directory) -> ldapserver.Directory:
    """The generated directory with addresses a send can use: its ``example.test`` is a
    special-use domain (RFC 6761) that the address check refuses, as it should."""
    for person in directory.people:
        if person.mail is not None:
            person.mail = person.mail.replace("@example.test", "@example.org")
    return directory


@contextmanager
def running(directory: ldapserver.Directory) -> Iterator[Slapd]:
    ldapserver.require_slapd()
    server = Slapd(mailable(directory))
    try:
        yield server.start()
    finally:
        server.remove()


@pytest.fixture(scope="module")
def slapd_directory() -> Iterator[Slapd]:
    """The 5,000 people of acceptance 1 (``nested_directory()``), one server for the module."""
    with running(nested_directory()) as server:
        yield server


@pytest.fixture
def small_slapd() -> Iterator[Slapd]:
    """A slapd of its own (800 people, 640 in the chefer tree: still beyond the size limit), for a
    test that changes the directory or stops it."""
    with running(nested_directory(800, disabled=8, without_mail=5)) as server:
        yield server


def test_sync_gives_exactly_the_group_and_a_send_reaches_each_once(project: Project, slapd_directory: Slapd,
                                                                   smtp_server: SMTPServer) -> None:
    """Acceptances 1 and 4: 5,000 people, groups nested three deep with a cycle, 40 disabled and
    25 without mail; sync, then exactly the expected members; a send reaches each once (people
    on two groups, and the one on both lists, too); history and export name the snapshot."""
    directory_project(project, slapd_directory, smtp_server)
    expected = expected_members(slapd_directory.model, "chefer")
    synced = project.run("recipients", "sync", env=ENV)
    assert synced.returncode == 0, synced.stderr
    assert f"chefer: accepted snapshot 1: {len(expected)} members" in synced.stdout
    assert members_of(project) == expected

    sent = project.run("send", "--date", "2024-11-17", env=ENV, timeout=600)
    assert sent.returncode == 0, sent.stderr
    got = sent_to(smtp_server)
    assert len(got) == len(set(got)), "nobody gets two messages"
    assert set(got) == set(expected) | {"anna.johansson@example.org"}

    history = project.run("history", "--json")
    [entry] = json.loads(history.stdout)["dispatches"]
    assert entry["snapshots"] == {"chefer": "1"}
    exported = project.run("export", "2024-11-17")
    assert exported.returncode == 0 and json.loads(exported.stdout)["snapshots"] == {"chefer": "1"}


def test_a_20_percent_shrink_is_held_until_accepted(project: Project, small_slapd: Slapd, smtp_server: SMTPServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Acceptance 2: a fifth of the group's people removed in the running slapd; sync exits 3,
    diff names them, a send still goes to the accepted snapshot, serve mails one alert, the
    console shows the held change; after accept the next send uses the new list, and the audit
    log says who accepted."""
    directory_project(project, small_slapd, smtp_server)
    before = expected_members(small_slapd.model, "chefer")
    assert project.run("recipients", "sync", env=ENV).returncode == 0
    by_mail = {person.mail: person for person in small_slapd.model.people}
    gone = sorted(random.Random(20).sample(sorted(before), len(before) // 5 + 1))
    for group in small_slapd.model.groups:
        leaving = [by_mail[mail].dn for mail in gone if by_mail[mail].dn in group.members]
        if leaving:
            small_slapd.remove_members(group.cn, leaving)
    after = expected_members(small_slapd.model, "chefer")
    assert set(before) - set(after) == set(gone)

    held = project.run("recipients", "sync", "chefer", env=ENV)
    assert held.returncode == 3, held.stdout + held.stderr
    assert "chefer: held snapshot 2" in held.stderr and "% smaller than the last accepted snapshot" in held.stderr
    diff = project.run("recipients", "diff", "chefer")
    assert diff.returncode == 0, diff.stderr
    removed = {line.split()[1]: " ".join(line.split()[2:]) for line in diff.stdout.splitlines() if line.startswith("- ")}
    assert removed == {mail: before[mail] for mail in gone}, "the removed people, with their names"
    assert members_of(project) == before, "sends keep the accepted snapshot"

    sent = project.run("send", "--date", "2024-11-17", env=ENV, timeout=600)
    assert sent.returncode == 0, sent.stderr
    assert set(gone) <= set(sent_to(smtp_server))

    monkeypatch.setenv("DISPATCH_LDAP_PASSWORD", READER_PASSWORD)  # serve's environment
    serve = ServeProcess(project)
    try:
        serve.wait_for(lambda: serve.logged("alert_sent"), 60, "the first sync's alert")
        serve.process.send_signal(signal.SIGHUP)  # a reload syncs again at once: the same held change
        serve.wait_for(lambda: sum("list_synced" in line for line in serve.lines) >= 2, 60, "the second sync")
    finally:
        serve.stop()
    alerts = [m for m in smtp_server.handler.notices() if str(m.message["Subject"]).startswith("Mottagarlistan")]
    assert len(alerts) == 1, [str(m.message["Subject"]) for m in smtp_server.handler.notices()]
    again = ServeProcess(project)  # a restart: the ledger remembers the alert
    try:
        again.wait_for(lambda: again.logged("list_synced"), 60, "the sync on start")
    finally:
        again.stop()
    assert len([m for m in smtp_server.handler.notices() if str(m.message["Subject"]).startswith("Mottagarlistan")]) == 1

    add_users(project, ("olle",))
    with console_in_thread(load_settings(project.config_path), None) as base:
        page = html.unescape(sign_in(base, "olle").get("/recipients").text)
    card = page[page.index('data-list="chefer"'):]
    assert "Ändringen väntar på godkännande" in card and "Godkänn ändringen" in card
    assert all(before[mail] in card for mail in gone)

    accepted = project.run("recipients", "accept", "chefer", "--by", "Olle Operatör")
    assert accepted.returncode == 0, accepted.stderr
    assert project.run("recipients", "accept", "chefer", "--by", "Olle Operatör").returncode == 1, "nothing held now"
    assert members_of(project) == after
    write_edition(project, date(2024, 11, 18))
    count = len(smtp_server.handler.reports())
    second = project.run("send", "--date", "2024-11-18", env=ENV, timeout=600)
    assert second.returncode == 0, second.stderr
    assert not set(sent_to(smtp_server, count)) & set(gone)
    [entry] = [e for e in app.audit_log(unit_of(load_settings(project.config_path))) if e.action == app.ACCEPT_ACTION]
    assert (entry.user, entry.target) == ("Olle Operatör", "chefer")


def test_a_stopped_directory_and_a_wrong_password_are_one_line_and_sends_go_on(project: Project, small_slapd: Slapd,
                                                                                 smtp_server: SMTPServer) -> None:
    """Acceptance 3."""
    directory_project(project, small_slapd, smtp_server)
    expected = expected_members(small_slapd.model, "chefer")
    assert project.run("recipients", "sync", env=ENV).returncode == 0
    small_slapd.stop()
    down = project.run("recipients", "sync", env=ENV)
    assert down.returncode == 3
    assert len(down.stderr.strip().splitlines()) == 1, down.stderr
    assert small_slapd.url in down.stderr, down.stderr
    sent = project.run("send", "--date", "2024-11-17", env=ENV, timeout=600)
    assert sent.returncode == 0, sent.stderr
    assert set(expected) <= set(sent_to(smtp_server))
    checked = project.run("check", "--date", "2024-11-17", env=ENV)
    assert "note: list chefer: the last sync failed" in checked.stderr, checked.stderr

    small_slapd.start()
    wrong = "Wr0ng-bind-password-4711"
    refused = project.run("recipients", "sync", env={"DISPATCH_LDAP_PASSWORD": wrong})
    assert refused.returncode == 3
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert small_slapd.url in refused.stderr
    for said in (refused.stdout, refused.stderr, down.stdout, down.stderr, sent.stdout, sent.stderr):
        assert wrong not in said and READER_PASSWORD not in said
    for path in project.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert wrong.encode() not in data and READER_PASSWORD.encode() not in data, path
