"""Issue 9: the intranet copy and its archive, "Visa i webbläsare", and the records export."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from email import policy
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from conftest import PAGE_ONLY_HEADINGS, Project, SMTPServer, body_text, require_tool, seed_headings, unit_of

CHROMIUM = "/usr/bin/chromium"
BASE_URL = "https://intranat.example.org/regional-rapport/"
DAYS = ("2024-11-15", "2024-11-16", "2024-11-17")
MESSAGE_ID = re.compile(r"^<[^<>@\s]+@[^<>@\s]+>$")


class Links(HTMLParser):
    """The links, <h1> text and <html lang> of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.archive: list[str] = []
        self.hrefs: list[str] = []
        self.h1 = ""
        self.lang = ""
        self._in_archive = False
        self._in_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "html":
            self.lang = values.get("lang") or ""
        if tag == "ol" and "archive" in (values.get("class") or ""):
            self._in_archive = True
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"] or "")
            if self._in_archive:
                self.archive.append(values["href"] or "")
        if tag == "h1":
            self._in_h1 = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "ol":
            self._in_archive = False
        if tag == "h1":
            self._in_h1 = False

    def handle_data(self, data: str) -> None:
        if self._in_h1:
            self.h1 += data


def parse(path: Path) -> Links:
    links = Links()
    links.feed(path.read_text(encoding="utf-8"))
    return links


def _write_editions(project: Project) -> None:
    """Three approved editions, compiled at different times, from the sample's body."""
    sample = (project.root / "reports" / "2024-11-17.md").read_text(encoding="utf-8")
    for number, day in enumerate(DAYS):
        text = sample.replace("compiled: 2024-11-17 14:00", f"compiled: {day} {13 + number}:30")
        (project.root / "reports" / f"{day}.md").write_text(text, encoding="utf-8")


def _measure(pages: list[Path], width: int) -> dict[str, Any]:
    """scrollWidth and the archive's resolved links of each page in a real headless Chromium."""
    from dispatch.email.screenshots import Chromium

    found: dict[str, Any] = {}
    with Chromium(CHROMIUM) as browser:
        for page_path in pages:
            page = browser.open(page_path, width)
            try:
                found[page_path.name] = page.evaluate(
                    "({scroll: document.documentElement.scrollWidth,"
                    " lang: document.documentElement.lang,"
                    " links: Array.from(document.querySelectorAll('.archive a')).map(a => a.href)})"
                )
            finally:
                page.close()
    return found


@pytest.mark.slow  # Chromium rendering
def test_archive_lists_three_editions_newest_first_and_fits_a_phone(project: Project, tmp_path: Path) -> None:
    require_tool(CHROMIUM, "the archive and edition pages are measured in headless Chromium")
    intranet = tmp_path / "intranet"
    project.set_config(publish__dir=str(intranet))
    _write_editions(project)
    for day in ("2024-11-16", "2024-11-17", "2024-11-15"):  # out of order on purpose
        result = project.run("publish", "--date", day)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [str(intranet / f"{day}.html"), str(intranet / "index.html")]

    index = parse(intranet / "index.html")
    assert index.lang == "sv"
    assert index.archive == [f"{day}.html" for day in reversed(DAYS)]
    text = (intranet / "index.html").read_text(encoding="utf-8")
    positions = [text.index(label) for label in ("Söndag 17 november 2024", "Lördag 16 november 2024", "Fredag 15 november 2024")]
    assert positions == sorted(positions)
    for number, day in enumerate(DAYS):
        assert f"Sammanställd: {day} klockan {13 + number}:30" in text
    for href in index.archive:
        assert "/" not in href and ":" not in href  # relative, beside the index
        page = parse(intranet / href)
        assert page.lang == "sv"
        assert "index.html" in page.hrefs  # and back to the archive
    assert parse(intranet / "2024-11-15.html").h1 == "Fredag 15 november 2024"

    manifest = json.loads((intranet / "editions.json").read_text(encoding="utf-8"))
    assert [e["date"] for e in manifest["editions"]] == list(reversed(DAYS))

    # Re-publishing replaces the page and keeps one entry per date.
    source = project.root / "reports" / "2024-11-16.md"
    source.write_text(source.read_text(encoding="utf-8").replace("Asynja", "Asynja (ändrat)"), encoding="utf-8")
    assert project.run("publish", "--date", "2024-11-16").returncode == 0
    assert "Asynja (ändrat)" in (intranet / "2024-11-16.html").read_text(encoding="utf-8")
    assert parse(intranet / "index.html").archive == [f"{day}.html" for day in reversed(DAYS)]
    assert not [p for p in intranet.iterdir() if p.name.endswith(".tmp")]

    measured = _measure([intranet / "index.html", intranet / "2024-11-17.html"], 375)
    archive = measured["index.html"]
    assert archive["scroll"] <= 375, archive
    # The links Chromium resolved lead to the pages that exist.
    assert archive["links"] == [(intranet / f"{day}.html").as_uri() for day in reversed(DAYS)]
    assert measured["2024-11-17.html"]["scroll"] <= 375, measured["2024-11-17.html"]
    assert measured["2024-11-17.html"]["lang"] == "sv"


def test_web_page_is_its_own_markup_with_the_whole_edition(project: Project, tmp_path: Path) -> None:
    intranet = tmp_path / "intranet"
    project.set_config(publish__dir=str(intranet))
    report = project.root / "reports" / "2024-11-17.md"
    report.write_text(report.read_text(encoding="utf-8") + "\n- Skript <script>alert(1)</script> visas som text.\n", encoding="utf-8")
    assert project.run("publish", "--date", "2024-11-17").returncode == 0, "publish failed"
    html = (intranet / "2024-11-17.html").read_text(encoding="utf-8")
    assert 'role="presentation"' not in html and "<table" not in html  # not the email markup
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "<main" in html and 'class="skip-link"' in html
    for heading in seed_headings() + PAGE_ONLY_HEADINGS:  # the page has every standing section
        assert heading in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert (intranet / "2024-11-17.html").stat().st_mode & 0o777 == 0o644  # the web server can read it


def test_draft_is_not_published(project: Project, tmp_path: Path) -> None:
    intranet = tmp_path / "intranet"
    project.set_config(publish__dir=str(intranet))
    report = project.root / "reports" / "2024-11-17.md"
    report.write_text(report.read_text(encoding="utf-8").replace("status: approved", "status: draft"), encoding="utf-8")
    result = project.run("publish", "--date", "2024-11-17")
    assert result.returncode == 1
    assert "reports/2024-11-17.md:3:" in result.stderr and "draft" in result.stderr
    assert not (intranet / "2024-11-17.html").exists()


# -- interrupted publishing ----------------------------------------------------


def _settings_and_edition(project: Project, day: str) -> tuple[Any, Any]:
    from datetime import date, datetime

    from dispatch import app
    from dispatch.config import load_settings

    settings = load_settings(project.config_path)
    now = datetime(2024, 11, 17, 15, 0, tzinfo=settings.timezone)
    return settings, app.read_edition(unit_of(settings), date.fromisoformat(day), None, now)


def test_the_accessibility_statement_is_written_under_the_publish_lock(project: Project, tmp_path: Path) -> None:
    """Two publishers at once (two `serve` nodes, or serve and an operator's publish): the one
    holding the lock clears leftover temporary files, so a page written without the lock could
    lose its temporary file before its rename (seen: FileNotFoundError from a service's send)."""
    import fcntl
    import os
    from datetime import date, datetime

    from dispatch.publishing.accessibility_statement import write_statement
    from dispatch.publishing.intranet import PublishError, publish_edition

    intranet = tmp_path / "intranet"
    settings, edition = _settings_and_edition(project, "2024-11-17")
    publish_edition(edition, intranet, settings.templates_dir, datetime(2024, 11, 17, 15, 0, tzinfo=settings.timezone))
    renamed: list[str] = []

    def replace_holding_the_lock(source: Any, target: Any) -> None:
        other = os.open(intranet / ".publish.lock", os.O_RDWR)  # another open file: flock sees another owner
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
        renamed.append(Path(target).name)
        os.replace(source, target)

    today = date(2024, 11, 17)
    write_statement(settings.accessibility, settings.report.title, settings.templates_dir, intranet, today,
                    replace=replace_holding_the_lock)
    assert renamed == ["tillganglighet.html"]
    assert "Tillgänglighetsredogörelse" in (intranet / "tillganglighet.html").read_text(encoding="utf-8")

    # Like the edition pages, the statement is never written through a symbolic link.
    (intranet / "tillganglighet.html").unlink()
    (intranet / "tillganglighet.html").symlink_to(tmp_path / "elsewhere.html")
    with pytest.raises(PublishError, match="symbolic link"):
        write_statement(settings.accessibility, settings.report.title, settings.templates_dir, intranet, today)
    assert not (tmp_path / "elsewhere.html").exists()


def test_interrupted_rename_leaves_the_previous_page_intact(project: Project, tmp_path: Path) -> None:
    from datetime import datetime

    from dispatch.publishing.intranet import publish_edition

    intranet = tmp_path / "intranet"
    project.set_config(publish__dir=str(intranet))
    settings, edition = _settings_and_edition(project, "2024-11-17")
    now = datetime(2024, 11, 17, 15, 0, tzinfo=settings.timezone)
    publish_edition(edition, intranet, settings.templates_dir, now)
    before = {p.name: p.read_bytes() for p in intranet.iterdir()}

    report = project.root / "reports" / "2024-11-17.md"
    report.write_text(report.read_text(encoding="utf-8").replace("Asynja", "NYTT INNEHÅLL"), encoding="utf-8")
    _, changed = _settings_and_edition(project, "2024-11-17")
    written: list[Path] = []

    class Interrupted(Exception):
        pass

    def interrupted(source: Any, target: Any) -> None:
        # The new page is complete and fsynced under its temporary name; the rename never happens.
        written.append(Path(source))
        assert "NYTT INNEHÅLL" in Path(source).read_text(encoding="utf-8")
        raise Interrupted()

    with pytest.raises(Interrupted):
        publish_edition(changed, intranet, settings.templates_dir, now, replace=interrupted)
    assert written and written[0].parent == intranet  # same directory, so the rename is atomic
    after = {p.name: p.read_bytes() for p in intranet.iterdir()}
    assert after == before  # page, index and manifest untouched; the temporary file removed


@pytest.mark.slow  # a process killed part-way (the fast twin: test_interrupted_rename_leaves_the_previous_page_intact)
def test_killed_between_write_and_rename_keeps_the_old_page(project: Project, tmp_path: Path) -> None:
    intranet = tmp_path / "intranet"
    project.set_config(publish__dir=str(intranet))
    assert project.run("publish", "--date", "2024-11-17").returncode == 0
    old_page = (intranet / "2024-11-17.html").read_bytes()
    old_index = (intranet / "index.html").read_bytes()
    report = project.root / "reports" / "2024-11-17.md"
    report.write_text(report.read_text(encoding="utf-8").replace("Asynja", "NYTT INNEHÅLL"), encoding="utf-8")

    # A real process killed by SIGKILL at the rename of the page: nothing gets to clean up.
    script = (
        "import os, signal, sys\n"
        "real = os.replace\n"
        "def dying(source, target):\n"
        "    if str(target).endswith('2024-11-17.html'):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    real(source, target)\n"
        "os.replace = dying\n"  # before dispatch.publishing.intranet binds it as the default
        "from dispatch.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    killed = subprocess.run(
        [sys.executable, "-c", script, "--config", str(project.config_path), "publish", "--date", "2024-11-17"],
        cwd=project.root, capture_output=True, text=True, timeout=120,
    )
    assert killed.returncode == -9, killed.stderr
    assert (intranet / "2024-11-17.html").read_bytes() == old_page
    assert (intranet / "index.html").read_bytes() == old_index
    leftovers = [p for p in intranet.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and "NYTT INNEHÅLL" in leftovers[0].read_text(encoding="utf-8")

    # The next publish completes and clears what the killed one left behind.
    assert project.run("publish", "--date", "2024-11-17").returncode == 0
    assert "NYTT INNEHÅLL" in (intranet / "2024-11-17.html").read_text(encoding="utf-8")
    assert not [p for p in intranet.iterdir() if p.name.endswith(".tmp")]


# -- send publishes, and links to the page -----------------------------------------


def _html_part(data: bytes) -> str:
    message = BytesParser(policy=policy.default).parsebytes(data)
    return body_text(message, "html")


def test_sent_email_links_to_the_published_page(project: Project, smtp_server: SMTPServer) -> None:
    project.use_smtp(smtp_server)
    project.set_config(publish__on_send=True, publish__base_url=BASE_URL)
    result = project.run("send", "--date", "2024-11-17")
    assert result.returncode == 0, result.stderr
    assert smtp_server.handler.received

    for received in smtp_server.handler.received[:3]:
        html = _html_part(received.data)
        links = re.findall(r'<a[^>]*href="([^"]+)"[^>]*>Visa i webbläsare</a>', html)
        assert links == [BASE_URL + "2024-11-17.html"]
        text = body_text(BytesParser(policy=policy.default).parsebytes(received.data))
        assert f"Visa i webbläsare:\n{BASE_URL}2024-11-17.html" in text.replace("\r\n", "\n")  # own line: text lines <= 78

    # The link's path below base_url is the page in publish.dir, written by the send.
    page = project.root / "var" / "intranet" / links[0][len(BASE_URL):]
    assert page.is_file()
    published = page.read_text(encoding="utf-8")
    assert '<html lang="sv">' in published and 'role="presentation"' not in published
    for heading in seed_headings() + PAGE_ONLY_HEADINGS:
        assert heading in published
    assert parse(project.root / "var" / "intranet" / "index.html").archive == ["2024-11-17.html"]


def test_quick_start_send_also_publishes(project: Project) -> None:
    result = project.run("send", "--date", "2024-11-17")  # the shipped config, Maildir transport
    assert result.returncode == 0, result.stderr
    intranet = project.root / "var" / "intranet"
    assert parse(intranet / "index.html").archive == ["2024-11-17.html"]
    assert (intranet / "2024-11-17.html").is_file()


def test_a_section_with_in_email_false_is_on_the_page_and_in_no_part_of_the_email(project: Project) -> None:
    """Issue 29: "Om Regional rapport ..." (in_email: false in the shipped config) is reference for
    the intranet page; the email, HTML and text, leaves it out. Publishing again after the send
    (from the content kept in the ledger) still has it, in its place."""
    result = project.run("send", "--date", "2024-11-17")  # the shipped config, Maildir transport
    assert result.returncode == 0, result.stderr
    delivered = sorted((project.root / "var" / "outbox" / "new").iterdir())[0]
    message = BytesParser(policy=policy.default).parsebytes(delivered.read_bytes())
    html = body_text(message, "html")
    text = body_text(message)
    about, about_text = PAGE_ONLY_HEADINGS[0], "Rapporten tas fram i syfte"
    for part in (html, text):
        assert "Talespersoner VGR" in part and about not in part and about_text not in part
    page = project.root / "var" / "intranet" / "2024-11-17.html"
    for published in (page.read_text(encoding="utf-8"), _published_again(project, page)):
        assert about in published and about_text in published
        assert published.index("Talespersoner VGR") < published.index(about), "in its configured place"


def _published_again(project: Project, page: Path) -> str:
    page.unlink()
    result = project.run("publish", "--date", "2024-11-17")
    assert result.returncode == 0, result.stderr
    return page.read_text(encoding="utf-8")


def test_test_sends_and_urgent_messages_do_not_publish(project: Project, tmp_path: Path) -> None:
    project.set_config(publish__on_send=True, publish__base_url=BASE_URL)
    intranet = project.root / "var" / "intranet"
    assert project.run("send", "--date", "2024-11-17", "--to", "test@example.org").returncode == 0
    assert not intranet.exists()
    message = tmp_path / "brådskande.md"
    message.write_text("---\nsubject: Driftstörning i journalsystemet\n---\n\nSystemet är nere.\n", encoding="utf-8")
    result = project.run("send", "--urgent", "--file", str(message), "--to", "test@example.org")
    assert result.returncode == 0, result.stderr
    assert not intranet.exists()  # an urgent message would overwrite that day's report page


# -- the records export -----------------------------------------------------------------


def _same(received: str, stored: str) -> bool:
    return received.replace("\r\n", "\n").rstrip("\n") == stored.replace("\r\n", "\n").rstrip("\n")


@pytest.mark.slow  # a send and three exports; fast twin: test_exports_and_the_ledger_are_private_and_pages_stay_readable
def test_export_holds_every_recipient_with_state_and_message_id(project: Project, smtp_server: SMTPServer, tmp_path: Path) -> None:
    refused = "anna.johansson@example.org"
    smtp_server.handler.rcpt_reply = lambda address: "550 5.1.1 Mailbox unavailable" if address.lower() == refused else None
    project.use_smtp(smtp_server)
    result = project.run("send", "--date", "2024-11-17")
    assert result.returncode == 3, result.stderr
    status = project.status()
    name = status["dispatch"]

    exported = project.run("export", name)
    assert exported.returncode == 0, exported.stderr
    document = json.loads(exported.stdout)
    assert document["dispatch"] == name and document["edition"] == "2024-11-17"
    assert document["counts"] == status["counts"]
    by_email = {r["email"]: r for r in document["recipients"]}
    assert len(by_email) == len(status["recipients"]) == 49
    for row in status["recipients"]:
        record = by_email[row["email"]]
        assert record["state"] == row["state"]
        assert MESSAGE_ID.match(record["message_id"]), record
        assert record["created_at"] and record["updated_at"] and record["first_attempt_at"]
    assert by_email[refused]["state"] == "failed" and "550" in by_email[refused]["reply"]
    assert {r["state"] for r in by_email.values()} == {"sent", "failed"}
    assert all(r["sent_at"] for r in by_email.values() if r["state"] == "sent")

    # What was sent, stored at send time: the source, and the HTML/text each recipient got,
    # under the Message-ID the ledger recorded for them.
    [content] = document["contents"]
    assert content["source_text"] == (project.root / "reports" / "2024-11-17.md").read_text(encoding="utf-8")
    editions = [r for r in smtp_server.handler.received if r.rcpt_tos[0].lower() in by_email]  # not the summary to notify
    assert len(editions) == 48
    for received in editions:
        message = BytesParser(policy=policy.default).parsebytes(received.data)
        [address] = received.rcpt_tos
        assert by_email[address.lower()]["message_id"] == message["Message-ID"]
        # (MIME ends a part with a line break of its own; otherwise the bytes are the same.)
        assert _same(body_text(message, "html"), content["html"])
        assert _same(body_text(message), content["text"])
        assert message["Subject"] == content["subject"]

    as_csv = project.run("export", name, "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout, newline="")))
    assert len(rows) == 49
    assert {r["email"]: r["state"] for r in rows} == {e: r["state"] for e, r in by_email.items()}
    assert all(MESSAGE_ID.match(r["message_id"]) for r in rows)
    assert {r["dispatch"] for r in rows} == {name}

    out = tmp_path / "records"
    written = project.run("export", name, "--format", "csv", "--out", str(out))
    assert written.returncode == 0, written.stderr
    paths = [Path(line) for line in written.stdout.split()]
    assert [p.name for p in paths] == [f"{name}.csv", f"{name}.source.md", f"{name}.html", f"{name}.txt"]
    with paths[0].open(encoding="utf-8", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 49
    assert paths[2].read_text(encoding="utf-8") == content["html"]


def test_export_of_an_unknown_dispatch_fails(project: Project) -> None:
    result = project.run("export", "1999-01-01.r1.edition")
    assert result.returncode == 1
    assert "no dispatch" in result.stderr
    assert result.stdout == ""
