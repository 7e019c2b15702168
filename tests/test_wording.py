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
