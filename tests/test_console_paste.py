"""Issue 32 in the console: paste from Word, Outlook and Teams into Innehåll (converted on the
server), the toolbar (Rubrik, Punkt, Fet, Länk) and an editor that wraps long lines with its
line numbers in step; and "Avbryt" as a button apart from "Bekräfta". The browser tests
dispatch real paste events in the system's Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

import consolekit
from conftest import ROOT, STOCKHOLM, Project
from consolekit import WebProcess, browser_sign_in, csrf_of, four_eyes_console, sign_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Dialog, Page

TOMORROW = (datetime.now(STOCKHOLM) + timedelta(days=1)).date()
WORD = (ROOT / "tests" / "data" / "paste" / "word.html").read_text(encoding="utf-8")
OUTLOOK = (ROOT / "tests" / "data" / "paste" / "outlook.html").read_text(encoding="utf-8")
WORD_PLAIN = "Läget i regionen\nInledning med fet text och en länk till läget.\n·  Första punkten\n"

chromium = consolekit.chromium  # the shared module-scoped fixture


@pytest.fixture
def console(project: Project) -> Iterator[WebProcess]:
    with four_eyes_console(project, ("anna", "olle")) as web:
        yield web


def desktop_editor(chromium: Browser, console: WebProcess, name: str = "anna", path: str = "") -> Page:
    page = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
    browser_sign_in(page, console.base, name, path or f"/editions/{TOMORROW.isoformat()}")
    return page


def paste(page: Page, html: str, plain: str) -> None:
    """A real paste event on Innehåll, carrying the clipboard's HTML and plain text, as the
    browser fires it when someone presses Ctrl+V after copying from Word."""
    page.get_by_label("Innehåll").focus()
    page.evaluate("""([html, plain]) => {
        const box = document.getElementById('f-body');
        const data = new DataTransfer();
        data.setData('text/html', html);
        data.setData('text/plain', plain);
        box.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));
    }""", [html, plain])


# -- HTTP: the route's rules ----------------------------------------------------------------------


def test_the_paste_route_converts_for_a_signed_in_writer_with_the_csrf_token(console: WebProcess) -> None:
    anna = sign_in(console.base, "anna")
    page = anna.get(f"/editions/{TOMORROW.isoformat()}")
    token = csrf_of(page.text)

    def paste_request(client: Any, html: str, csrf: str | None = token) -> Any:
        headers = {"Content-Type": "text/html; charset=utf-8", **({"X-CSRF-Token": csrf} if csrf else {})}
        return client.post("/paste", content=html.encode("utf-8"), headers=headers)

    converted = paste_request(anna, WORD)
    assert converted.status_code == 200 and converted.headers["content-type"].startswith("text/plain")
    assert converted.text.startswith("## Läget i regionen\n") and "- Tredje punkten\n" in converted.text
    assert paste_request(anna, "<b>fet</b>", None).status_code == 403, "no CSRF token, no conversion"
    assert paste_request(anna, "<b>fet</b>", "fel-token").status_code == 403
    stranger = consolekit.http_client(console.base, follow_redirects=False)
    refused = paste_request(stranger, "<b>fet</b>")
    assert refused.status_code == 401 and "**fet**" not in refused.text, "signed-in people only"
    too_large = paste_request(anna, "<p>" + "å" * 4_000_001 + "</p>")
    assert too_large.status_code == 413 and too_large.text == "", "the browser pastes the plain text instead"


def test_the_editors_carry_the_toolbar_and_say_that_formatted_text_becomes_markdown(console: WebProcess) -> None:
    anna = sign_in(console.base, "anna")
    page = anna.get(f"/editions/{TOMORROW.isoformat()}").text
    for name in ("Rubrik", "Punkt", "Fet", "Länk"):
        assert re.search(rf'<button type="button" data-tool="\w+"[^>]*>{name}</button>', page), name
    assert 'role="toolbar"' in page and "klistras in från Word, Outlook eller Teams blir Markdown" in page
    urgent = sign_in(console.base, "olle").get("/urgent").text
    assert 'role="toolbar"' in urgent and ">Länk</button>" in urgent


# -- the browser --------------------------------------------------------------------------------------


@pytest.mark.slow  # Chromium; fast twins: test_paste.py and test_the_paste_route_converts_*
@pytest.mark.parametrize("clipboard", [WORD, OUTLOOK], ids=["word", "outlook"])
def test_pasting_words_html_puts_markdown_in_innehall(console: WebProcess, chromium: Browser, clipboard: str) -> None:
    from playwright.sync_api import expect

    page = desktop_editor(chromium, console)
    box = page.get_by_label("Innehåll")
    box.fill("")
    paste(page, clipboard, WORD_PLAIN)
    expect(box).to_have_value(re.compile("Tredje punkten"), timeout=10_000)
    value = box.input_value()
    assert value.startswith("## Läget i regionen\n"), value
    assert len(re.findall(r"^- ", value, re.MULTILINE)) == 3, value
    assert "**fet text**" in value and "**fetstil**" in value
    assert "[länk till läget](https://www.example.org/lage)" in value
    assert "·" not in value and "mso" not in value.lower() and "<" not in value, "nothing of Word's HTML"

    # Into the middle of a line, a few words stay in that line; the line numbers follow.
    box.fill("Före  efter")
    box.evaluate("box => box.setSelectionRange(5, 5)")
    paste(page, "<b>fet</b>", "fet")
    expect(box).to_have_value("Före **fet** efter", timeout=10_000)


@pytest.mark.slow  # Chromium
def test_a_pasted_script_becomes_text_or_nothing(console: WebProcess, chromium: Browser) -> None:
    from playwright.sync_api import expect

    page = desktop_editor(chromium, console)
    dialogs: list[str] = []

    def refuse(dialog: Dialog) -> None:  # a script that ran would open one
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", refuse)
    box = page.get_by_label("Innehåll")
    box.fill("")
    paste(page, '<p>Före</p><script>alert("klistrat")</script><img src=x onerror="alert(1)">'
                "<p>&lt;script&gt;alert(2)&lt;/script&gt; efter</p>", "Före")
    expect(box).to_have_value(re.compile("efter"), timeout=10_000)
    value = box.input_value()
    assert 'alert("klistrat")' not in value and "onerror" not in value, "the script element is gone"
    assert value.startswith("Före\n\n") and "script" in value, "the text '<script>' stays, as text"
    page.wait_for_timeout(300)
    assert dialogs == [], "nothing pasted ran"
    expect(page.locator("#problems")).to_have_count(1, timeout=10_000)  # the page still works: the preview follows


@pytest.mark.slow  # Chromium
def test_without_html_on_the_clipboard_the_browser_pastes_plain_text(console: WebProcess, chromium: Browser) -> None:
    page = desktop_editor(chromium, console)
    box = page.get_by_label("Innehåll")
    box.fill("")
    box.focus()
    page.evaluate("""() => {
        const data = new DataTransfer();
        data.setData('text/plain', '**vanlig** text');
        const event = new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true});
        window.__notTaken = document.getElementById('f-body').dispatchEvent(event);
    }""")
    assert page.evaluate("window.__notTaken") is True, "the script leaves a plain paste to the browser"


@pytest.mark.slow  # Chromium
def test_the_toolbar_writes_markdown_for_people_who_do_not_know_it(console: WebProcess, chromium: Browser) -> None:
    page = desktop_editor(chromium, console)
    box = page.get_by_label("Innehåll")
    box.fill("Läget\nVårdplatser\nAmbulanser\nSe mer")
    select = "([start, end]) => document.getElementById('f-body').setSelectionRange(start, end)"
    page.evaluate(select, [0, 0])
    page.get_by_role("button", name="Rubrik").click()
    assert box.input_value() == "## Läget\nVårdplatser\nAmbulanser\nSe mer"
    start = box.input_value().index("Vårdplatser")
    page.evaluate(select, [start, box.input_value().index("Ambulanser") + 3])
    page.get_by_role("button", name="Punkt").click()
    assert box.input_value() == "## Läget\n- Vårdplatser\n- Ambulanser\nSe mer"
    word = box.input_value().index("Ambulanser")
    page.evaluate(select, [word, word + len("Ambulanser")])
    page.get_by_role("button", name="Fet").click()
    assert box.input_value() == "## Läget\n- Vårdplatser\n- **Ambulanser**\nSe mer"
    link = box.input_value().index("Se mer")
    page.evaluate(select, [link, link + len("Se mer")])
    page.get_by_role("button", name="Länk").click()
    assert box.input_value() == "## Läget\n- Vårdplatser\n- **Ambulanser**\n[Se mer](https://)"
    page.keyboard.press("Control+z")  # the browser's own undo takes a toolbar's change back
    assert box.input_value() == "## Läget\n- Vårdplatser\n- **Ambulanser**\nSe mer"
    page.evaluate(select, [link, link + len("Se mer")])
    page.get_by_role("button", name="Länk").click()
    # The address is selected, ready to be typed over.
    page.keyboard.type("https://insidan.example.org/lage")
    assert box.input_value().endswith("[Se mer](https://insidan.example.org/lage)")


@pytest.mark.slow  # Chromium
def test_the_editor_wraps_long_lines_and_keeps_its_line_numbers_in_step(console: WebProcess, chromium: Browser) -> None:
    page = desktop_editor(chromium, console)
    box = page.get_by_label("Innehåll")
    long_bullet = "- " + " ".join(["Återstarten av journalsystemet på SÄS går enligt plan"] * 6)
    box.fill(f"## Läget\n{long_bullet}\n- Kort punkt\n\n- Sista")
    page.wait_for_timeout(200)  # the numbers are redrawn in the next frame
    geometry = page.evaluate("""() => {
        const box = document.getElementById('f-body');
        const numbers = [...box.parentElement.querySelectorAll('.gutter span')];
        const top = numbers[0].getBoundingClientRect().top;
        return {scroll: box.scrollWidth, client: box.clientWidth,
                tops: numbers.map(n => n.getBoundingClientRect().top - top),
                texts: numbers.map(n => n.textContent), row: parseFloat(getComputedStyle(box).lineHeight)};
    }""")
    assert geometry["scroll"] <= geometry["client"], "nothing is cut at the right edge: long lines wrap"
    assert geometry["texts"] == ["1", "2", "3", "4", "5"]
    row, tops = geometry["row"], geometry["tops"]
    rows_of_bullet = round((tops[2] - tops[1]) / row)
    assert rows_of_bullet >= 2, f"the long bullet wraps over several rows ({tops})"
    # Each number stands at the row where its line begins: where the caret is at that line's start.
    for line in (2, 3, 5):
        caret_row = page.evaluate("""(line) => {
            const box = document.getElementById('f-body');
            const lines = box.value.split('\\n');
            const mirror = box.parentElement.querySelector('.line-mirror');
            let top = 0;
            for (let i = 0; i < line - 1; i++) top += mirror.children[i].getBoundingClientRect().height;
            return top;
        }""", line)
        assert abs(tops[line - 1] - caret_row) < 1, (line, tops, caret_row)
    assert abs(tops[1] - row) < 1 and abs(tops[2] - (1 + rows_of_bullet) * row) < 1 and abs(tops[3] - tops[2] - row) < 1


@pytest.mark.slow  # Chromium
def test_the_urgent_composer_converts_a_paste_and_its_preview_follows(console: WebProcess, chromium: Browser) -> None:
    from playwright.sync_api import expect

    page = desktop_editor(chromium, console, "olle", "/urgent")
    page.get_by_label("Ämne").fill("Akutmottagningen stänger")
    box = page.get_by_label("Innehåll")
    paste(page, OUTLOOK, WORD_PLAIN)
    expect(box).to_have_value(re.compile(r"- Tredje punkten$"), timeout=10_000)
    assert "**fet text**" in box.input_value()
    frame = page.frame_locator("iframe[title='Förhandsvisning, mobil']")
    expect(frame.locator("body")).to_contain_text("Tredje punkten", timeout=10_000)
    expect(frame.locator("strong").first).to_have_text("fet text")


@pytest.mark.slow  # Chromium; fast twin: test_an_urgent_message_needs_a_subject_a_list_and_a_confirmation
def test_avbryt_is_a_button_apart_from_bekrafta_and_keeps_the_message(console: WebProcess, chromium: Browser) -> None:
    from playwright.sync_api import expect

    page = chromium.new_context(viewport={"width": 375, "height": 800}).new_page()
    browser_sign_in(page, console.base, "olle", "/urgent")
    page.get_by_label("Ämne").fill("Akutmottagningen stänger")
    page.get_by_label("Innehåll").fill("Stänger klockan 16.")
    page.get_by_role("button", name="Skicka brådskande").click()
    confirm, cancel = page.get_by_role("button", name="Bekräfta"), page.get_by_role("button", name="Avbryt")
    expect(cancel).to_be_visible()
    first, second = confirm.bounding_box(), cancel.bounding_box()
    assert first and second
    apart = second["x"] - (first["x"] + first["width"]) if abs(second["y"] - first["y"]) < 5 else (
        second["y"] - (first["y"] + first["height"]))
    assert apart >= 12, f"Avbryt and Bekräfta do not touch ({apart} px apart)"
    assert second["height"] >= 44, "a button's tap target"
    cancel.click()
    expect(page.get_by_role("button", name="Skicka brådskande")).to_be_visible()
    assert page.get_by_role("button", name="Bekräfta").count() == 0
    assert page.get_by_label("Innehåll").input_value() == "Stänger klockan 16."
    assert page.get_by_label("Ämne").input_value() == "Akutmottagningen stänger"
