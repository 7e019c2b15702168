"""Issue 3: what recipients see. The sample edition in a real headless Chromium and a
real SpamAssassin, the colours checked against WCAG, the inlined HTML against the
email checklist (../shared/EMAIL-CHECKLIST.md)."""

from __future__ import annotations

import itertools
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from email import policy
from email.parser import BytesParser
from pathlib import Path

import lxml.html
import pytest

from conftest import ROOT, Project, copy_project, require_tool, seed_headings
from dispatch.email.screenshots import Chromium, take_screenshots

DATE = "2024-11-17"
PHONE, DESKTOP, COLUMN = 375, 800, 600
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SPAMASSASSIN = shutil.which("spamassassin") or "/usr/bin/spamassassin"
FORBIDDEN_RULES = re.compile(
    r"^(MIME_HTML_ONLY|MPART_ALT_DIFF|HTML_IMAGE_ONLY_\w+|HTML_IMAGE_RATIO_\w+|HTML_TITLE_SUBJ_DIFF"
    r"|HTML_FONT_LOW_CONTRAST|OBFUSCATING_COMMENT|MISSING_DATE|MISSING_MID)$"
)


# --- the sample, rendered once for the whole module -----------------------------------

@pytest.fixture(scope="module")
def preview(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`dispatch preview` of the sample edition in a copy of the project: .html, .txt, .eml."""
    root = tmp_path_factory.mktemp("inbox") / "project"
    result = copy_project(root).run("preview", "--date", DATE, "--out", str(root / "out"))
    assert result.returncode == 0, result.stderr
    # cssutils reports every mso-*/-webkit-* property; render.py keeps that out of the terminal.
    assert "Unknown Property" not in result.stderr and "WARNING" not in result.stderr, result.stderr
    return {path.suffix: path for path in map(Path, result.stdout.split())}


@pytest.fixture(scope="module")
def html(preview: dict[str, Path]) -> str:
    return preview[".html"].read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    """One browser for the module: starting Chromium costs about a second."""
    require_tool(CHROMIUM, "rendering tests need headless Chromium")
    with Chromium() as browser:
        yield browser


# --- 1. layout in a real browser --------------------------------------------------------

HEADING_BOXES = """
[...document.querySelectorAll('h1, h2')].map(h => {
  const r = h.getBoundingClientRect(), s = getComputedStyle(h);
  return {text: h.textContent.trim(), left: r.left, right: r.right, width: r.width, height: r.height,
          visible: s.display !== 'none' && s.visibility !== 'hidden' && parseFloat(s.opacity) > 0,
          color: s.color, fontSize: parseFloat(s.fontSize)};
})
"""


@pytest.mark.slow  # Chromium rendering
def test_phone_has_no_horizontal_scroll_and_every_heading_shows(chromium: Chromium, preview: dict[str, Path]) -> None:
    page = chromium.open(preview[".html"], PHONE)
    try:
        scroll_width = page.evaluate("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
        assert scroll_width <= PHONE, f"horizontal scroll on a phone: the page is {scroll_width} px wide"
        boxes = {box["text"]: box for box in page.evaluate(HEADING_BOXES)}
        for heading in seed_headings():
            box = boxes.get(heading)
            assert box, f"heading {heading!r} missing"
            assert box["visible"] and box["width"] > 0 and box["height"] > 0, f"{heading!r} is not visible"
            assert box["left"] >= 0 and box["right"] <= PHONE, f"{heading!r} runs off the screen: {box}"

        # The compiled time and the day's first line are on the first phone screen.
        first_screen = page.evaluate("""(() => {
          const compiled = [...document.querySelectorAll('p')].find(p => p.textContent.startsWith('Sammanställd'));
          const first = document.querySelector('.lead, .section li, .section p');
          return {compiled: compiled && compiled.getBoundingClientRect().bottom,
                  first: first && first.getBoundingClientRect().bottom, screen: window.innerHeight};
        })()""")
        assert first_screen["compiled"] and first_screen["compiled"] < first_screen["screen"], first_screen
        assert first_screen["first"] and first_screen["first"] < first_screen["screen"], first_screen
        # Body text stays readable without zooming.
        assert page.evaluate("parseFloat(getComputedStyle(document.querySelector('.section li')).fontSize)") >= 16
    finally:
        page.close()


@pytest.mark.slow  # Chromium rendering
def test_desktop_content_column_is_at_most_600_px(chromium: Chromium, preview: dict[str, Path]) -> None:
    page = chromium.open(preview[".html"], DESKTOP)
    try:
        widths = page.evaluate("""[...document.querySelectorAll('.masthead, .section, .standing, .footer')]
                                  .map(e => e.getBoundingClientRect().width)""")
        assert widths and max(widths) <= COLUMN, f"content column {max(widths)} px wide"
        assert min(widths) >= COLUMN - 1, "the column should use its 600 px on a desktop"
        assert page.evaluate("document.documentElement.scrollWidth") <= DESKTOP
    finally:
        page.close()


@pytest.mark.slow  # Chromium rendering
def test_dark_mode_switches_to_the_dark_palette(chromium: Chromium, preview: dict[str, Path]) -> None:
    page = chromium.open(preview[".html"], PHONE, dark=True)
    try:
        colours = page.evaluate("""(() => {
          const get = (sel, prop) => getComputedStyle(document.querySelector(sel))[prop];
          return {card: get('.section', 'backgroundColor'), text: get('.section li', 'color'),
                  page: get('.outer', 'backgroundColor'), link: get('.standing-body a', 'color')};
        })()""")
    finally:
        page.close()
    assert colours == {
        "card": "rgb(26, 31, 38)", "text": "rgb(232, 236, 240)",
        "page": "rgb(15, 19, 24)", "link": "rgb(140, 196, 255)",
    }


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow  # Chromium rendering
def test_take_screenshots_writes_three_pngs(chromium: Chromium, preview: dict[str, Path], tmp_path: Path) -> None:
    paths = take_screenshots(preview[".html"], tmp_path, browser=chromium)
    assert [p.name for p in paths] == ["mobile.png", "desktop.png", "mobile-dark.png"]
    sizes = {p.name: _png_size(p) for p in paths}
    assert sizes["mobile.png"][0] == PHONE and sizes["mobile-dark.png"][0] == PHONE
    assert sizes["desktop.png"][0] == DESKTOP
    assert all(height > 1000 for _, height in sizes.values()), "a full-page screenshot, not one screen"
    assert paths[0].read_bytes() != paths[2].read_bytes(), "the dark screenshot looks like the light one"


@pytest.mark.slow  # Chromium rendering, from the command line
def test_preview_screenshots_from_the_command_line(preview: dict[str, Path], tmp_path: Path) -> None:
    require_tool(CHROMIUM, "preview --screenshots needs headless Chromium")
    project = Project(preview[".html"].parents[1])
    result = project.run("preview", "--date", DATE, "--screenshots", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    printed = [Path(line).name for line in result.stdout.split()]
    assert printed[-3:] == ["mobile.png", "desktop.png", "mobile-dark.png"]
    assert _png_size(tmp_path / "mobile-dark.png")[0] == PHONE


def test_preview_without_chromium_says_how_to_install_it(tmp_path: Path) -> None:
    result = copy_project(tmp_path / "project").run("preview", "--date", DATE, "--screenshots", "--out", str(tmp_path / "out"),
                               env={"DISPATCH_CHROMIUM": str(tmp_path / "no-such-browser")})
    assert result.returncode == 1
    assert "apt-get install chromium" in result.stderr
    assert "Traceback" not in result.stderr


# --- 2. SpamAssassin --------------------------------------------------------------------

@pytest.fixture(scope="module")
def kinds(preview: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The .eml of each kind of message: the sample edition, a correction of it (revision 2,
    its preheader the correction, in the thread of revision 1) and the sample urgent message."""
    root = tmp_path_factory.mktemp("kinds")
    project = copy_project(root / "project")
    edition = project.root / f"reports/{DATE}.md"
    text = edition.read_text(encoding="utf-8").replace(
        "status: approved\n", "status: approved\nrevision: 2\ncorrection: \"Återstarten för SÄS är onsdag, inte tisdag.\"\n")
    edition.write_text(text.replace("planeras till tisdag morgon", "planeras till onsdag morgon"), encoding="utf-8")
    correction = project.run("preview", "--date", DATE, "--out", str(root / "correction"))
    assert correction.returncode == 0, correction.stderr
    urgent = project.run("preview", "--urgent", "--file", "reports/urgent/sas-akutmottagning.md", "--out", str(root / "urgent"))
    assert urgent.returncode == 0, urgent.stderr
    return {"edition": preview[".eml"], "correction": root / f"correction/{DATE}.eml",
            "urgent": root / "urgent/sas-akutmottagning.eml"}


@pytest.mark.slow  # SpamAssassin (a few seconds of Perl start-up each); fast twin: test_reader.py's header tests
@pytest.mark.parametrize("kind", ["edition", "correction", "urgent"])
def test_spamassassin_scores_each_kind_clean(kinds: dict[str, Path], kind: str, tmp_path: Path) -> None:
    require_tool(SPAMASSASSIN, "the deliverability test needs SpamAssassin")
    # -L: local tests only (no DNS or network); -p: a throwaway user_prefs, not ~/.spamassassin.
    prefs = tmp_path / "user_prefs"
    prefs.write_text("", encoding="utf-8")
    result = subprocess.run([SPAMASSASSIN, "-L", "-t", "-p", str(prefs)], input=kinds[kind].read_bytes(),
                            capture_output=True, timeout=120)
    report = BytesParser(policy=policy.default).parsebytes(result.stdout)
    status = " ".join(str(report["X-Spam-Status"]).split())
    match = re.match(r"(Yes|No), score=(-?[\d.]+) required=[\d.]+ tests=(\S*)", status)
    assert match, f"unexpected SpamAssassin output: {status!r}\n{result.stderr.decode()}"
    score, rules = float(match.group(2)), [r for r in match.group(3).split(",") if r]
    assert score <= 0.5, f"SpamAssassin score {score} for the {kind}: {rules}"
    hit = [rule for rule in rules if FORBIDDEN_RULES.match(rule)]
    assert not hit, f"SpamAssassin rules that must not fire: {hit}"


# --- 4. WCAG contrast from the stylesheet ------------------------------------------------

def _rules(css: str) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """(light rules, dark overrides) as selector -> {property: value}; enough CSS for our sheet."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    light: dict[str, dict[str, str]] = {}
    dark: dict[str, dict[str, str]] = {}
    position = 0
    for media in re.finditer(r"@media([^{]*)\{((?:[^{}]*\{[^{}]*\})*)\s*\}", css):
        _parse_block(css[position:media.start()], light)
        if "prefers-color-scheme: dark" in media.group(1):
            _parse_block(media.group(2), dark)
        position = media.end()
    _parse_block(css[position:], light)
    return light, dark


def _parse_block(text: str, into: dict[str, dict[str, str]]) -> None:
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", text):
        declarations = {}
        for declaration in body.split(";"):
            if ":" in declaration:
                name, value = declaration.split(":", 1)
                declarations[name.strip()] = value.replace("!important", "").strip()
        for selector in selectors.split(","):
            into.setdefault(" ".join(selector.split()), {}).update(declarations)


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    """WCAG 2.x contrast ratio of two #rrggbb colours."""
    lighter, darker = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


# (what, text selector, property, background selector): text on the surface it sits on.
PAIRS = [
    ("section text", ".section-body li", "color", ".section"),
    ("section paragraph", ".section-body p", "color", ".section"),
    ("section heading", ".section-heading", "color", ".section"),
    ("key line", ".lead p", "color", ".lead"),
    ("link in a section", "a", "color", ".section"),
    ("masthead title", ".masthead-title", "color", ".masthead"),
    ("masthead date", ".masthead-date", "color", ".masthead"),
    ("compiled time", ".masthead-compiled", "color", ".masthead"),
    ("standing text", ".standing-body li", "color", ".outer"),
    ("standing heading", ".standing-heading", "color", ".outer"),
    ("standing link", ".standing-body a", "color", ".outer"),
    ("footer text", ".footer-text", "color", ".outer"),
    ("footer link", ".footer-link", "color", ".outer"),
    ("correction", ".notice-text", "color", ".notice"),
    ("urgent banner", ".banner", "color", ".banner"),
    ("what is new, the line", ".news", "color", ".news"),  # issue 19
    ("the Nytt marker", ".mark-new", "color", ".section-body li.marked-new"),  # issue 29: on its tinted bullet
    ("the Ändrat marker", ".mark-changed", "color", ".section-body li.marked-changed"),
    ("the Rättat marker", ".mark-corrected", "color", ".section-body li.marked-corrected"),
    ("a bullet tinted new", ".section-body li", "color", ".section-body li.marked-new"),
    ("a bullet tinted changed", ".section-body li", "color", ".section-body li.marked-changed"),
    ("a bullet tinted corrected", ".section-body li", "color", ".section-body li.marked-corrected"),
    ("a link in a tinted bullet", "a", "color", ".section-body li.marked-corrected"),
    ("what is new, a point", ".news-point", "color", ".news"),
    ("what is new, its link", ".news-link", "color", ".news"),
    ("what is new, Nytt", ".news-mark-new", "color", ".news"),
    ("what is new, Ändrat", ".news-mark-changed", "color", ".news"),
    ("what is new, Rättat", ".news-mark-corrected", "color", ".news"),
    ("a quote", ".section-body blockquote p", "color", ".section"),
]


def _palette_ratios() -> dict[str, dict[str, float]]:
    light, dark = _rules((ROOT / "templates/email/edition.css").read_text(encoding="utf-8"))
    ratios: dict[str, dict[str, float]] = {"light": {}, "dark": {}}
    for scheme, overrides in (("light", {}), ("dark", dark)):
        def colour(selector: str, prop: str, scheme: str = scheme, overrides: dict[str, dict[str, str]] = overrides) -> str:
            value = overrides.get(selector, {}).get(prop) or light.get(selector, {}).get(prop)
            assert value and re.fullmatch(r"#[0-9a-f]{6}", value), f"{scheme}: {selector} {prop} is {value!r}"
            return value

        for what, text, prop, surface in PAIRS:
            ratios[scheme][what] = contrast(colour(text, prop), colour(surface, "background-color"))
    return ratios


def test_text_and_links_reach_wcag_aa_contrast_in_both_palettes() -> None:
    ratios = _palette_ratios()
    low = {f"{scheme}: {what}": round(r, 2) for scheme, table in ratios.items() for what, r in table.items() if r < 4.5}
    assert not low, f"contrast below 4.5:1 (WCAG 1.4.3): {low}"


def test_contrast_helper_matches_known_values() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


# --- 5. the inlined HTML against the checklist -------------------------------------------

def _style(element: lxml.html.HtmlElement) -> dict[str, str]:
    return {
        name.strip().lower(): value.strip()
        for name, _, value in (d.partition(":") for d in (element.get("style") or "").split(";")) if name.strip()
    }


def test_media_queries_and_their_important_survive_inlining(html: str) -> None:
    head = html.split("</head>", 1)[0]
    styles = re.findall(r"<style[^>]*>(.*?)</style>", head, re.S)
    media = "".join(s for s in styles if "@media" in s)
    assert "@media screen and (max-width: 480px)" in media
    assert "@media (prefers-color-scheme: dark)" in media
    phone = media.split("@media screen and (max-width: 480px)", 1)[1].split("@media", 1)[0]
    assert phone.count("!important") >= 5 and "padding: 0 !important" in " ".join(phone.split())
    assert "!important" in media.split("prefers-color-scheme: dark", 1)[1]
    body = html.split("<body", 1)[1]
    assert "<style" not in body, "<style> belongs in <head> only"


def test_colours_are_six_digit_hex(html: str) -> None:
    short = re.findall(r"(?<![&\w])#[0-9a-fA-F]{3}(?![0-9a-fA-F])", html)
    assert not short, f"3-digit colours (some Outlook versions misread them): {short}"
    assert "rgb(" not in html.lower()


def test_every_table_is_a_presentation_table(html: str) -> None:
    # Conditional comments included: the Outlook ghost tables are layout tables too.
    tables = re.findall(r"<table\b[^>]*>", html)
    assert len(tables) >= 3
    for tag in tables:
        for attribute in ('role="presentation"', 'cellpadding="0"', 'cellspacing="0"', 'border="0"'):
            assert attribute in tag, f"{tag} lacks {attribute}"
    assert re.search(r'<!--\[if mso\]>\s*<table role="presentation" align="center" width="600"', html), "Outlook ghost table"


def test_preheader_is_the_first_thing_in_body_and_hidden(html: str) -> None:
    document = lxml.html.document_fromstring(html)
    body = document.body
    first = body[0]
    assert first.tag == "div" and "preheader" in first.get("class", ""), f"first element in <body> is <{first.tag}>"
    assert not (body.text or "").strip(), "text before the preheader"
    style = _style(first)
    assert style.get("display") == "none"
    assert style.get("max-height") in ("0", "0px")
    assert style.get("overflow") == "hidden"
    assert style.get("mso-hide") == "all"
    assert first.text_content().startswith("VGR har fredag 15 november fattat beslut")


def test_head_root_and_wrapper_follow_the_checklist(html: str) -> None:
    assert re.search(r'<html lang="sv"[^>]*xmlns:v="urn:schemas-microsoft-com:vml"[^>]*xmlns:o=', html)
    head = html.split("</head>", 1)[0]
    for meta in ('<meta charset="utf-8">', 'content="width=device-width, initial-scale=1"',
                 'name="x-apple-disable-message-reformatting"', 'name="color-scheme" content="light dark"',
                 'name="supported-color-schemes" content="light dark"'):
        assert meta in head, meta
    assert re.search(r'name="format-detection" content="telephone=no, date=no, address=no', head)
    assert "<o:PixelsPerInch>96</o:PixelsPerInch>" in head
    assert re.search(r'<div role="article"[^>]*lang="sv"', html)


def test_no_conditional_comment_glued_between_word_characters(html: str) -> None:
    # SpamAssassin's OBFUSCATING_COMMENT: a comment inside a word hides it from filters.
    assert not re.search(r"\w<!--", html) and not re.search(r"-->\w", html)
    assert not re.search(r"\w<!\[endif\]", html)


def test_one_h1_and_headings_in_order(html: str) -> None:
    levels = [int(level) for level in re.findall(r"<h([1-6])\b", html)]
    assert levels.count(1) == 1 and levels[0] == 1
    for before, after in itertools.pairwise(levels):
        assert after <= before + 1, f"heading level jumps from h{before} to h{after}"


def test_every_text_cell_has_its_font_properties_inlined(html: str) -> None:
    document = lxml.html.document_fromstring(html)
    needed = ("font-family", "font-size", "line-height", "color")
    checked = 0
    for element in document.body.iter("td", "p", "li", "h1", "h2", "h3"):
        if not element.text_content().replace("\xa0", " ").strip():
            continue  # spacer cells
        missing = [name for name in needed if name not in _style(element)]
        assert not missing, f"<{element.tag} class={element.get('class')!r}> lacks inlined {missing}"
        checked += 1
    assert checked > 40
    for link in document.body.iter("a"):
        assert "color" in _style(link), f"link {link.get('href')} has no inlined colour"


def test_no_float_flex_grid_svg_or_images_without_size(html: str) -> None:
    lowered = html.lower()
    for banned in ("float:", "display:flex", "display: flex", "display:grid", "display: grid", "<svg"):
        assert banned not in lowered, banned
    for image in re.findall(r"<img\b[^>]*>", html):
        assert all(f"{attribute}=" in image for attribute in ("width", "height", "alt")), image


def test_html_part_is_well_under_gmail_clipping(html: str) -> None:
    assert len(html.encode("utf-8")) < 90 * 1024


# --- 6. issue 19: Outlook's Word engine, phones, data detectors (static twins of test_reader_render.py) ---

def _styled(html: str) -> list[lxml.html.HtmlElement]:
    return [e for e in lxml.html.document_fromstring(html).iter() if isinstance(e.tag, str) and e.get("style")]


def test_every_inlined_line_height_has_outlooks_exactly_rule(html: str) -> None:
    # Without it Word takes line-height as "at least" and spaces lines unevenly.
    with_line_height = [e for e in _styled(html) if "line-height" in _style(e)]
    assert len(with_line_height) > 50  # (the standing block is compact since issue 29: fewer items)
    missing = [f"<{e.tag} class={e.get('class')!r}>" for e in with_line_height
               if _style(e).get("mso-line-height-rule") != "exactly"]
    assert not missing, f"line-height without mso-line-height-rule:exactly: {missing}"


def test_padding_is_inlined_only_on_table_cells_and_lists_indent_by_their_items(html: str) -> None:
    # Word ignores padding on anything but a cell: lists would lose their indent. A zero padding
    # (the browsers' list padding taken away) asks nothing of Word, which has none to take away.
    padded = [f"<{e.tag} class={e.get('class')!r}>" for e in _styled(html)
              if any(name.startswith("padding") and not zero_padding(value) for name, value in _style(e).items())
              and e.tag not in ("td", "th")]
    assert not padded, f"padding on elements Outlook ignores it on: {padded}"
    document = lxml.html.document_fromstring(html)
    for item in document.body.iter("li"):
        assert re.fullmatch(r"0 0 \d+px (18|22)px", _style(item).get("margin", "")), _style(item)
    lists = list(document.body.iter("ul", "ol"))
    assert lists and all(_style(x).get("padding") == "0" for x in lists), \
        "browsers' own list padding is reset inline (clients that strip <style> would indent 40 px more)"


def zero_padding(value: str) -> bool:
    return all(re.fullmatch(r"0(px)?", part) for part in value.replace("!important", "").split())


def test_tables_have_no_outlook_side_spacing_and_text_cells_break_long_words(html: str) -> None:
    tables = re.findall(r"<table\b[^>]*>", html)  # the Outlook-only ghost table included
    assert len(tables) >= 3
    for tag in tables:
        assert re.search(r"mso-table-lspace:\s*0(pt)?\s*;\s*mso-table-rspace:\s*0(pt)?", tag), tag
    document = lxml.html.document_fromstring(html)
    cells = [td for td in document.body.iter("td") if td.text_content().strip() and "gap" not in td.get("class", "")]
    for cell in cells:
        if "outer-cell" in cell.get("class", ""):
            continue
        assert _style(cell).get("word-break") == "break-word" and _style(cell).get("word-wrap") == "break-word", cell.get("class")


def test_direction_colour_scheme_and_data_detector_resets_are_in_place(html: str) -> None:
    assert re.search(r'<html lang="sv" dir="ltr"', html)
    assert re.search(r'<div role="article"[^>]*dir="ltr"', html)
    head = html.split("</head>", 1)[0]
    assert re.search(r":root \{ color-scheme: light dark; supported-color-schemes: light dark; \}", head)
    assert re.search(r'name="format-detection" content="telephone=no, date=no, address=no', head)
    assert "a[x-apple-data-detectors]" in head and ".aBn" in head, "iOS and Gmail's detected dates and times look like text"
    body = html.split("<body", 1)[1]
    # Never by inserting characters into the text: the dates and times read as written.
    assert "2024-11-17 klockan 14:00" in body and "16-17 november" in body
    assert not re.search(r"&#8203;|\u200b|&zwnj;|\u200c", body)


def test_standing_sections_are_one_cell_each_and_the_lead_is_not_all_bold(html: str) -> None:
    document = lxml.html.document_fromstring(html)
    cells = [td for td in document.body.iter("td") if "standing" in td.get("class", "").split()]
    assert [td.get("id") for td in cells] == ["samlad-information", "talespersoner-vgr"]  # "Om ..." is on the page only
    assert all(_style(td).get("padding") for td in cells), "their spacing is cell padding"
    css = (ROOT / "templates/email/edition.css").read_text(encoding="utf-8")
    lead_p = re.search(r"^\.lead p \{([^}]*)\}", css, re.M)
    assert lead_p and "font-weight" not in lead_p.group(1), "the editor's <strong> must show inside the key line"
