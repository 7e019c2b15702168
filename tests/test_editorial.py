"""Editors' Markdown mistakes are caught by `check` with the exact file line and how to fix them."""

from __future__ import annotations

import pytest

from conftest import ROOT, Project, SMTPServer
from dispatch.config.yamlsource import parse_yaml
from dispatch.email import editorial
from dispatch.errors import InputError, Problem

EDITION = "reports/2024-11-17.md"
SAMPLE = (ROOT / EDITION).read_text(encoding="utf-8")

# (text in the sample edition, what the editor wrote instead, file line, a key phrase of the fix).
# Every edit keeps the sample's line numbering, so the line is the one the editor sees.
MISTAKES: dict[str, tuple[str, str, int, str]] = {
    "one-hash section heading": (
        "## Verksamhetens kommentar", "# Verksamhetens kommentar",
        25, "start a section with '## Verksamhetens kommentar'",
    ),
    "heading without a space": (
        "## Verksamhetens kommentar", "##Verksamhetens kommentar",
        25, "put a space after the '#' characters, '## Verksamhetens kommentar'",
    ),
    "unclosed link": (
        "- Ett viktigt budskap till invånare är att inte tveka att söka vård om de behöver.",
        "- Ett viktigt budskap till invånare är att inte tveka att söka vård, [se 1177](https://www.1177.se/vg",
        30, "unclosed link '[se 1177](https://www.1177.se/vg' is shown as literal text: end the address with ')'",
    ),
    "unclosed bold": (
        "- Prestandan i Millennium rapporteras som ok.", "- **Prestandan i Millennium rapporteras som ok.",
        22, "close the bold text with '**'",
    ),
    "link without a scheme": (
        "- Intern och extern kommunikation under söndagen",
        "- [Intern](insidan.example.org/sida) och extern kommunikation under söndagen",
        35, "write 'https://insidan.example.org/sida'",
    ),
    "image": (
        "- Fortsatta kommunikationsinsatser",
        "- ![Karta över SÄS](https://insidan.example.org/karta.png) Fortsatta kommunikationsinsatser",
        36, "link to it instead: '[Karta över SÄS](https://insidan.example.org/karta.png)'",
    ),
    "text before the first section": (
        "---\n\n## Beskrivning av händelsen", "---\nLäget i korthet.\n## Beskrivning av händelsen",
        5, "move 'Läget i korthet.' into a section or delete it",
    ),
    "a link text that says nothing (här)": (
        "- Fortsatta kommunikationsinsatser",
        "- Fortsatta kommunikationsinsatser, läs om dem [här](https://insidan.example.org/kommunikation)",
        36, "the link text 'här' says nothing on its own",
    ),
    "a link text that says nothing (klicka här)": (
        "- Intern och extern kommunikation under söndagen",
        "- Intern och extern kommunikation under söndagen: [Klicka här!](https://insidan.example.org/sida)",
        35, "the link text 'Klicka här!' says nothing on its own",
    ),
    "empty section": (
        SAMPLE[SAMPLE.index("- En återstart"):SAMPLE.index("## Kommunikativa")], "\n" * 6,
        25, "section 'Verksamhetens kommentar' is empty: add content under it or remove the heading",
    ),
}


def _break(project: Project, case: str) -> tuple[int, str]:
    wrong, written, line, phrase = MISTAKES[case]
    assert SAMPLE.count(wrong) == 1, case
    text = SAMPLE.replace(wrong, written)
    assert text.count("\n") == SAMPLE.count("\n"), "an edit must keep the sample's line numbers"
    (project.root / EDITION).write_text(text, encoding="utf-8")
    return line, phrase


def test_the_sample_edition_has_no_editorial_problems(project: Project) -> None:
    body = SAMPLE.split("---\n", 2)[2]
    assert editorial.check(body, 5, EDITION) == []
    result = project.run("check", "--date", "2024-11-17")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("case", list(MISTAKES))
def test_check_reports_the_mistake_at_its_line_with_the_fix(case: str, project: Project) -> None:
    line, phrase = _break(project, case)
    result = project.run("check", "--date", "2024-11-17")
    assert result.returncode == 1
    problems = [row for row in result.stderr.splitlines() if row.startswith(f"{EDITION}:")]
    assert problems == [row for row in problems if row.startswith(f"{EDITION}:{line}: ")], result.stderr
    assert len(problems) == 1, result.stderr
    assert phrase in problems[0]


@pytest.mark.parametrize("case", ["unclosed link", "empty section"])
def test_send_sends_nothing_when_the_markdown_is_wrong(case: str, project: Project, smtp_server: SMTPServer) -> None:
    line, phrase = _break(project, case)
    project.use_smtp(smtp_server)
    result = project.run("send", "--date", "2024-11-17")
    assert result.returncode == 1
    assert f"{EDITION}:{line}: " in result.stderr and phrase in result.stderr
    assert smtp_server.handler.received == []


def test_unquoted_colon_in_front_matter_says_how_to_quote_it(project: Project) -> None:
    text = SAMPLE.replace("status: approved\n", "status: approved\nsubject: Ny information: SÄS öppnar\n")
    (project.root / EDITION).write_text(text, encoding="utf-8")
    result = project.run("check", "--date", "2024-11-17")
    assert result.returncode == 1
    assert f"{EDITION}:4: invalid YAML: mapping values are not allowed here; " in result.stderr
    assert """a value containing ': ' must be quoted: subject: "Ny information: SÄS öppnar\"""" in result.stderr


def test_quote_hint_escapes_quotes_and_backslashes_and_keeps_the_line() -> None:
    with pytest.raises(InputError) as caught:
        parse_yaml('compiled: 2024-11-17 14:00\nsubject: Se "Läget": C:\\temp\n', "x.md", line_offset=1)
    (problem,) = caught.value.problems
    assert problem.line == 3
    assert problem.message.endswith(r'must be quoted: subject: "Se \"Läget\": C:\\temp"')


def test_other_yaml_errors_keep_the_general_advice() -> None:
    with pytest.raises(InputError) as caught:
        parse_yaml("subject: Ny\n  information: SÄS\n", "x.md", line_offset=1)
    (problem,) = caught.value.problems
    assert problem.line == 3
    assert problem.message.endswith("check indentation, colons and quotes")


def _check(body: str, *, urgent: bool = False) -> list[Problem]:
    return editorial.check(body, 5, "r.md", urgent=urgent)


@pytest.mark.parametrize("body", [
    "## Rubrik\n\n- Text med [länk](https://example.org/a) och [mejl](mailto:a@example.org).\n",
    "## Rubrik\n\n```\n# not a heading\n#Rubrik [x](y **z ![b](c.png)\n```\n",
    "## Rubrik\n\n~~~\n## \n~~~\n",
    "## Rubrik\n\n    # indented code, not a heading\n",
    "## Rubrik\n\nSkriv `**` eller `[x](y` eller `#Rubrik` i kod.\n",
    "## Rubrik\n\nSkriv \\*\\* och \\_\\_ och \\[x\\]\\(y bokstavligt.\n",
    "## Rubrik\n\n**Fet** och __fet__, snake_case__name, [tel](tel:+46101234567), [del](#avsnitt), <https://example.org>.\n",
    "## Rubrik\n\n#1 prioritet är patientsäkerhet.\n\n### Underrubrik\n\nText.\n",
    "\n\n\n## Rubrik\n\nText.\n",
    "## Rubrik\n\nBeslutet [red. anm.] (se nedan) gäller.\n",
])
def test_correct_markdown_has_no_problems(body: str) -> None:
    assert _check(body) == []


def test_an_urgent_body_is_free_text_without_sections() -> None:
    assert _check("SÄS stänger **klockan 16:00**.\n\nAmbulanser dirigeras om.\n", urgent=True) == []
    assert _check("Inledning.\n\n## Läget\n\nText.\n", urgent=True) == []
    assert [p.line for p in _check("SÄS stänger.\n", urgent=False)] == [5]


@pytest.mark.parametrize(("body", "line", "phrase"), [
    ("## A\n\n- a\n#Rubrik\n", 8, "'## Rubrik'"),  # glued to a list item as a lazy continuation line
    ("## A\n\nText\n###Underrubrik\n", 8, "'### Underrubrik'"),
    ("## A\n\nRubrik\n===\n\nText.\n", 7, "start a section with '## Rubrik'"),
    ("## A\n\nSe `kod\növer rader` och **fet\n", 8, "close the bold text with '**'"),  # a code span hides a line break
    ("## A\n\nSe [sidan] (https://example.org).\n", 7, "remove the space between ']' and '('"),
    ("## A\n\nSe [sidan](https://example.org/a b).\n", 7, "write them as %20"),
    ("## A\n\nSe [sidan](www.vgr.se/sida).\n", 7, "write 'https://www.vgr.se/sida'"),
    ("## A\n\nSe <www.vgr.se>.\n", 7, "write '<https://www.vgr.se>'"),
    ("## A\n\nMejla [oss](kommunikation@example.org).\n", 7, "write 'mailto:kommunikation@example.org'"),
    ("## A\n\nSe [sidan](/millennium).\n", 7, "the full address starting with 'https://'"),
    ("## A\n\n![](karta.png)\n", 7, "link to it instead: '[Bild](karta.png)'"),
    ("## A\n\n## B\n\nText.\n", 5, "section 'A' is empty"),
    ("## A\n\nText.\n\n## B\n\n\n", 9, "section 'B' is empty"),
])
def test_mistake_is_found_at_its_line(body: str, line: int, phrase: str) -> None:
    problems = _check(body)
    assert [p.line for p in problems] == [line], problems
    assert phrase in problems[0].message
    assert str(problems[0]).startswith(f"r.md:{line}: ")


def test_every_problem_is_returned_in_line_order() -> None:
    body = (
        "Inledning utan rubrik.\n"          # 5
        "\n"
        "## Tom\n"                          # 7
        "\n"
        "## Läget\n"                        # 9
        "\n"
        "- **fet och [länk](https://a.se\n"  # 11
        "- ![bild](https://a.se/b.png)\n"    # 12
        "#Rubrik\n"                          # 13
    )
    problems = _check(body)
    assert [p.line for p in problems] == [5, 7, 11, 11, 12, 13]
    assert "text before the first section" in problems[0].message
    assert "section 'Tom' is empty" in problems[1].message
    assert sorted(p.message.split(" ", 1)[0] for p in problems[2:4]) == ["'**'", "unclosed"]
    assert "images are not sent" in problems[4].message
    assert "not as a heading" in problems[5].message


def test_a_heading_mistake_at_the_top_is_not_also_reported_as_text_before_the_first_section() -> None:
    for body in ("# Läget\n\nText.\n", "##Läget\n\nText.\n"):
        problems = _check(body)
        assert len(problems) == 1 and problems[0].line == 5, problems
        assert "text before the first section" not in problems[0].message

