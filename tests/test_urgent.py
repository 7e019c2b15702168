"""Issue 7: urgent messages that overtake the daily report, and corrections."""

from __future__ import annotations

import getpass
import time
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import yaml

from conftest import Project, Received, SMTPServer, addresses, big_list, body_text, start_dispatch

URGENT = """---
subject: SÄS stänger akutmottagningen 16:00
lists: [politisk-ledning]
---

SÄS akutmottagning i Borås stänger **klockan 16:00** i dag för nya patienter.
Ambulanser dirigeras om till NÄL och SU.
"""


def _write_urgent(project: Project, name: str = "sas-akut.md") -> Path:
    path = project.root / name
    path.write_text(URGENT, encoding="utf-8")
    return path


def _parsed(item: Received) -> EmailMessage:
    return message_from_bytes(item.data, policy=policy.default)


def test_urgent_message_has_priority_headers_prefix_banner_and_short_standing_part(project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    path = _write_urgent(project)
    result = project.run("send", "--urgent", "--file", str(path), "--by", "Presstjänsten")
    assert result.returncode == 0, result.stderr

    reports = smtp_server.handler.reports()
    assert len(reports) == 11  # politisk-ledning only, from the message's front matter
    message = _parsed(reports[0])
    assert message["Importance"] == "High" and message["X-Priority"] == "1"
    assert message["Subject"] == "BRÅDSKANDE: SÄS stänger akutmottagningen 16:00"
    text = body_text(message)
    html = body_text(message, "html")
    assert text.lstrip().startswith("BRÅDSKANDE MEDDELANDE")
    assert "BRÅDSKANDE MEDDELANDE" in html
    visible = html.split('class="preheader"', 1)[1].split("</div>", 1)[1]  # after the hidden preview text
    assert visible.index("BRÅDSKANDE MEDDELANDE") < visible.index("akutmottagning i Borås")
    # The standing part is cut to the spokespersons and the about line.
    assert "Talespersoner VGR" in text and "Håkan Sandahl" in text
    assert "Sammanställs av Koncernstab kommunikation" in text
    assert "Samlad information" not in text and "Dagligen" not in text
    assert "Rapporten tas fram i syfte" not in text

    status = project.status()
    assert status["dispatch"].startswith(status["edition"]) and ".urgent-sas-akut" in status["dispatch"]
    assert status["created_by"] == "Presstjänsten"


def test_normal_edition_has_no_urgent_marks(project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    assert project.run("send", "--date", "2024-11-17", "--list", "politisk-ledning").returncode == 0
    message = _parsed(smtp_server.handler.reports()[0])
    assert message["Importance"] is None and message["X-Priority"] is None
    assert not message["Subject"].startswith("BRÅDSKANDE")
    assert "BRÅDSKANDE" not in body_text(message, "html")


def test_urgent_send_records_the_os_user_without_by(project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    path = _write_urgent(project)
    assert project.run("send", "--urgent", "--file", str(path)).returncode == 0
    assert project.status()["created_by"] == getpass.getuser()


def test_draft_edition_is_not_sent_but_can_be_tested(project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    edition = project.root / "reports/2024-11-17.md"
    edition.write_text(edition.read_text(encoding="utf-8").replace("status: approved", "status: draft"), encoding="utf-8")
    refused = project.run("send", "--date", "2024-11-17")
    assert refused.returncode == 1 and "draft" in refused.stderr
    assert smtp_server.handler.received == []
    tested = project.run("send", "--date", "2024-11-17", "--to", "redaktor@example.org")
    assert tested.returncode == 0, tested.stderr
    assert [r.rcpt_tos for r in smtp_server.handler.reports()] == [["redaktor@example.org"]]


@pytest.mark.slow  # two send processes, 5,000 recipients at a rate limit
def test_urgent_overtakes_a_draining_scheduled_dispatch(project: Project, smtp_server: SMTPServer) -> None:
    # 5,000 recipients in Bcc batches of 50 at 600 messages/minute: the Exchange limit
    # (30/min) scaled up 20 times so the test takes seconds, not minutes.
    per_minute, batch, count = 600, 50, 5000
    big_list(project, count, name="stor")
    project.use_smtp(smtp_server, connections=4, rate_per_minute=per_minute, recipients_per_message=batch)
    project.set_config(notify=[])
    path = _write_urgent(project)

    scheduled = start_dispatch(project, "send", "--date", "2024-11-17", "--list", "stor")
    deadline = time.monotonic() + 30
    while len(smtp_server.handler.reports()) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert scheduled.poll() is None, "the scheduled dispatch must still be draining"

    urgent = project.run("send", "--urgent", "--file", str(path))
    assert urgent.returncode == 0, urgent.stderr
    # In the server's order of arrival: the scheduled dispatch's messages, from the moment
    # the urgent dispatch existed (its created_at in the ledger) to its first message. The
    # scheduled one gives way before its next message; what is already under way (one per
    # connection) and what goes out before it next asks the ledger may still arrive first,
    # but not the rest of its 100 messages. Counted in messages, not seconds, so a slow
    # machine (where both processes are slow alike) does not change the answer.
    created = datetime.fromisoformat(project.status()["created_at"]).timestamp()
    wall_minus_monotonic = time.time() - time.monotonic()
    with smtp_server.handler.lock:
        arrivals = list(zip(smtp_server.handler.data_times, smtp_server.handler.received, strict=True))
    is_urgent = ["BRÅDSKANDE" in (_parsed(item)["Subject"] or "") for _, item in arrivals]
    first_urgent = is_urgent.index(True)
    ahead = [t for (t, _), flag in zip(arrivals[:first_urgent], is_urgent[:first_urgent], strict=True)
             if not flag and t + wall_minus_monotonic >= created]
    assert len(ahead) <= 10, f"{len(ahead)} scheduled messages went out after the urgent dispatch existed, before it"
    assert count // batch - first_urgent >= 50, "the urgent message overtook most of the scheduled dispatch"

    assert scheduled.wait(timeout=60) == 0, scheduled.stderr()
    scheduled_recipients = [r for r in smtp_server.handler.recipients() if r.startswith("person")]
    assert sorted(scheduled_recipients) == addresses(count)
    urgent_recipients = [
        rcpt for item in smtp_server.handler.reports() if "BRÅDSKANDE" in (_parsed(item)["Subject"] or "")
        for rcpt in item.rcpt_tos
    ]
    assert len(urgent_recipients) == len(set(urgent_recipients)) == 11

    # The limit held in total, across both processes: the relay's slots are shared through
    # the ledger, one interval apart, and no message starts before its slot. So the k-th
    # transaction start comes at least k intervals after the first, less the first one's
    # own way from its slot to the server (a fixed allowance, not one per message).
    interval = 60 / per_minute
    starts = sorted(smtp_server.handler.mail_times)
    for k, start in enumerate(starts):
        assert start - starts[0] >= k * interval - 0.25, f"transaction {k} at +{start - starts[0]:.2f} s"


@pytest.mark.slow  # several CLI runs; fast twin: test_change_control.py's test_a_correction_goes_to_the_lists_the_mistake_went_to
def test_revision_2_reaches_revision_1_recipients_plus_new_members_once(project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    assert project.run("send", "--date", "2024-11-17").returncode == 0
    first_round = set(smtp_server.handler.recipients())
    smtp_server.handler.received.clear()

    politicians = project.root / "recipients/politisk-ledning.yaml"
    data = yaml.safe_load(politicians.read_text(encoding="utf-8"))
    removed = data["members"].pop(0)["email"]
    politicians.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with (project.root / "recipients/chefer.csv").open("a", encoding="utf-8") as handle:
        handle.write("ny.chef@example.org,Ny Chef\n")

    edition = project.root / "reports/2024-11-17.md"
    text = edition.read_text(encoding="utf-8").replace(
        "status: approved",
        "status: approved\nrevision: 2\ncorrection: Återstart för SÄS är flyttad till onsdag morgon.",
    ).replace("planeras till tisdag morgon", "planeras till onsdag morgon")
    edition.write_text(text, encoding="utf-8")
    result = project.run("send", "--date", "2024-11-17")
    assert result.returncode == 0, result.stderr

    second_round = smtp_server.handler.recipients()
    assert len(second_round) == len(set(second_round)), "everyone once"
    assert set(second_round) == (first_round - {removed.lower()}) | {"ny.chef@example.org"}
    message = _parsed(smtp_server.handler.reports()[0])
    assert message["Subject"].startswith("Rättelse: ")
    body = body_text(message)
    assert body.index("Återstart för SÄS är flyttad till onsdag morgon.") < body.index("Beskrivning av händelsen")

    status = project.status()
    assert status["dispatch"] == "2024-11-17.r2.edition"
    names = {d["dispatch"] for d in status["dispatches_of_date"]}
    assert {"2024-11-17.r1.edition", "2024-11-17.r2.edition"} <= names
