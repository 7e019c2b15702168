"""Facts worded: English for the command line, the logs and the exports (the catalogue below, in
code), Swedish for the console, the office's emails and alerts (the gettext catalogue
``locale/sv/LC_MESSAGES/dispatch.po``, read with Babel).

Both catalogues are keyed by the fact's code; ``{name}`` fills in a parameter. An entry with two
forms is chosen by the fact's ``count`` (English: 1 or other; Swedish: the catalogue's
Plural-Forms). tests/test_wording.py holds every code to an English and a Swedish wording, so a
new code cannot reach a screen unworded, and nothing ever rewords a sentence.
"""

from __future__ import annotations

import gettext
import io
from functools import cache
from pathlib import Path

from dispatch.values import Fact, RunState

CATALOGUE = Path(__file__).parent / "locale" / "sv" / "LC_MESSAGES" / "dispatch.po"

# code -> English wording (or its singular and plural forms)
ENGLISH: dict[str, str | tuple[str, str]] = {
    "duration.seconds": ("{count} second", "{count} seconds"),
    "duration.minutes": ("{count} minute", "{count} minutes"),
    "duration.hours": ("{count} hour", "{count} hours"),
    **{f"run_state.{state.value}": state.value.replace("_", " ") for state in RunState},
    # The right password for a locked account (only ever said to someone who gave it).
    "sign_in.locked": "the account is locked until {until} after too many wrong passwords",
}


def english(fact: Fact) -> str:
    wording = ENGLISH[fact.code]
    if isinstance(wording, tuple):
        wording = wording[0] if fact.count == 1 else wording[1]
    return _fill(wording, fact)


def swedish(fact: Fact) -> str:
    translations = _swedish()
    if isinstance(ENGLISH.get(fact.code), tuple) or fact.count is not None:
        wording = translations.ngettext(fact.code, fact.code, fact.count if fact.count is not None else 1)
    else:
        wording = translations.gettext(fact.code)
    if wording == fact.code:  # not in the catalogue: exact English rather than a code on screen
        return english(fact)
    return _fill(wording, fact)


def _fill(wording: str, fact: Fact) -> str:
    return wording.format_map({"count": fact.count, **fact.params})


@cache
def _swedish() -> gettext.GNUTranslations:
    """The Swedish catalogue, compiled in memory once per process (no build step, no .mo file)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with CATALOGUE.open("rb") as po:
        catalog = read_po(po, locale="sv", domain="dispatch")
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)
