"""Every fact the program states has an English and a Swedish wording (issue 31): the codes are
enumerated from the English catalogue and held against the gettext catalogue."""

from __future__ import annotations

from babel.messages.pofile import read_po

from dispatch.values import Fact, RunState
from dispatch.wording import CATALOGUE, ENGLISH, english, swedish


def swedish_entries() -> dict[str, str | tuple[str, ...]]:
    with CATALOGUE.open("rb") as po:
        catalog = read_po(po, locale="sv")
    entries: dict[str, str | tuple[str, ...]] = {}
    for message in catalog:
        if message.id and isinstance(message.string, str | tuple):
            entries[message.id[0] if isinstance(message.id, tuple) else str(message.id)] = message.string
    return entries


def test_every_code_has_a_swedish_wording_with_its_plural_forms() -> None:
    entries = swedish_entries()
    missing = sorted(code for code in ENGLISH if code not in entries)
    assert not missing, f"no Swedish in dispatch.po for: {missing}"
    for code, wording in ENGLISH.items():
        swedish_text = entries[code]
        if isinstance(wording, tuple):
            assert isinstance(swedish_text, tuple) and all(swedish_text), f"{code}: both plural forms in Swedish"
        else:
            assert isinstance(swedish_text, str) and swedish_text, f"{code}: an empty msgstr"
    assert not sorted(set(entries) - set(ENGLISH)), "dispatch.po words codes the program no longer has"


def test_plural_forms_follow_the_count() -> None:
    assert swedish(Fact.of("duration.seconds", count=1)) == "1 sekund"
    assert swedish(Fact.of("duration.seconds", count=2)) == "2 sekunder"
    assert english(Fact.of("duration.minutes", count=1)) == "1 minute"
    assert english(Fact.of("duration.minutes", count=56)) == "56 minutes"


def test_every_run_state_is_worded() -> None:
    for state in RunState:
        fact = Fact.of(f"run_state.{state.value}")
        assert swedish(fact) != english(fact), f"{state} has no Swedish of its own"
    assert "brådskande" in swedish(Fact.of("run_state.waiting_for_urgent"))


def test_a_dispatch_is_named_by_its_label_in_each_language() -> None:
    """Issue 31: "Rapporten tis 8 dec, version 2", "Brådskande: ...", "Test till eva" (Babel's Swedish
    weekday and month, without the abbreviation's full stop); the key is technical detail."""
    from datetime import date

    from dispatch.values import DispatchKind, DispatchLabel
    from dispatch.wording import english_label, swedish_label

    day = date(2026, 12, 8)
    assert swedish_label(DispatchLabel("2026-12-08.r1.edition", DispatchKind.EDITION, day)) == "Rapporten tis 8 dec"
    assert swedish_label(DispatchLabel("2026-12-08.r2.edition", DispatchKind.EDITION, day, 2)) == "Rapporten tis 8 dec, version 2"
    urgent = DispatchLabel.of("2026-12-08.r1.urgent-sas-1a2b", "urgent-sas-1a2b", "2026-12-08", 1, "SÄS akutmottagning", "olle")
    assert swedish_label(urgent) == "Brådskande: SÄS akutmottagning"
    test = DispatchLabel.of("2026-12-08.r1.test-20261208T1200", "test-20261208T1200", "2026-12-08", 1, "[TEST] x", "eva")
    assert swedish_label(test) == "Test till eva"
    assert english_label(DispatchLabel("2026-12-08.r2.edition", DispatchKind.EDITION, day, 2)) == \
        "Report of 2026-12-08, revision 2"


def test_the_completion_mail_names_the_dispatch_by_its_label() -> None:
    from datetime import date
    from zoneinfo import ZoneInfo

    from dispatch.app import notify
    from dispatch.values import DispatchKind, DispatchLabel

    label = DispatchLabel("2026-12-08.r2.edition", DispatchKind.EDITION, date(2026, 12, 8), 2)
    counts = {"sent": 40, "failed": 0, "pending": 0, "deferred": 0, "unknown": 0}
    subject, body = notify.summary(label, "tis 8 dec: Regional rapport", counts, [], ZoneInfo("Europe/Stockholm"), None)
    assert subject == "Utskick klart: Rapporten tis 8 dec, version 2, 40 levererade"
    assert "2026-12-08.r2.edition" not in subject and "dispatch status 2026-12-08.r2.edition" in body
