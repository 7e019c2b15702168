"""Issue 31, acceptance 1: every console page, with dispatches in every state (draft, approved,
sending, waiting for an urgent message, paused by the relay, stopped, done, failed), speaks
Swedish worded from facts: no English message of the command line's catalogue, no plan line, no
run state in English, and no dispatch's internal name outside a collapsed technical detail.

The console is the real one (uvicorn in this process, signed in over HTTP); the relay is a real
SMTP server (aiosmtpd) whose DATA waits on the test's events, so a send stands still exactly where
the test wants it, without sleeps. A relay that refuses connections (a port nobody listens on)
and one whose TLS settings cannot be loaded are two more consoles on the same ledger: the runs of
a console live in its process, so each shows its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from conftest import ROOT, STOCKHOLM, FakeClock, Project, RecordingHandler, free_port, open_ledger, start_server
from consolekit import add_users, console_in_thread, csrf_of, sign_in
from dispatch import app
from dispatch.config import load_settings
from dispatch.values import RunState
from dispatch.web.swedish import NOTHING
from dispatch.wording import ENGLISH, english_label, word_plan

# Days already past: an edition is not sent before its compiled time (issue 32), and the sends
# here are of editions whose time has come.
FIRST = datetime.now(STOCKHOLM).date() - timedelta(days=10)
DAYS = {state: FIRST + timedelta(days=i) for i, state in enumerate(
    ("draft", "approved", "sending", "paused", "stopped", "done", "failed"))}
GATED = ("skickas", "stoppas", "akut")  # lists whose messages wait at the relay for the test's event


class GatedRelay(RecordingHandler):
    """A relay whose DATA for a gated list's members waits until the test opens that gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gates = {name: threading.Event() for name in GATED}
        self.waiting = {name: threading.Event() for name in GATED}  # a message of it is at the gate

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for name in GATED:
            if any(address.endswith(f"@{name}.example") for address in envelope.rcpt_tos):
                self.waiting[name].set()
                await asyncio.to_thread(self.gates[name].wait, 60)
        return await super().handle_DATA(server, session, envelope)


class VisibleText(HTMLParser):
    """A page's text as a reader meets it: outside any collapsed <details> (``shown``), and all
    of it; attributes, scripts and styles are not text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.shown: list[str] = []
        self.hidden: list[str] = []
        self.collapsed = 0  # depth inside <details> without "open"
        self.stack: list[bool] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "details":
            collapsed = not any(name == "open" for name, _ in attrs)
            self.stack.append(collapsed)
            self.collapsed += collapsed
        elif tag in ("script", "style"):
            self.skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "details" and self.stack:
            self.collapsed -= self.stack.pop()
        elif tag in ("script", "style") and self.skip:
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        if not self.skip:
            (self.hidden if self.collapsed else self.shown).append(data)


def shown_text(html: str) -> tuple[str, str]:
    parser = VisibleText()
    parser.feed(html)
    return " ".join(" ".join(parser.shown).split()), " ".join(" ".join(parser.hidden).split())


def english_fragments() -> set[str]:
    """The fixed parts of every English wording (between its parameters) long enough to be a
    message, not a word Swedish shares; and every run state's English name."""
    fragments = set()
    for wording in ENGLISH.values():
        for form in wording if isinstance(wording, tuple) else (wording,):
            for part in re.split(r"\{[^}]*\}", form):
                part = part.strip(" ,;:.()\"")
                if len(part) >= 10 and " " in part:
                    fragments.add(part)
    return fragments


RUN_STATES_IN_ENGLISH = re.compile(r"\b(" + "|".join(state.value.replace("_", " ") for state in RunState) + r")\b", re.I)


def write_edition(project: Project, day: date, lists: str, status: str = "approved") -> None:
    text = (ROOT / "reports/2024-11-17.md").read_text(encoding="utf-8")
    text = text.replace("compiled: 2024-11-17 14:00", f"compiled: {day.isoformat()} 13:00\nlists: [{lists}]")
    text = text.replace("status: approved", f"status: {status}")
    (project.root / f"reports/{day.isoformat()}.md").write_text(text, encoding="utf-8")


def write_list(project: Project, name: str, domain: str, count: int = 2) -> None:
    members = "".join(f"  - {{email: person{i}@{domain}, name: Person {i}}}\n" for i in range(count))
    (project.root / f"recipients/{name}.yaml").write_text(f"name: Lista {name}\nmembers:\n{members}", encoding="utf-8")


def events_until(client: httpx.Client, name: str, wanted: set[str]) -> dict[str, Any]:
    """The run's progress events until its state is one of ``wanted`` (the stream sends each change)."""
    while True:
        with client.stream("GET", f"/runs/{name}/events", timeout=60) as events:
            for line in events.iter_lines():
                if line.startswith("data:"):
                    said: dict[str, Any] = json.loads(line[5:])
                    if said["run_state"] in wanted:
                        return said
        # The stream ended on a final state that is not the one wanted yet: it is asked again.


def start_send(client: httpx.Client, day: date) -> str:
    confirm = client.get(f"/editions/{day.isoformat()}/send")
    assert confirm.status_code == 200, confirm.text
    expected = re.search(r'name="expected" value="([^"]+)"', confirm.text)
    assert expected, confirm.text
    started = client.post(f"/editions/{day.isoformat()}/send", data={"csrf": csrf_of(confirm.text), "expected": expected[1]})
    assert started.status_code == 303, started.text
    return expected[1]


@pytest.fixture
def consoles(project: Project) -> Iterator[tuple[dict[str, str], GatedRelay, Project]]:
    handler = GatedRelay()
    controller, server = start_server(handler)
    project.use_smtp(server, connections=1)
    project.set_config(approval="front_matter", notify=[], publish__on_send=False)
    for name in (*GATED, "alla", "pausas", "trasig"):  # (list names in Swedish: the pages show them)
        write_list(project, name, f"{name}.example")
    add_users(project, ("anna", "olle"))
    write_edition(project, DAYS["draft"], "alla", status="draft")
    for state, lists in (("approved", "alla"), ("sending", "skickas"), ("paused", "pausas"), ("stopped", "stoppas"),
                         ("done", "alla"), ("failed", "trasig")):
        write_edition(project, DAYS[state], lists)
    settings = load_settings(project.config_path)
    # The same ledger and files; a relay nobody listens on, and TLS settings that cannot be loaded.
    garbage = project.root / "not-a-ca.pem"
    garbage.write_text("not a certificate\n", encoding="utf-8")
    unreachable = dataclasses.replace(settings, transport=dataclasses.replace(settings.transport, port=free_port()))
    broken = dataclasses.replace(settings, transport=dataclasses.replace(settings.transport, security="tls",
                                                                         ca_file=garbage))
    clock = FakeClock(datetime.now(UTC))
    with ExitStack() as stack:
        bases = {name: stack.enter_context(console_in_thread(s, clock))
                 for name, s in (("main", settings), ("unreachable", unreachable), ("broken", broken))}
        try:
            yield bases, handler, project
        finally:
            for gate in handler.gates.values():
                gate.set()  # the runs finish and record what they sent before the consoles stop
            for base in bases.values():
                httpx.get(f"{base}/healthz")
            controller.stop()


def walk(base: str, names: list[str], days: list[date], recorded: set[str]) -> dict[str, str]:
    """Every page of the console as the operator sees it: path -> its HTML."""
    paths = ["/", "/history", "/recipients", "/audit", f"/editions/{DAYS['approved'].isoformat()}/send"]
    paths += [f"/editions/{day.isoformat()}" for day in days]
    paths += [f"/runs/{name}" for name in names] + [f"/history/{name}" for name in names if name in recorded]
    return pages_of(base, paths)


def pages_of(base: str, paths: list[str]) -> dict[str, str]:
    olle = sign_in(base, "olle")
    pages = {}
    for path in paths:
        page = olle.get(path)
        assert page.status_code == 200, (path, page.status_code, page.text[:500])
        pages[path] = page.text
    return pages


def check(pages: dict[str, str], names: list[str]) -> None:
    fragments = english_fragments()
    for path, html in pages.items():
        shown, _ = shown_text(html)
        english = sorted(f for f in fragments if f in shown)
        assert not english, f"{path}: English from the command line's catalogue: {english}\n{shown}"
        assert not RUN_STATES_IN_ENGLISH.search(shown), f"{path}: a run state in English\n{shown}"
        assert "plan:" not in shown, f"{path}: the command line's plan line\n{shown}"
        assert "cannot connect" not in shown, f"{path}: the relay's error as the program said it\n{shown}"
        raw = sorted(name for name in names if name in shown)
        assert not raw, f"{path}: a dispatch's internal name outside a collapsed detail: {raw}\n{shown}"


def test_every_console_page_in_every_state_speaks_swedish_and_names_dispatches_by_label(
        consoles: tuple[dict[str, str], GatedRelay, Project]) -> None:
    bases, relay, project = consoles
    main = sign_in(bases["main"], "olle")

    # done: sent to everyone; a test to anna too ("Test till anna")
    done = start_send(main, DAYS["done"])
    assert events_until(main, done, {"done"})["final"]
    anna = sign_in(bases["main"], "anna")
    edition = anna.get(f"/editions/{DAYS['done'].isoformat()}")
    assert anna.post(f"/editions/{DAYS['done'].isoformat()}/test", data={"csrf": csrf_of(edition.text)}).status_code == 303

    # sending: its first message waits at the relay
    sending = start_send(main, DAYS["sending"])
    assert relay.waiting["skickas"].wait(30)
    said = events_until(main, sending, {"sending"})
    assert said["state"] == "running", said  # the events' state, as watchers read it before

    # stopped: stopped while a message is at the relay, which then takes it
    stopped = start_send(main, DAYS["stopped"])
    assert relay.waiting["stoppas"].wait(30)
    page = main.get(f"/runs/{stopped}")
    assert main.post(f"/runs/{stopped}/stop", data={"csrf": csrf_of(page.text)}).status_code == 303
    relay.gates["stoppas"].set()
    assert events_until(main, stopped, {"stopped"})["final"]

    # paused by the relay: nobody listens where the second console sends
    unreachable = sign_in(bases["unreachable"], "olle")
    paused = start_send(unreachable, DAYS["paused"])
    said = events_until(unreachable, paused, {"paused_by_relay"})
    assert said["relay_sv"].startswith("Servern 127.0.0.1:") and "anslutningen nekades" in said["relay_sv"], said
    assert said["rate_sv"] == NOTHING and said["eta_sv"] == NOTHING, "no rate or time left while paused"

    # failed: the third console's TLS settings cannot be loaded
    broken = sign_in(bases["broken"], "olle")
    failed = start_send(broken, DAYS["failed"])
    said = events_until(broken, failed, {"failed"})
    assert said["state_sv"] == "Misslyckades" and said["error"], said

    settings = load_settings(project.config_path)
    names = [done, sending, stopped, paused, failed]
    ledger = open_ledger(settings)
    try:
        names += [r.name for r in ledger.list_dispatches() if r.name not in names]  # the test to anna
        labels = {r.name: english_label(app.label_of(r)) for r in ledger.list_dispatches()}  # a failed run has none
    finally:
        ledger.close()
    assert any(".test-" in name for name in names), names
    days = list(DAYS.values())
    recorded = set(labels)
    check(walk(bases["main"], [n for n in names if n != failed], days, recorded), names)
    # The runs of the other two consoles are theirs (a run that failed before its dispatch was
    # recorded is known only to the console that ran it).
    check(pages_of(bases["broken"], ["/", f"/runs/{failed}", f"/editions/{DAYS['failed'].isoformat()}"]), names)
    paused_pages = pages_of(bases["unreachable"], ["/", f"/runs/{paused}", f"/editions/{DAYS['paused'].isoformat()}"])
    check(paused_pages, names)
    shown, hidden = shown_text(paused_pages[f"/runs/{paused}"])
    assert "väntar: e-postservern tog inte emot (anslutningen nekades" in shown, shown
    assert "cannot connect: ConnectionRefusedError" in hidden, "the exact error, in the technical detail"

    # waiting for an urgent message: it is sent while the edition's send stands at the relay
    urgent_page = main.get("/urgent")
    message = {"subject": "SÄS akutmottagning stängd", "list-akut": "on", "confirmed_lists": "akut",
               "body": "## Akut\n\n- Akutmottagningen på SÄS är stängd.\n"}
    assert main.post("/urgent/send", data={"csrf": csrf_of(urgent_page.text), **message}).status_code == 303
    assert relay.waiting["akut"].wait(30)
    said = events_until(main, sending, {"waiting_for_urgent"})
    assert "brådskande" in said["state_sv"] and "SÄS akutmottagning stängd" in said["urgent_sv"], said
    assert said["rate_sv"] == NOTHING and said["eta_sv"] == NOTHING, "no rate or time left while waiting"
    home = shown_text(main.get("/").text)[0] + shown_text(main.get(f"/editions/{DAYS['sending'].isoformat()}").text)[0]
    assert "Väntar" in home and "brådskande" in home and "SÄS akutmottagning stängd" in home, home

    ledger = open_ledger(settings)
    try:
        names += [r.name for r in ledger.list_dispatches() if r.name not in names]  # the urgent message
        recorded = {r.name for r in ledger.list_dispatches()}
    finally:
        ledger.close()
    pages = walk(bases["main"], [n for n in names if n != failed], days, recorded)
    check(pages, names)
    check(pages_of(bases["unreachable"], ["/", f"/runs/{paused}", f"/runs/{sending}"]), names)
    shown = shown_text(pages["/history"])[0]
    assert "Brådskande: SÄS akutmottagning stängd" in shown and "Test till anna" in shown, shown
    assert re.search(r"Rapporten \w{3} \d{1,2} \w{3}", shown), shown
    assert labels, "every dispatch has an English label for the command line too"


def test_the_plan_line_is_worded_from_the_plan_in_english_as_before() -> None:
    """The command line's `plan:` line, word for word as it was before it became a value."""
    from dispatch.app.sending import duration, plan_line
    from dispatch.values import SendPlan

    smtp = SendPlan(1200, 40, 30, 4, "relay:25", rate_per_minute=30, seconds=80.0, already=3)
    assert plan_line(smtp) == ("plan: 1200 recipients in 40 messages of up to 30 recipients (Bcc) over 4 connection(s) "
                               "to relay:25 at 30/min: about 80 s; 3 already have it")
    assert plan_line(SendPlan(5, 5, 1, 2, "relay:25")) == (
        "plan: 5 recipients in 5 messages over 2 connection(s) to relay:25 (recipients already accepted are skipped)")
    assert plan_line(SendPlan(5, 5, 1, 1, "var/outbox", maildir=True)) == "plan: 5 recipients into the Maildir var/outbox"
    assert word_plan(smtp, lambda fact: fact.code, duration(80)) == "plan.smtp"  # a fact, worded by each front door
    from dispatch.web.swedish import say_plan

    assert say_plan(SendPlan(1, 1, 1, 1, "relay:25", rate_per_minute=60, seconds=1.0)) == (
        "1 mottagare i 1 meddelande över 1 anslutning(ar) till relay:25, 60 per minut: cirka 1 sekund; "
        "de som redan har fått den hoppas över")
