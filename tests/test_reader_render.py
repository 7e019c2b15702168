"""Issue 19 in a real browser and a real email checker: long words and addresses on a phone,
`check` and `preview` failing with the line of what is too wide (and `send` not waiting for a
browser), tap targets, and the caniemail data (@jsx-email/doiuse-email under node) on the
inlined HTML of each kind of message for Outlook on Windows and Gmail.

Every test here takes seconds (Chromium starts, CLI processes, node); the fast twins of
what they check are in test_reader.py and test_inbox.py (static checks of the same HTML).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, Project, body_text, copy_project, require_tool
from dispatch.email.screenshots import PHONE_WIDTH, Chromium

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CANIEMAIL = ROOT / "tests" / "caniemail"
URL = "https://insidan.example.org/millennium/lagesbild/2024/11/17/" + "dokument-" * 8 + "bilaga-om-detaljer"  # 150
WORD = "Journalsystemåterstartsplaneringsarbetsgruppsmötesprotokolle"  # 60 letters, no hyphen
EDITION = "reports/2024-11-17.md"
TEMPLATE = "templates/email/edition.html"

pytestmark = pytest.mark.slow  # Chromium, CLI processes and node: see the module docstring for the fast twins


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    require_tool(CHROMIUM, "the phone-width tests need headless Chromium")
    with Chromium() as browser:
        yield browser


def with_long_bullet(project: Project) -> int:
    """A bullet with a 150-character bare address and a 60-character word; returns its line."""
    assert len(URL) == 150 and len(WORD) == 60
    path = project.root / EDITION
    text = path.read_text(encoding="utf-8")
    marker = "## Verksamhetens kommentar\n\n"
    text = text.replace(marker, marker + f"- Läs mer: {URL} och {WORD} från i går.\n")
    path.write_text(text, encoding="utf-8")
    return text.splitlines().index(f"- Läs mer: {URL} och {WORD} från i går.") + 1


def preview_html(project: Project, out: Path) -> Path:
    result = project.run("preview", "--date", "2024-11-17", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out / "2024-11-17.html"


# -- 1. nothing widens the message on a phone ------------------------------------------------------

def test_a_long_address_and_a_long_word_fit_a_phone_and_the_address_is_a_link(
        tmp_path: Path, chromium: Chromium) -> None:
    project = copy_project(tmp_path / "project")
    with_long_bullet(project)
    checked = project.run("check", "--date", "2024-11-17")  # Chromium is installed: check measures the width
    assert checked.returncode == 0, checked.stderr
    page = chromium.open(preview_html(project, tmp_path / "out"), PHONE_WIDTH)
    try:
        width = page.evaluate("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
        link = page.evaluate(f"""(() => {{
          const a = [...document.querySelectorAll('a')].find(a => a.getAttribute('href') === {json.dumps(URL)});
          return a && {{right: a.getBoundingClientRect().right, label: a.textContent}};
        }})()""")
        word = page.evaluate(f"""(() => {{
          const li = [...document.querySelectorAll('li')].find(li => li.textContent.includes({json.dumps(WORD)}));
          return li && li.getBoundingClientRect().right;
        }})()""")
    finally:
        page.close()
    assert width == PHONE_WIDTH, f"the page is {width} px wide on a {PHONE_WIDTH} px phone"
    assert link is not None, "the bare address is a link"
    assert link["right"] <= PHONE_WIDTH and "…" in link["label"], link
    assert word is not None and word <= PHONE_WIDTH


def test_without_the_wrapping_rules_check_names_the_edition_line(tmp_path: Path) -> None:
    """The same edition with word-break taken out of the stylesheet: the word sticks out, and
    check says where it is (so the check, not only the stylesheet, is what protects a phone)."""
    project = copy_project(tmp_path / "project")
    line = with_long_bullet(project)
    css = project.root / "templates/email/edition.css"
    css.write_text(css.read_text(encoding="utf-8").replace(" word-wrap: break-word; word-break: break-word;", ""),
                   encoding="utf-8")
    require_tool(CHROMIUM, "check measures the width in headless Chromium")
    checked = project.run("check", "--date", "2024-11-17")
    assert checked.returncode == 1, checked.stderr
    pattern = (rf"^{re.escape(EDITION)}:{line}: on a phone \(375 px\) the message is (\d+) px wide, "
               rf"so every line scrolls sideways: '{WORD[:50]}'")
    found = re.search(pattern, checked.stderr, re.M)
    assert found and int(found.group(1)) > PHONE_WIDTH, checked.stderr


def test_a_wide_element_fails_check_and_preview_with_its_line_but_send_does_not_wait_for_a_browser(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    path = project.root / TEMPLATE
    text = path.read_text(encoding="utf-8")
    anchor = '<p class="footer-text">{{ footer }}'
    path.write_text(text.replace(anchor, '<div id="bred-testrad" style="width:900px;height:2px"></div>\n' + anchor),
                    encoding="utf-8")
    line = text[: text.index(anchor)].count("\n") + 1
    require_tool(CHROMIUM, "check measures the width in headless Chromium")
    expected = (rf"^{re.escape(TEMPLATE)}:{line}: on a phone \(375 px\) the message is 9\d\d px wide, so every line scrolls "
                r"sideways: a <div> 900 px wide does not fit the screen")
    checked = project.run("check", "--date", "2024-11-17")
    assert checked.returncode == 1 and re.search(expected, checked.stderr, re.M), checked.stderr
    previewed = project.run("preview", "--date", "2024-11-17", "--out", str(tmp_path / "out"))
    assert previewed.returncode == 1 and re.search(expected, previewed.stderr, re.M), previewed.stderr
    assert (tmp_path / "out/2024-11-17.html").exists(), "the files stay, to look at"
    # send does not render in a browser (it must stay fast); the editors' check is the gate.
    sent = project.run("send", "--date", "2024-11-17")
    assert sent.returncode == 0, sent.stderr
    assert "on a phone" not in sent.stderr


def test_check_without_chromium_is_not_an_error_but_says_what_it_did_not_measure(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    missing = str(tmp_path / "no-browser")
    checked = project.run("check", "--date", "2024-11-17", env={"DISPATCH_CHROMIUM": missing})
    assert checked.returncode == 0, checked.stderr
    assert f"note: not measured at a phone's width: DISPATCH_CHROMIUM={missing!r} is not an executable" in checked.stderr
    measured = project.run("check", "--date", "2024-11-17")  # the system's Chromium (CI installs it)
    assert measured.returncode == 0 and "not measured" not in measured.stderr, measured.stderr


def test_reference_links_are_44_px_tap_targets_and_a_quote_has_its_rule(tmp_path: Path, chromium: Chromium) -> None:
    project = copy_project(tmp_path / "project")
    path = project.root / EDITION
    path.write_text(path.read_text(encoding="utf-8") + "\n> Citat från regiondirektören om **läget** i dag.\n",
                    encoding="utf-8")
    page = chromium.open(preview_html(project, tmp_path / "out"), PHONE_WIDTH)
    try:
        heights = page.evaluate("[...document.querySelectorAll('.standing-body a, .footer-link')]"
                                ".map(a => a.getBoundingClientRect().height)")
        quote = page.evaluate("""(() => { const q = document.querySelector('.section-body blockquote');
          const s = getComputedStyle(q), p = q.querySelector('p').getBoundingClientRect();
          return {rule: s.borderLeftWidth, style: s.borderLeftStyle, gap: p.left - q.getBoundingClientRect().left}; })()""")
        indent = page.evaluate("""(() => { const li = document.querySelector('.section-body li');
          return li.getBoundingClientRect().left - li.closest('td').getBoundingClientRect().left; })()""")
    finally:
        page.close()
    assert len(heights) == 5 and min(heights) >= 44, f"tap targets: {heights}"
    assert quote["rule"] == "4px" and quote["style"] == "solid" and quote["gap"] >= 12, quote
    assert 30 <= indent <= 50, f"bullets are indented by the items' margin: {indent} px from the card's edge"


def test_the_boxs_links_jump_to_their_sections_and_a_marked_bullet_lines_up(tmp_path: Path, chromium: Chromium) -> None:
    """Issue 29: the 18 November edition, as delivered after the 17th, in a browser: each link
    of the box at the top lands on its section, and a tinted bullet's text starts where the others' do."""
    project = copy_project(tmp_path / "project")
    maildir = project.root / "var/outbox/new"
    assert project.run("send", "--date", "2024-11-17").returncode == 0
    before = set(maildir.iterdir())
    sent = project.run("send", "--date", "2024-11-18")
    assert sent.returncode == 0, sent.stderr
    parser = BytesParser(policy=policy.default)
    message = next(m for m in (parser.parsebytes(p.read_bytes()) for p in sorted(set(maildir.iterdir()) - before)) if m["List-Id"])
    html = tmp_path / "2024-11-18.html"
    html.write_text(body_text(message, "html"), encoding="utf-8")
    page = chromium.open(html, PHONE_WIDTH)
    try:
        hrefs = page.evaluate("[...document.querySelectorAll('#nytt a')].map(a => a.getAttribute('href'))")
        landed = []
        for index in range(len(hrefs)):
            landed.append(page.evaluate(f"""(() => {{
              window.scrollTo(0, 0);
              const a = document.querySelectorAll('#nytt a')[{index}];
              const target = document.getElementById(a.getAttribute('href').slice(1));
              if (!target) return null;
              a.click();
              const bottom = document.documentElement.scrollHeight - window.innerHeight;
              return {{id: target.id, section: target.classList.contains('section'), scrolled: window.scrollY,
                       top: Math.round(target.getBoundingClientRect().top), atBottom: Math.abs(window.scrollY - bottom) <= 1,
                       height: window.innerHeight}};
            }})()"""))
        lines_up = page.evaluate("""(() => {
          const start = li => li.getBoundingClientRect().left + parseFloat(getComputedStyle(li).paddingLeft);
          const marked = document.querySelector('.section-body li.marked'), plain = document.querySelector('.section-body li:not(.marked)');
          return {marked: start(marked), plain: start(plain),
                  size: getComputedStyle(marked.querySelector('.mark')).fontSize,
                  tint: getComputedStyle(marked).backgroundColor, card: getComputedStyle(plain).backgroundColor};
        })()""")
    finally:
        page.close()
    assert len(hrefs) == 3 and all(h.startswith("#") and len(h) > 1 for h in hrefs), hrefs
    for href, where in zip(hrefs, landed, strict=True):
        assert where is not None and where["section"], f"{href} points at no section"
        # At the top of the screen, or as near as the page goes (a section near the end cannot
        # scroll higher than the page's bottom allows): then it is in view.
        in_view = abs(where["top"]) <= 1 or (where["atBottom"] and 0 <= where["top"] < where["height"] / 2)
        assert where["scrolled"] > 0 and in_view, f"{href} did not jump to its section: {where}"
    assert lines_up["marked"] == lines_up["plain"], lines_up
    assert lines_up["size"] == "16px" and lines_up["tint"] != lines_up["card"], lines_up


# -- 4. the caniemail data on the inlined styles ------------------------------------------------------

def caniemail(html: Path) -> dict[str, Any]:
    node = shutil.which("node") or "/usr/bin/node"
    require_tool(node, "the caniemail checker runs under node")
    require_tool(str(CANIEMAIL / "node_modules" / "@jsx-email" / "doiuse-email" / "package.json"),
                 "the caniemail checker (npm ci --prefix tests/caniemail)")
    result = subprocess.run([node, str(CANIEMAIL / "check.mjs"), str(html)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout)
    assert isinstance(findings, dict), result.stdout
    return findings


# What Outlook for Windows and Gmail are told that they do not support, and may ignore: the
# preheader is hidden four ways because each client honours another one of them.
ALLOWED_ERRORS = {"`opacity` is not supported by `outlook.windows`", "`overflow` is not supported by `outlook.windows`",
                  "`opacity` is not supported by `gmail.mobile-webmail`", "`display:none` is not supported by `gmail.mobile-webmail`"}


def problems(report: dict[str, Any]) -> dict[str, list[str]]:
    """The two kinds of problem the issue names, and anything else the checker calls unsupported."""
    found: dict[str, list[str]] = {"line-height without mso-line-height-rule": [], "padding off a table cell": [], "errors": []}
    for element in report["elements"]:
        style = element["style"].replace(" ", "").lower()
        described = f"<{element['tag']} class={element['class']!r}>"
        if any("`line-height` support for `outlook.windows`" in note for note in element["notes"]) and \
                "mso-line-height-rule:exactly" not in style:
            found["line-height without mso-line-height-rule"].append(described)
        if any("`padding` support for `outlook.windows`" in note for note in element["notes"]) and \
                element["tag"] not in ("td", "th") and not _zero_padding(style):
            found["padding off a table cell"].append(described)
        found["errors"] += [f"{described}: {error}" for error in element["errors"] if error not in ALLOWED_ERRORS]
    return found


def _zero_padding(style: str) -> bool:
    """Every padding declared is 0: a list's browser padding taken away, which asks nothing of
    Word (it has none to take away), unlike padding meant to make space."""
    values = re.findall(r"(?:^|;)padding[a-z-]*:([^;]*)", style)
    return bool(values) and all(re.fullmatch(r"0(px)?", part) for value in values for part in value.split())


@pytest.fixture(scope="module")
def messages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The HTML of each kind of message: the sample edition, the next day's with its markers,
    a correction and an urgent message."""
    root = tmp_path_factory.mktemp("caniemail")
    project = copy_project(root / "project")
    found = {"edition": preview_html(project, root / "edition")}
    assert project.run("send", "--date", "2024-11-17").returncode == 0
    result = project.run("preview", "--date", "2024-11-18", "--out", str(root / "news"))
    assert result.returncode == 0, result.stderr
    found["news"] = root / "news/2024-11-18.html"
    assert project.run("send", "--date", "2024-11-18").returncode == 0
    path = project.root / "reports/2024-11-18.md"
    text = path.read_text(encoding="utf-8").replace("status: approved\n", "status: approved\nrevision: 2\ncorrection: \"Klockan 08:00.\"\n")
    path.write_text(text.replace("07:30", "08:00"), encoding="utf-8")
    result = project.run("preview", "--date", "2024-11-18", "--out", str(root / "correction"))
    assert result.returncode == 0, result.stderr
    found["correction"] = root / "correction/2024-11-18.html"
    result = project.run("preview", "--urgent", "--file", "reports/urgent/sas-akutmottagning.md", "--out", str(root / "urgent"))
    assert result.returncode == 0, result.stderr
    found["urgent"] = root / "urgent/sas-akutmottagning.html"
    return found


@pytest.mark.parametrize("kind", ["edition", "news", "correction", "urgent"])
def test_caniemail_finds_no_outlook_problem_in_the_inlined_styles(messages: dict[str, Path], kind: str) -> None:
    report = caniemail(messages[kind])
    assert report["clients"] == ["outlook.windows", "gmail.*"]
    assert len(report["elements"]) > 20, "every styled element was checked"  # the urgent message has the fewest
    found = problems(report)
    assert found == {"line-height without mso-line-height-rule": [], "padding off a table cell": [], "errors": []}, found
    if kind == "news":
        assert sum(e["class"].startswith("mark ") for e in report["elements"]) == 3, "the markers were checked too"


def test_a_message_that_fitted_once_is_not_measured_again(tmp_path: Path) -> None:
    """Editors run check over and over: an unchanged message does not start the browser again."""
    require_tool(CHROMIUM, "check measures the width in headless Chromium")
    project = copy_project(tmp_path / "project")
    launches = tmp_path / "launches"
    wrapper = tmp_path / "chromium"
    wrapper.write_text(f"#!/bin/sh\necho x >> {launches}\nexec {CHROMIUM} \"$@\"\n", encoding="utf-8")
    wrapper.chmod(0o755)
    env = {"DISPATCH_CHROMIUM": str(wrapper), "DISPATCH_STATE_DIR": str(tmp_path / "state")}
    for _ in range(2):
        checked = project.run("check", "--date", "2024-11-17", env=env)
        assert checked.returncode == 0, checked.stderr
    assert launches.read_text().count("x") == 1, "measured once, then known to fit"
    with_long_bullet(project)  # another message: measured again
    assert project.run("check", "--date", "2024-11-17", env=env).returncode == 0
    assert launches.read_text().count("x") == 2


# -- 5. issue 29: a compact standing block, robust without <style>, no row offset ---------------------

BELOW_LAST_DAILY_BULLET = """(() => {
  const items = [...document.querySelectorAll('.section li')];
  return document.documentElement.scrollHeight - (items[items.length - 1].getBoundingClientRect().bottom + scrollY);
})()"""


def without_styles(html: Path) -> Path:
    """The message as a client that strips every <style> element shows it: inline styles only."""
    stripped = html.with_name(html.stem + "-no-style.html")
    stripped.write_text(re.sub(r"<style\b[^>]*>.*?</style>", "", html.read_text(encoding="utf-8"), flags=re.S | re.I),
                        encoding="utf-8")
    assert "<style" not in stripped.read_text(encoding="utf-8")
    return stripped


def test_below_the_last_daily_bullet_a_phone_shows_at_most_450_px(messages: dict[str, Path], chromium: Chromium) -> None:
    """The standing reference and the footer, the same every day, were 870 px of a phone's scroll."""
    page = chromium.open(messages["edition"], PHONE_WIDTH)
    try:
        below = page.evaluate(BELOW_LAST_DAILY_BULLET)
    finally:
        page.close()
    assert 0 < below <= 450, f"{below} px below the last daily bullet at {PHONE_WIDTH} px"


@pytest.mark.parametrize("width", [320, PHONE_WIDTH])
def test_without_style_elements_lists_indent_little_and_reference_links_are_tap_targets(
        messages: dict[str, Path], chromium: Chromium, width: int) -> None:
    page = chromium.open(without_styles(messages["edition"]), width)
    try:
        indents = page.evaluate("""[...document.querySelectorAll('li')].map(li => {
          const cell = li.closest('td');
          return li.getBoundingClientRect().left - cell.getBoundingClientRect().left - parseFloat(getComputedStyle(cell).paddingLeft);
        })""")
        links = page.evaluate("[...document.querySelectorAll('.standing a, .footer a')].map(a => a.getBoundingClientRect().height)")
        width_seen = page.evaluate("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
    finally:
        page.close()
    assert len(indents) > 20 and max(indents) <= 24, f"list items indent {sorted(set(indents))} px"
    assert len(links) == 5 and min(links) >= 44, f"reference links: {links}"
    assert width_seen <= width


def test_a_reference_link_that_wraps_at_320_px_keeps_its_bullet_beside_its_first_line(
        messages: dict[str, Path], chromium: Chromium) -> None:
    page = chromium.open(messages["edition"], 320)
    try:
        # A link text longer than the sample's, so that one wraps whatever the font's metrics.
        page.evaluate("""document.querySelector('.standing li a').textContent =
                         'Regional rapport dagligen: alla utgåvor sedan fredag 15 november 2024'""")
        items = page.evaluate("""[...document.querySelectorAll('.standing li')].filter(li => li.querySelector('a')).map(li => {
          const a = li.querySelector('a').getBoundingClientRect(), r = li.getBoundingClientRect();
          return {display: getComputedStyle(li).display, marker: getComputedStyle(li).listStyleType,
                  top: a.top - r.top, height: a.height, lines: Math.round((a.height - 22) / 22)};
        })""")
    finally:
        page.close()
    assert any(item["lines"] >= 2 for item in items), f"no reference link wraps at 320 px: {items}"
    for item in items:
        # The bullet sits on the item's first line box, which is the link's first line.
        assert item["display"] == "list-item" and item["marker"] == "disc" and abs(item["top"]) < 1, item


@pytest.mark.parametrize("kind", ["edition", "news", "correction", "urgent"])
def test_no_row_of_the_column_is_offset_at_any_width(messages: dict[str, Path], chromium: Chromium, kind: str) -> None:
    """A 4 px left rule under collapsed borders moved every row 2 px right of the column's edge."""
    offsets = {}
    for width in (320, 375, 414, 600, 800):
        page = chromium.open(messages[kind], width)
        try:
            offsets[width] = page.evaluate("""(() => {
              const table = document.querySelector('table.content'), t = table.getBoundingClientRect();
              return [...table.rows].map(row => { const c = row.cells[0].getBoundingClientRect();
                return [row.cells[0].className, c.left - t.left, t.right - c.right]; });
            })()""")
        finally:
            page.close()
    rows = {cls.split()[0] for cls, _, _ in offsets[375]}
    assert {"masthead", "section" if kind != "urgent" else "lead", "footer"} <= rows
    if kind == "correction":
        assert "notice" in rows
    if kind == "urgent":
        assert "banner" in rows
    shifted = {width: [row for row in found if row[1] != 0 or row[2] != 0] for width, found in offsets.items()}
    assert not any(shifted.values()), shifted


@pytest.mark.parametrize("kind", ["edition", "correction", "urgent"])
def test_secondary_text_is_at_least_15_px(messages: dict[str, Path], chromium: Chromium, kind: str) -> None:
    """Dates, reference, footer and small print. (The Nytt/Ändrat markers are words inside a bullet,
    not secondary text: their size is the markers' own design.)"""
    page = chromium.open(messages[kind], PHONE_WIDTH)
    try:
        small = page.evaluate("""[...document.querySelectorAll('body *')]
          .filter(e => !e.closest('.preheader, .mark') && [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()))
          .map(e => [e.tagName.toLowerCase() + '.' + e.className, parseFloat(getComputedStyle(e).fontSize)])
          .filter(([what, size]) => size < 15)""")
    finally:
        page.close()
    assert not small, f"text under 15 px: {small}"


def test_an_urgent_message_says_when_it_was_sent_and_its_rule_is_the_banners_colour(
        messages: dict[str, Path], chromium: Chromium) -> None:
    html = messages["urgent"]
    text = html.with_suffix(".txt").read_text(encoding="utf-8")
    sent = re.compile(r"Skickat (mån|tis|ons|tors|fre|lör|sön) \d{1,2} (jan|feb|mar|apr|maj|jun|jul|aug|sep|okt|nov|dec) \d\d:\d\d")
    assert sent.search(text) and "Sammanställd" not in text, text[:300]
    page = chromium.open(html, PHONE_WIDTH)
    try:
        seen = page.evaluate("""(() => ({
          compiled: document.querySelector('.masthead-compiled').textContent,
          banner: getComputedStyle(document.querySelector('.banner')).backgroundColor,
          rule: getComputedStyle(document.querySelector('.lead')).borderLeftColor,
          body: document.body.innerText}))()""")
    finally:
        page.close()
    assert sent.fullmatch(seen["compiled"]) and "Sammanställd" not in seen["body"], seen["compiled"]
    assert seen["banner"] == seen["rule"] == "rgb(179, 38, 30)", seen
