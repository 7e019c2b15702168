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


def _codes_used_in_src() -> set[str]:
    """Every code the program states: the literal first argument of Fact.of, the third of
    Problem.of, and a refusal's code handed to Review.refusal."""
    import ast
    from pathlib import Path

    import dispatch

    codes: set[str] = set()
    for path in Path(dispatch.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            position = {("Fact", "of"): 0, ("Problem", "of"): 2}.get((owner, node.func.attr))
            if node.func.attr == "refusal":
                position = 1
            if position is not None and len(node.args) > position:
                argument = node.args[position]
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    codes.add(argument.value)
                elif isinstance(argument, ast.IfExp):
                    codes.update(branch.value for branch in (argument.body, argument.orelse)
                                 if isinstance(branch, ast.Constant) and isinstance(branch.value, str))
    return codes


def test_every_code_the_program_states_is_in_the_catalogues() -> None:
    used = _codes_used_in_src()
    assert len(used) > 100, "the scan finds the program's facts"
    assert not sorted(used - set(ENGLISH)), "a fact without an English wording"


def test_the_swedish_fills_in_only_what_the_fact_carries() -> None:
    from string import Formatter

    def names(text: str) -> set[str]:
        return {name.split("!")[0] for _, name, _, _ in Formatter().parse(text) if name}

    for code, swedish_text in swedish_entries().items():
        wording = ENGLISH[code]
        english_forms = wording if isinstance(wording, tuple) else (wording,)
        known = set().union(*(names(form) for form in english_forms)) | {"count"}
        for form in (swedish_text if isinstance(swedish_text, tuple) else (swedish_text,)):
            assert names(form) <= known, f"{code}: the Swedish names {names(form) - known}, which the fact lacks"


def test_a_refusal_carries_the_rules_reason_and_each_language_words_both() -> None:
    reason = Fact.of("gate.not_approved", day="2024-11-17")
    refusal = Fact.of("refusal.not_sendable", reason=reason)
    assert english(refusal) == ("not sendable: not approved yet: another person must approve this content: "
                                "dispatch approve --date 2024-11-17 --by NAME")
    assert swedish(refusal) == "kan inte skickas: rapporten är inte godkänd av en andra person ännu"


def test_a_problem_crosses_to_a_check_process_and_back() -> None:
    import pickle

    from dispatch.errors import Problem

    problem = Problem.of("reports/2024-11-17.md", 4, "refusal.not_sendable",
                         reason=Fact.of("gate.draft", status="draft", file="2024-11-17.md"))
    back = pickle.loads(pickle.dumps(problem))
    assert back == problem and str(back) == str(problem)
    assert "status: draft" in swedish(Fact.of("gate.draft", status="draft", file="2024-11-17.md")), "the fact stays"
    assert len({problem, back}) == 1, "problems are told apart by what they say (the preview drops repeats)"


def test_the_ledger_keeps_an_audit_entrys_facts_and_their_english(tmp_path: object) -> None:
    from datetime import UTC, datetime

    from dispatch.ledger import Ledger

    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    try:
        facts = (Fact.of("audit_detail.from", remote="10.0.0.7"), Fact.of("audit_detail.waiting_recipients", count=4),
                 Fact.of("audit_detail.role_changed", old=Fact.of("role.editor"), new="-"))
        ledger.record_audit(datetime(2024, 11, 18, tzinfo=UTC), "olle", "retry_now", "x", None, facts)
        [entry] = ledger.audit_log(1)
        assert entry.facts == facts
        assert entry.detail == "from 10.0.0.7; 4 waiting recipient(s); role editor -> -"
    finally:
        ledger.close()


# Modules of the console and the use cases that use regular expressions, and for what: none of
# them rewords what the program says (issue 31). The import line says the same.
REGULAR_EXPRESSIONS_NOT_WORDING = {
    "web/sso.py": "strips control characters from a provider's error before it is recorded",
    "web/editor.py": "checks the date in a route's path",
    "app/accounts.py": "makes an account name from a single sign-on address",
    "app/drafting.py": "checks the form of the Sammanställd field",
    "app/urgent.py": "makes a file name from an urgent message's subject",
    "app/passwords.py": "checks the form of an account name",
    "app/control.py": "makes an urgent dispatch's name from its file's name",
}
def test_no_module_of_the_console_or_the_use_cases_rewords_program_messages_with_a_regular_expression() -> None:
    import ast
    from pathlib import Path

    import dispatch

    package = Path(dispatch.__file__).parent
    for folder in ("web", "app"):
        for path in sorted((package / folder).rglob("*.py")):
            where = f"{folder}/{path.relative_to(package / folder)}"
            tree = ast.parse(path.read_text(encoding="utf-8"))
            imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
            imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
            if not imported & {"re", "regex"}:
                continue
            assert where in REGULAR_EXPRESSIONS_NOT_WORDING, f"{where} uses a regular expression: word facts from the catalogues"
            line = next(line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("import re"))
            assert "not wording: " + REGULAR_EXPRESSIONS_NOT_WORDING[where] in line, f"{where}: say what it is for"
    # The catalogue and the rules that went with it are gone for good.
    swedish_py = package / "web" / "swedish.py"
    if swedish_py.exists():
        text = swedish_py.read_text(encoding="utf-8")
        assert "_CATALOGUE" not in text and "ROLE_NAMES" not in text and "_DETAIL_PARTS" not in text


def test_a_front_matter_approval_is_a_flag_and_each_front_door_words_it(tmp_path: object) -> None:
    from datetime import UTC, date, datetime

    from dispatch.ledger import Ledger
    from dispatch.ledger.memory import MemoryLedger
    from dispatch.publishing.export import export_document

    now = datetime(2024, 11, 17, 13, tzinfo=UTC)
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    try:
        ledger.open_dispatch("2024-11-17.r1.edition", date(2024, 11, 17), 1, "edition", "S", "", "anna", now,
                             content_hash="a" * 64, by_front_matter=True)
        record = ledger.find_dispatch("2024-11-17.r1.edition")
    finally:
        ledger.close()
    memory, _ = MemoryLedger().open_dispatch("2024-11-17.r1.edition", date(2024, 11, 17), 1, "edition", "S", "",
                                             "anna", now, by_front_matter=True)
    for found in (record, memory):
        assert found is not None and found.by_front_matter and found.approved_by is None, "no person's name"
        assert export_document(found, {}, [], [])["approved_by"] == "status: approved (front matter)", "the contract"
    assert swedish(Fact.of("approval.by_front_matter")) == "statusfältet i rapporten (ingen andra granskare)"


def test_every_wording_fills_in_in_both_languages() -> None:
    from string import Formatter

    for code, wording in ENGLISH.items():
        forms = wording if isinstance(wording, tuple) else (wording,)
        names = {name.split("!")[0] for form in forms for _, name, _, _ in Formatter().parse(form) if name} - {"count"}
        fact = Fact(code, {name: "X" for name in names}, 2 if isinstance(wording, tuple) else None)
        assert english(fact) and swedish(fact), code


def test_an_error_that_is_no_problem_with_an_input_is_a_fact_too() -> None:
    from pathlib import Path

    from dispatch.errors import DispatchError, LedgerError, TransportError
    from dispatch.publishing.intranet import PublishError

    refused = TransportError("relay.region.se:587", "cannot connect: ConnectionRefusedError")
    assert english(refused.fact) == str(refused), "the command line's words are the error's own"
    assert swedish(refused.fact).startswith("e-postservern relay.region.se:587 tar inte emot")
    for error in (LedgerError("database is locked"), PublishError(Path("web/index.html"), "disk full"), DispatchError("x")):
        assert english(error.fact) == str(error)
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
