"""Issue 4 end to end: recipient lists through the CLI against a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import re
from email.header import decode_header, make_header
from email.utils import getaddresses

import pytest

from conftest import Project, Received, SMTPServer

DATE = "2024-11-17"
SUBJECT = "sön 17 nov: Regional rapport Millennium 2024"  # what changes daily first (issue 19)
SAMPLE_PEOPLE = 49  # 11 + 40 on the two sample lists, 2 people on both
TRICKY_NAME = 'Häggström, Åke "Åke H"'

LEDNING = """\
# Political leadership, with the entries HR exports really contain.
name: Politisk ledning
members:
  - {email: anna.johansson@example.org, name: Anna Johansson}
  - {email: erik.lindqvist@example.org, name: Erik Lindqvist}
  - {email: ake.haggstrom@example.org, name: 'Häggström, Åke "Åke H"'}
  - {email: "maria.andersson@@example.org", name: Maria Andersson}
  - {email: eve@example.org, name: "Eve\\r\\nBcc: everyone@example.org"}
  - {email: lars.nilsson@example.org, name: Lars Nilsson}
"""
INVALID_LINE, NEWLINE_LINE = 7, 8

# Swedish Excel: "CSV UTF-8" with BOM, semicolons, CRLF.
CHEFER = (
    "Förnamn Efternamn;E-post-alias;email;name\r\n"
    "x;x;ANNA.JOHANSSON@EXAMPLE.ORG;A. Johansson (chef)\r\n"
    "x;x;bengt.carlsson@example.org;Carlsson, Bengt\r\n"
    "x;x;left.region@example.org;Slutat Person\r\n"
    "x;x;cecilia.ek@example.org;Cecilia Ek\r\n"
)
SUPPRESSED = "# Left the region; HR ticket 4711\nLeft.Region@Example.org\n"


def reports(server: SMTPServer) -> list[Received]:
    """Report messages (they carry List-Id), not the completion summary to `notify`."""
    return server.handler.reports()


def rfc2047_to(message: Received) -> tuple[str, str]:
    """(display name, address) of the To header, decoded as RFC 2047 says."""
    raw = message.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    to = re.search(r"^To: ([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", raw, re.M | re.I)
    assert to is not None
    ((name, address),) = getaddresses([re.sub(r"\r\n(?=[ \t])", "", to.group(1))])  # unfolded: RFC 5322 2.2.3
    return str(make_header(decode_header(name))), address


@pytest.fixture
def hr_project(project: Project, smtp_server: SMTPServer) -> Project:
    project.use_smtp(smtp_server)
    (project.root / "recipients/politisk-ledning.yaml").write_text(LEDNING, encoding="utf-8")
    (project.root / "recipients/chefer.csv").write_text(CHEFER, encoding="utf-8-sig", newline="")
    (project.root / "recipients/suppressed.txt").write_text(SUPPRESSED, encoding="utf-8")
    return project


def test_send_reaches_everyone_valid_once_and_records_each_invalid_entry(hr_project: Project, smtp_server: SMTPServer) -> None:
    result = hr_project.run("send", "--date", DATE)
    assert result.returncode == 3, result.stderr
    ledning = "recipients/politisk-ledning.yaml"
    assert f"{ledning}:{INVALID_LINE}: invalid address 'maria.andersson@@example.org'" in result.stderr
    assert f"{ledning}:{NEWLINE_LINE}: the name contains a line break" in result.stderr

    received = reports(smtp_server)
    delivered = sorted(r.lower() for m in received for r in m.rcpt_tos)
    valid = sorted([
        "anna.johansson@example.org", "erik.lindqvist@example.org", "ake.haggstrom@example.org",
        "lars.nilsson@example.org", "bengt.carlsson@example.org", "cecilia.ek@example.org",
    ])
    # One message each: the case-variant duplicate in the CSV is Anna, once; the
    # suppressed address and both rejected entries get nothing.
    assert delivered == valid
    assert len(received) == len(valid)

    by_address = {m.rcpt_tos[0].lower(): m for m in received}
    # The first display name seen (the YAML's) is kept for the folded duplicate.
    assert rfc2047_to(by_address["anna.johansson@example.org"]) == ("Anna Johansson", "anna.johansson@example.org")
    name, address = rfc2047_to(by_address["ake.haggstrom@example.org"])
    assert (name, address) == (TRICKY_NAME, "ake.haggstrom@example.org")
    assert by_address["ake.haggstrom@example.org"].message["To"].addresses[0].display_name == TRICKY_NAME
    # A CSV name with a comma arrives quoted, decoding to itself.
    assert rfc2047_to(by_address["bengt.carlsson@example.org"])[0] == "Carlsson, Bengt"
    for message in received:
        head = message.data.split(b"\r\n\r\n", 1)[0]
        assert b"\r\nBcc:" not in head and b"everyone@example.org" not in message.data
        assert message.message["Subject"] == SUBJECT

    status = hr_project.status()
    assert status["counts"]["sent"] == len(valid)
    assert status["counts"]["failed"] == 2
    failed = {r["email"]: r for r in status["recipients"] if r["state"] == "failed"}
    assert set(failed) == {"maria.andersson@@example.org", "eve@example.org"}
    assert failed["maria.andersson@@example.org"]["reply"].startswith(f"{ledning}:{INVALID_LINE}: invalid address")
    assert failed["eve@example.org"]["reply"].startswith(f"{ledning}:{NEWLINE_LINE}: the name contains a line break")
    assert "left.region@example.org" not in {r["email"].lower() for r in status["recipients"]}

    # Resuming sends nobody twice; the invalid entries stay failed, so still exit 3.
    again = hr_project.run("send", "--date", DATE)
    assert again.returncode == 3, again.stderr
    assert len(reports(smtp_server)) == len(valid)


def test_check_and_recipients_report_invalid_entries_and_exit_1(hr_project: Project, smtp_server: SMTPServer) -> None:
    check = hr_project.run("check", "--date", DATE)
    assert check.returncode == 1
    assert re.search(rf"^recipients/politisk-ledning\.yaml:{INVALID_LINE}: invalid address", check.stderr, re.M)
    assert re.search(rf"^recipients/politisk-ledning\.yaml:{NEWLINE_LINE}: the name contains", check.stderr, re.M)

    listing = hr_project.run("recipients", "--json")
    assert listing.returncode == 1
    report = json.loads(listing.stdout)
    lists = {entry["list"]: entry for entry in report["lists"]}
    assert lists["politisk-ledning"]["name"] == "Politisk ledning"
    assert lists["politisk-ledning"]["members"] == 4 and lists["politisk-ledning"]["invalid"] == 2
    assert lists["chefer"]["members"] == 3 and lists["chefer"]["suppressed"] == 1
    assert report["overlaps"] == [{"lists": ["politisk-ledning", "chefer"], "shared": 1}]
    assert report["recipients"] == 6
    assert [(p["path"], p["line"]) for p in report["problems"]] == [
        ("recipients/politisk-ledning.yaml", INVALID_LINE), ("recipients/politisk-ledning.yaml", NEWLINE_LINE),
    ]
    assert "recipients/politisk-ledning.yaml:7: invalid address" in listing.stderr

    text = hr_project.run("recipients", "chefer")
    assert text.returncode == 0, text.stderr  # chefer alone has no problems
    assert "chefer: 3 members, 1 suppressed" in text.stdout
    assert smtp_server.handler.received == []


def test_recipients_of_the_sample_project(project: Project) -> None:
    result = project.run("recipients", "--json", "--members")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(e["list"], e["members"], e["suppressed"]) for e in report["lists"]] == [
        ("politisk-ledning", 11, 0), ("chefer", 40, 0),
    ]
    assert report["recipients"] == SAMPLE_PEOPLE and report["problems"] == []
    assert report["overlaps"] == [{"lists": ["politisk-ledning", "chefer"], "shared": 2}]
    chefer = {row["email"] for row in report["lists"][1]["addresses"]}
    # The CSV's Karin.Eriksson is the YAML's karin.eriksson: one person, first spelling seen.
    assert "karin.eriksson@example.org" in chefer and "Karin.Eriksson@example.org" not in chefer

    unknown = project.run("recipients", "nope")
    assert unknown.returncode == 1 and "unknown recipient list 'nope'" in unknown.stderr


def test_include_cycle_stops_the_send_and_names_the_files(project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    recipients = project.root / "recipients"
    (recipients / "chefer.csv").unlink()
    (recipients / "chefer.yaml").write_text("name: Chefer\nmembers: [a@example.org]\ninclude: [regionchefer]\n", encoding="utf-8")
    (recipients / "regionchefer.yaml").write_text("name: Regionchefer\nmembers: [b@example.org]\ninclude: [chefer]\n", encoding="utf-8")

    result = project.run("send", "--date", DATE)
    assert result.returncode == 1
    assert ("recipients/regionchefer.yaml:3: include cycle: recipients/chefer.yaml -> "
            "recipients/regionchefer.yaml -> recipients/chefer.yaml") in result.stderr
    assert smtp_server.handler.received == []
    assert project.status()["dispatch"] is None

    check = project.run("check", "--date", DATE)
    assert check.returncode == 1 and "include cycle" in check.stderr
    listing = project.run("recipients", "--json")
    assert listing.returncode == 1 and "include cycle" in json.loads(listing.stdout)["problems"][0]["message"]


@pytest.mark.slow  # several CLI runs; fast twin: test_test_send_to_an_invalid_address_sends_nothing
def test_test_send_reaches_only_the_given_addresses_and_the_real_send_still_reaches_everyone(
    project: Project, smtp_server: SMTPServer,
) -> None:
    project.use_smtp(smtp_server)
    # anna.johansson is a list member too: the test send must not count as her delivery.
    result = project.run("send", "--date", DATE, "--to", "Anna.Johansson@Example.org", "--to", "redaktion@example.org")
    assert result.returncode == 0, result.stderr
    test_messages = reports(smtp_server)
    assert sorted(r.lower() for m in test_messages for r in m.rcpt_tos) == ["anna.johansson@example.org", "redaktion@example.org"]
    assert {m.message["Subject"] for m in test_messages} == {f"[TEST] {SUBJECT}"}
    test_status = project.status()
    assert test_status["dispatch"] != f"{DATE}.r1.edition" and "test" in test_status["dispatch"]
    assert test_status["counts"]["sent"] == 2

    real = project.run("send", "--date", DATE)
    assert real.returncode == 0, real.stderr
    real_messages = reports(smtp_server)[len(test_messages):]
    delivered = [r.lower() for m in real_messages for r in m.rcpt_tos]
    assert len(delivered) == len(set(delivered)) == SAMPLE_PEOPLE
    assert "anna.johansson@example.org" in delivered
    assert {m.message["Subject"] for m in real_messages} == {SUBJECT}
    status = project.status()
    assert status["dispatch"] == f"{DATE}.r1.edition"
    assert status["counts"]["sent"] == SAMPLE_PEOPLE
    # The test dispatch is still there under its own name.
    assert project.status(test_status["dispatch"])["counts"]["sent"] == 2


def test_test_send_to_an_invalid_address_sends_nothing(project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    result = project.run("send", "--date", DATE, "--to", "jörg@example.org")
    assert result.returncode == 1
    assert "SMTPUTF8" in result.stderr
    assert smtp_server.handler.received == []
