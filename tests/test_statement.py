"""Issue 32, the accessibility statement: with ``web:`` configured and no ``accessibility:``
section, ``check`` says what to add at the config's line; the statement then claims no full
compliance and names no address it does not have; "uppdaterades senast" is when its config
changed (``reviewed:``, else the config file's last change), never simply today."""

from __future__ import annotations

import os
import re
from datetime import datetime

import yaml

from conftest import ROOT, STOCKHOLM, Project
from dispatch import app
from dispatch.config import load_settings

NOW = datetime(2026, 12, 7, 15, 0, tzinfo=STOCKHOLM)
CHANGED = datetime(2026, 11, 2, 12, 0, tzinfo=STOCKHOLM)


def line_of(project: Project, key: str) -> int:
    lines = project.config_path.read_text(encoding="utf-8").splitlines()
    return next(number for number, text in enumerate(lines, 1) if text.startswith(f"{key}:"))


def changed_on(project: Project, moment: datetime) -> None:
    os.utime(project.config_path, (moment.timestamp(), moment.timestamp()))


def test_web_without_an_accessibility_section_is_warned_of_and_claims_nothing(project: Project) -> None:
    project.set_config(web__listen="127.0.0.1:8025")
    changed_on(project, CHANGED)
    result = project.run("check", "--date", "2024-11-17")
    warning = (f"warning: config.yaml:{line_of(project, 'web')}: web: is configured but there is no accessibility: "
               "section")
    assert warning in result.stderr, result.stderr
    for key in ("organisation", "contact_email", "contact_phone", "known_gaps", "reviewed"):
        assert key in result.stderr.split(warning, 1)[1].splitlines()[0], key
    assert result.returncode == 0, "a warning: the edition still checks"
    statement = app.accessibility_statement(load_settings(project.config_path), NOW)
    assert "delvis förenlig" in statement and "är förenlig" not in statement, "no claim of full compliance"
    assert "kontakta oss." not in statement and "mailto:" not in statement
    assert "anger ännu ingen kontaktväg" in statement, "the missing contact is itself a stated gap"
    assert "uppdaterades senast 2026-11-02" in statement, "the day the config changed"
    assert NOW.date().isoformat() not in statement, "not today"


def test_a_section_without_a_contact_is_warned_of_and_a_reviewed_date_is_the_update(project: Project) -> None:
    project.set_config(web__listen="127.0.0.1:8025", accessibility={"organisation": "Regionen", "reviewed": "2026-11-20"})
    result = project.run("check", "--date", "2024-11-17")
    assert (f"warning: config.yaml:{line_of(project, 'accessibility')}: accessibility: has no contact_email or "
            "contact_phone") in result.stderr, result.stderr
    statement = app.accessibility_statement(load_settings(project.config_path), NOW)
    assert "delvis förenlig" in statement and "uppdaterades senast 2026-11-20" in statement


def test_a_complete_section_is_not_warned_of_and_may_claim_compliance(project: Project) -> None:
    project.set_config(web__listen="127.0.0.1:8025",
                       accessibility={"organisation": "Regionen", "contact_email": "tillganglighet@example.org"})
    changed_on(project, CHANGED)
    result = project.run("check", "--date", "2024-11-17")
    assert "accessibility" not in result.stderr, result.stderr
    statement = app.accessibility_statement(load_settings(project.config_path), NOW)
    assert re.search(r"Tjänsten är förenlig med lagen", statement) and "mailto:tillganglighet@example.org" in statement
    assert "uppdaterades senast 2026-11-02" in statement


def test_without_web_nothing_is_said_about_the_console(project: Project) -> None:
    project.set_config(web=None)
    assert app.accessibility_warnings(load_settings(project.config_path)) == []


def commented_section(text: str, key: str) -> dict[str, object]:
    """A commented-out section of the shipped config, as it reads once uncommented."""
    lines = text.splitlines()
    start = lines.index(f"# {key}:")
    body = [f"{key}:"]
    for line in lines[start + 1:]:
        if not line.startswith("#   "):
            break
        body.append(line[1:])
    loaded = yaml.safe_load("\n".join(body))[key]
    assert isinstance(loaded, dict)
    return loaded


def test_the_shipped_config_keeps_front_matter_and_explains_web_and_accessibility(project: Project) -> None:
    shipped = (ROOT / "config.yaml").read_text(encoding="utf-8")
    settings = load_settings(ROOT / "config.yaml")
    assert settings.approval == "front_matter" and settings.web is None, "the quick start's sample goes out with one command"
    assert "#   approval: four_eyes" in shipped
    web, accessibility = commented_section(shipped, "web"), commented_section(shipped, "accessibility")
    assert web["listen"] == "127.0.0.1:8025" and accessibility["contact_email"] and accessibility["reviewed"]
    # Uncommented, the sections are valid configuration, and complete: nothing to warn of.
    project.set_config(web=web, accessibility=accessibility)
    uncommented = load_settings(project.config_path)
    assert uncommented.web is not None and uncommented.accessibility.reviewed is not None
    assert app.accessibility_warnings(uncommented) == []


def test_dispatch_web_warns_and_serves_the_statement_dated_by_its_config(project: Project) -> None:
    import consolekit

    project.set_config(web__listen="127.0.0.1:8025")
    changed_on(project, CHANGED)
    web = consolekit.WebProcess(project)
    try:
        page = consolekit.http_client().get(web.base + "/tillganglighet")
    finally:
        stderr = web.stop()
    assert f"warning: config.yaml:{line_of(project, 'web')}: web: is configured but there is no accessibility:" in stderr
    assert page.status_code == 200 and "delvis förenlig" in page.text
    assert "uppdaterades senast 2026-11-02" in page.text and "kontakta oss." not in page.text
