"""config.yaml: unknown keys, number ranges, line breaks in header values, and secrets."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from conftest import ROOT, Project
from dispatch.config import DEFAULT_RETRY_MINUTES, load_settings, secret_problems
from dispatch.errors import InputError, Problem

SECRET = "s3cret-Value-that-must-never-show"
ENV = "DISPATCH_TEST_CONFIG_SMTP_PASSWORD"


def line_of(text: str, fragment: str) -> int:
    """The 1-based line of the only line of ``text`` containing ``fragment``."""
    lines = [number for number, line in enumerate(text.splitlines(), 1) if fragment in line]
    assert len(lines) == 1, (fragment, lines)
    return lines[0]


def sample_with(old: str, new: str) -> str:
    text = (ROOT / "config.yaml").read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    return text.replace(old, new)


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(InputError) as caught:
        load_settings(path)
    return list(caught.value.problems)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# A small config whose line numbers the tests know: line 5 holds the key under test.
SMTP = "timezone: Europe/Stockholm\ntransport:\n  kind: smtp\n  host: 127.0.0.1\n"


def transport_with(tmp_path: Path, key: str, value: str) -> Path:
    return write(tmp_path, f"{SMTP}  {key}: {value}\n")


# -- the sample ------------------------------------------------------------------


def test_the_sample_config_loads_without_problems() -> None:
    settings = load_settings(ROOT / "config.yaml")
    assert settings.transport.port == 2525 and settings.transport.connections == 4
    assert settings.report.title == "Regional rapport Millennium 2024"
    assert secret_problems(settings) == []  # a maildir transport needs no secret


def test_check_accepts_the_sample_project(project: Project) -> None:
    result = project.run("check", "--date", "2024-11-17")
    assert result.returncode == 0, result.stderr


# -- unknown keys ------------------------------------------------------------------


def test_a_misspelt_top_level_key_fails_check_with_its_line_and_the_key_meant(project: Project) -> None:
    text = sample_with("ledger: sqlite:///var/ledger.db", "legder: sqlite:///var/ledger.db")
    project.config_path.write_text(text, encoding="utf-8")
    result = project.run("check", "--date", "2024-11-17")
    assert result.returncode == 1, result.stderr
    line = line_of(text, "legder:")
    assert f"config.yaml:{line}: unknown key 'legder'; did you mean 'ledger'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_misspelt_transport_key_fails_check_with_its_line_and_the_key_meant(project: Project) -> None:
    text = sample_with("  rate_per_minute: 0 ", "  rate_per_minut: 0 ")
    project.config_path.write_text(text, encoding="utf-8")
    result = project.run("check", "--date", "2024-11-17")
    assert result.returncode == 1, result.stderr
    line = line_of(text, "rate_per_minut:")
    assert f"config.yaml:{line}: unknown key 'rate_per_minut' in transport; did you mean 'rate_per_minute'?" in result.stderr


def test_misspelt_keys_set_through_the_fixture_are_reported(project: Project) -> None:
    project.set_config(transport__timeout_secs=30, publish__onsend=True)
    problems = problems_of(project.config_path)
    messages = [p.message for p in problems]
    assert "unknown key 'timeout_secs' in transport; did you mean 'timeout_seconds'?" in messages
    assert "unknown key 'onsend' in publish; did you mean 'on_send'?" in messages
    text = project.config_path.read_text(encoding="utf-8")
    assert {p.line for p in problems} == {line_of(text, "timeout_secs:"), line_of(text, "onsend:")}


def test_without_a_close_match_the_known_keys_are_listed(tmp_path: Path) -> None:
    path = write(tmp_path, "sender:\n  from: Rapport <rapport@example.org>\n  colour: blue\n")
    assert problems_of(path) == [
        Problem(str(path), 3, "unknown key 'colour' in sender; known keys: from, reply_to, return_path, verp"),
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("report:\n  titel: X\n", 2, "unknown key 'titel' in report; did you mean 'title'?"),
        ("schedules:\n  - name: daily\n    cron: '0 14 * * *'\n    lists: [a]\n    dedline: '18:00'\n",
         5, "unknown key 'dedline' in schedule 'daily'; did you mean 'deadline'?"),
        ("report:\n  standing_sections:\n    - heading: H\n      markdown: M\n      urgnet: true\n",
         5, "unknown key 'urgnet' in a standing section; did you mean 'urgent'?"),
        ("bounces:\n  host: imap.example.org\n  foldr: INBOX\n", 3, "unknown key 'foldr' in bounces; did you mean 'folder'?"),
        ("web:\n  listen: '127.0.0.1:8025'\n  base_ulr: https://x.example.org/\n",
         3, "unknown key 'base_ulr' in web; did you mean 'base_url'?"),
        ("Timezone: Europe/Stockholm\n", 1, "unknown key 'Timezone'; did you mean 'timezone'?"),
    ],
)
def test_every_mapping_rejects_unknown_keys(tmp_path: Path, text: str, line: int, message: str) -> None:
    assert problems_of(write(tmp_path, text)) == [Problem(str(tmp_path / "config.yaml"), line, message)]


@pytest.mark.parametrize("value", ["nej", "0", "[]"])
def test_a_standing_sections_in_email_must_be_true_or_false(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"report:\n  standing_sections:\n    - heading: H\n      markdown: M\n      in_email: {value}\n")
    [problem] = problems_of(path)
    assert (problem.line, problem.message) == (
        5, f"a standing section's 'in_email' must be true or false (false: on the intranet page only, not in the email), "
           f"not {problem.message.rpartition(', not ')[2]}")
    assert problem.message.endswith(("'nej'", "0", "[]"))


def test_in_email_false_keeps_a_section_for_the_page_and_urgent_keeps_its_own_line(tmp_path: Path) -> None:
    path = write(tmp_path, "report:\n  standing_sections:\n    - {heading: A, markdown: a}\n"
                           "    - {heading: B, markdown: b, in_email: false, urgent: kort}\n")
    a, b = load_settings(path).report.standing_sections
    assert (a.in_email, b.in_email, b.urgent_markdown) == (True, False, "kort")


def test_a_misspelt_key_is_named_even_where_it_leaves_a_required_key_missing(tmp_path: Path) -> None:
    path = write(tmp_path, "report:\n  standing_sections:\n    - heding: H\n      markdown: M\n")
    assert [(p.line, p.message) for p in problems_of(path)] == [
        (3, "unknown key 'heding' in a standing section; did you mean 'heading'?"),
        (3, "each standing section needs 'heading' (text) and 'markdown' (text)"),
    ]


def test_the_contract_keys_are_known(tmp_path: Path) -> None:
    path = write(tmp_path, """\
sender: {from: "Rapport <rapport@example.org>", reply_to: svar@example.org, return_path: bounces@example.org, verp: true}
transport: {kind: smtp, host: 127.0.0.1, port: 2525, security: none, username: u, password_env: DISPATCH_SMTP_PASSWORD,
            connections: 4, rate_per_minute: 0, recipients_per_message: 1, auth: password}
notify: [ops@example.org]
publish: {dir: var/intranet, base_url: "https://intranet.example.org/rapport/"}
schedules:
  - {name: daily, cron: "0 14 * * *", lists: [politisk-ledning, chefer]}
approval: four_eyes
bounces:
  host: imap.example.org
  port: 993
  security: tls
  username: bounces@example.org
  password_env: DISPATCH_IMAP_PASSWORD
  folder: INBOX
  processed_folder: Processed
web: {listen: "127.0.0.1:8025", base_url: "https://rapport.intranet.example.org/"}
""")
    settings = load_settings(path)
    assert settings.sender.return_path == "bounces@example.org" and settings.sender.verp is True
    assert settings.bounces is not None and settings.bounces.host == "imap.example.org"
    assert settings.bounces.processed_folder == "Processed" and settings.bounces.port == 993
    assert settings.web is not None and settings.web.listen == "127.0.0.1:8025"


@pytest.mark.parametrize(("text", "line", "message"), [
    ("bounces:\n  host: imap.example.org\n  security: none\n", 3,
     "'bounces.security' must be tls or starttls, not 'none': the mailbox password must not cross the network unencrypted"),
    ("bounces:\n  port: 993\n", 2, "'bounces' needs 'host' (the IMAP server of the bounce mailbox)"),
    ("bounces:\n  host: imap.example.org\n  auth: kerberos\n", 3, "'bounces.auth' must be password or xoauth2, not 'kerberos'"),
    ("bounces:\n  host: imap.example.org\n  interval_minutes: 0\n", 3,
     "'bounces.interval_minutes' must be minutes from 1 to 1440, not 0"),
    ("sender:\n  from: r@example.org\n  verp: true\ntransport:\n  kind: smtp\n  recipients_per_message: 50\n", 3,
     "'sender.verp' needs one message per recipient: set transport.recipients_per_message to 1, or turn verp off "
     "(bounces then match by Message-ID)"),
])
def test_bounce_settings_are_checked_at_their_lines(tmp_path: Path, text: str, line: int, message: str) -> None:
    problems = [(p.line, p.message) for p in problems_of(write(tmp_path, text))]
    assert (line, message) in problems, problems


def test_the_contract_sections_are_validated(tmp_path: Path) -> None:
    path = write(tmp_path, "bounces:\n  host: [a, b]\n  port: 0\nweb: 8025\n")
    assert [(p.line, p.message) for p in problems_of(path)] == [
        (2, "'bounces.host' must be a str, not ['a', 'b']"),
        (3, "'bounces.port' must be a port number from 1 to 65535, not 0"),
        (4, "'web' must be a mapping of settings"),
    ]


def test_a_password_in_the_file_keeps_its_own_message(tmp_path: Path) -> None:
    path = transport_with(tmp_path, "password", "hunter2")
    [problem] = problems_of(path)
    assert problem.line == 5 and "secrets do not belong in the config file" in problem.message


# -- number ranges -----------------------------------------------------------------

TIMEOUT = "must be a finite number of seconds above 0"
RATE = "must be 0 (no limit) or a finite number above 0"
PORT = "must be a port number from 1 to 65535"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("timeout_seconds", "0", f"'transport.timeout_seconds' {TIMEOUT}, not 0.0"),
        ("timeout_seconds", "-1", f"'transport.timeout_seconds' {TIMEOUT}, not -1.0"),
        ("timeout_seconds", ".inf", f"'transport.timeout_seconds' {TIMEOUT}, not .inf"),
        ("timeout_seconds", ".nan", f"'transport.timeout_seconds' {TIMEOUT}, not .nan"),
        ("timeout_seconds", "true", "'transport.timeout_seconds' must be a float, not True"),
        ("rate_per_minute", ".inf", f"'transport.rate_per_minute' {RATE}, not .inf"),
        ("rate_per_minute", ".nan", f"'transport.rate_per_minute' {RATE}, not .nan"),
        ("rate_per_minute", "-1", f"'transport.rate_per_minute' {RATE}, not -1"),
        ("rate_per_minute", "true", "'transport.rate_per_minute' must be an int or float, not True"),
        ("port", "0", f"'transport.port' {PORT}, not 0"),
        ("port", "70000", f"'transport.port' {PORT}, not 70000"),
        ("port", "false", "'transport.port' must be an int, not False"),
        ("connections", "0", "'transport.connections' must be a whole number from 1 to 100, not 0"),
        ("connections", "101", "'transport.connections' must be a whole number from 1 to 100, not 101"),
        ("recipients_per_message", "0", "'transport.recipients_per_message' must be a whole number from 1 to 1000, not 0"),
        ("recipients_per_message", "1001", "'transport.recipients_per_message' must be a whole number from 1 to 1000, not 1001"),
        ("retry_window_hours", "0", "'transport.retry_window_hours' must be a finite number of hours above 0, not 0.0"),
        ("retry_window_hours", ".inf", "'transport.retry_window_hours' must be a finite number of hours above 0, not .inf"),
    ],
)
def test_transport_numbers_out_of_range_are_problems_at_their_line(tmp_path: Path, key: str, value: str, expected: str) -> None:
    path = transport_with(tmp_path, key, value)
    assert problems_of(path) == [Problem(str(path), 5, expected)]


RETRY = "'transport.retry_minutes' must list minutes to wait, each a finite number 0 or more, e.g. [1, 2, 5, 10, 30]"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("[]", [(5, f"{RETRY}; the list is empty")]),
        ("[1, -1]", [(5, f"{RETRY}, not -1")]),
        ("\n    - 1\n    - .inf\n    - .nan", [(7, f"{RETRY}, not .inf"), (8, f"{RETRY}, not .nan")]),
        ("[1, true]", [(5, f"{RETRY}, not true")]),
    ],
)
def test_retry_minutes_must_be_a_non_empty_list_of_finite_waits(tmp_path: Path, value: str, expected: list[tuple[int, str]]) -> None:
    path = transport_with(tmp_path, "retry_minutes", value)
    assert [(p.line, p.message) for p in problems_of(path)] == expected


@pytest.mark.parametrize("value", [".inf", ".nan", "2"])
def test_lease_seconds_must_be_finite_and_at_least_3(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"timezone: Europe/Stockholm\nlease_seconds: {value}\n")
    [problem] = problems_of(path)
    assert problem.line == 2 and problem.message.startswith("'lease_seconds' must be a number of seconds, at least 3")


@pytest.mark.parametrize(("option", "expected"), [
    ("timeout=0", "?timeout= takes seconds between 0 and 3600, not '0'"),
    ("timeout=soon", "?timeout= takes seconds between 0 and 3600, not 'soon'"),
    ("mode=ro", "unknown SQLite option 'mode'; the one option is ?timeout=SECONDS"),
])
def test_a_sqlite_ledger_option_is_checked_at_its_line(tmp_path: Path, option: str, expected: str) -> None:
    path = write(tmp_path, f"timezone: Europe/Stockholm\nledger: sqlite:///var/l.db?{option}\n")
    [problem] = problems_of(path)
    assert problem.line == 2 and problem.message == f"'ledger': {expected}"


def test_a_sqlite_ledger_waits_for_a_lock_as_long_as_its_timeout_says(tmp_path: Path) -> None:
    import sqlite3
    import time

    from dispatch.errors import LedgerError
    from dispatch.ledger import Ledger

    settings = load_settings(write(tmp_path, "timezone: Europe/Stockholm\nledger: sqlite:///var/l.db?timeout=0.2\n"))
    assert settings.ledger_url.endswith("/var/l.db?timeout=0.2")
    ledger = Ledger(settings.ledger_url, allow_new=True)
    try:
        assert ledger.shown.endswith("var/l.db"), "the option is not part of the ledger's name"
        lock = sqlite3.connect(tmp_path / "var" / "l.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(LedgerError, match="database is locked"):
            ledger.approve(date(2024, 11, 17), 1, "a" * 64, "Anna", datetime.now(UTC))
        # The 30 s default would hold the test for 30 s: the option is what made it give up.
        assert time.monotonic() - started < 20
        lock.execute("ROLLBACK")
        lock.close()
    finally:
        ledger.close()


def test_numbers_at_the_edges_of_their_ranges_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, SMTP + """\
  port: 65535
  connections: 100
  recipients_per_message: 1000
  rate_per_minute: 0
  timeout_seconds: 0.5
  retry_minutes: [0, 1.5]
  retry_window_hours: 0.25
lease_seconds: 3
""")
    settings = load_settings(path)
    t = settings.transport
    assert (t.port, t.connections, t.recipients_per_message, t.rate_per_minute) == (65535, 100, 1000, 0)
    assert (t.timeout_seconds, t.retry_minutes, t.retry_window_hours) == (0.5, (0.0, 1.5), 0.25)
    assert settings.lease_seconds == 3.0
    assert load_settings(transport_with(tmp_path, "port", "1")).transport.port == 1
    assert load_settings(transport_with(tmp_path, "timeout_seconds", "2")).transport.retry_minutes == DEFAULT_RETRY_MINUTES


# -- line breaks in values that reach headers and logs ------------------------------


def test_a_line_break_in_the_report_title_fails_check_with_its_line(project: Project) -> None:
    text = sample_with("  title: Regional rapport Millennium 2024", '  title: "Regional rapport\\nBcc: evil@example.org"')
    project.config_path.write_text(text, encoding="utf-8")
    result = project.run("check", "--date", "2024-11-17")
    assert result.returncode == 1, result.stderr
    line = line_of(text, "  title:")
    assert f"config.yaml:{line}: 'report.title' contains a line break; keep it on one line" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('report:\n  subject: "A\\nB"\n', 2, "'report.subject' contains a line break; keep it on one line"),
        ('report:\n  list_id: "a\\r\\nb"\n', 2, "'report.list_id' contains a line break; keep it on one line"),
        ('report:\n  title: "A\\tB"\n', 2, "'report.title' contains a control character; remove it"),
        ('sender:\n  from: "A <a@example.org>\\nBcc: b@example.org"\n', 2, "'sender.from' contains a line break; keep it on one line"),
        ('sender:\n  from: Rapport <rapport@example.org>\n  reply_to: "a@example.org\\x00"\n',
         3, "'sender.reply_to' contains a control character; remove it"),
        ("schedules:\n  - cron: '0 14 * * *'\n    lists: [a]\n    name: \"daily\\nx\"\n",
         4, "schedule 'daily\\nx': 'name' contains a line break or control character; remove it"),
    ],
)
def test_line_breaks_in_header_and_log_values_are_problems(tmp_path: Path, text: str, line: int, message: str) -> None:
    assert problems_of(write(tmp_path, text)) == [Problem(str(tmp_path / "config.yaml"), line, message)]


def test_the_preheader_may_span_lines(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "report:\n  preheader: >\n    Läget i regionen\n    i dag\n"))
    assert settings.report.preheader == "Läget i regionen i dag\n"


# -- secrets -----------------------------------------------------------------------


def smtp_with(tmp_path: Path, *lines: str) -> Path:
    """An SMTP transport with a username; ``lines`` start at line 6."""
    return write(tmp_path, SMTP + "  username: rapport\n" + "".join(f"  {line}\n" for line in lines))


def test_a_missing_password_variable_is_a_secret_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    path = smtp_with(tmp_path, f"password_env: {ENV}")
    settings = load_settings(path)  # loading does not look at the environment
    # A secret problem is a fact (the console words it in Swedish); its English is as it was.
    assert [(p.path, p.line, p.message) for p in secret_problems(settings)] == [(str(path), 6, (
        f"transport.password_env names {ENV}, which is not set in the environment; export it (or use password_file)"))]


def test_a_set_password_variable_is_no_problem_and_its_value_is_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, SECRET)
    monkeypatch.delenv(ENV + "_IMAP", raising=False)
    settings = load_settings(smtp_with(tmp_path, f"password_env: {ENV}"))
    assert secret_problems(settings) == []
    # With problems elsewhere (the bounce mailbox's variable is missing), the value still never shows.
    path = write(tmp_path, (tmp_path / "config.yaml").read_text(encoding="utf-8")
                 + f"bounces:\n  host: imap.example.org\n  username: b\n  password_env: {ENV}_IMAP\n  token_command: {SECRET}\n")
    problems = secret_problems(load_settings(path))
    assert [p.line for p in problems] == [10]
    assert problems[0].message.startswith(f"bounces.password_env names {ENV}_IMAP, which is not set")
    assert not any(SECRET in str(p) for p in problems)


def test_an_empty_password_variable_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "")
    [problem] = secret_problems(load_settings(smtp_with(tmp_path, f"password_env: {ENV}")))
    assert problem.line == 6 and "is set but empty" in problem.message


def test_a_maildir_transport_needs_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    path = write(tmp_path, f"transport:\n  kind: maildir\n  username: rapport\n  password_env: {ENV}\n")
    assert secret_problems(load_settings(path)) == []


def test_a_username_without_a_password_source_is_a_problem(tmp_path: Path) -> None:
    [problem] = secret_problems(load_settings(smtp_with(tmp_path)))
    assert problem.line == 5 and problem.message.startswith("transport.username is set but no password is")


def test_a_readable_password_file_is_no_problem(tmp_path: Path) -> None:
    (tmp_path / "smtp-password").write_text(SECRET + "\n", encoding="utf-8")
    assert secret_problems(load_settings(smtp_with(tmp_path, "password_file: smtp-password"))) == []


def test_an_unreadable_password_file_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "smtp-password"
    secret_file.write_text(SECRET, encoding="utf-8")
    secret_file.chmod(0)
    if os.geteuid() == 0:  # root reads any file: make this one refuse as it would refuse anyone else
        real = Path.read_bytes

        def refuse(self: Path) -> bytes:
            if self == secret_file:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)

        monkeypatch.setattr(Path, "read_bytes", refuse)
    try:
        [problem] = secret_problems(load_settings(smtp_with(tmp_path, "password_file: smtp-password")))
    finally:
        secret_file.chmod(0o600)
    assert problem.line == 6
    assert problem.message == (f"transport.password_file names {secret_file}, which cannot be read (Permission denied); "
                               "let the user running dispatch read it (or use password_env)")
    assert SECRET not in str(problem)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda path: None, "which does not exist; create it (or use password_env)"),
        (lambda path: path.mkdir(), "which is a directory"),
        (lambda path: path.write_text("\n", encoding="utf-8"), "which is empty"),
    ],
)
def test_a_missing_or_empty_password_file_is_a_problem(tmp_path: Path, make: Callable[[Path], object], fragment: str) -> None:
    make(tmp_path / "smtp-password")
    [problem] = secret_problems(load_settings(smtp_with(tmp_path, "password_file: smtp-password")))
    assert problem.line == 6 and problem.message.startswith("transport.password_file names ") and fragment in problem.message


def test_a_token_command_must_name_a_program_that_exists(tmp_path: Path) -> None:
    def problems(command: str) -> list[Problem]:
        text = SMTP + f"  username: rapport@example.org\n  auth: xoauth2\n  token_command: {command}\n"
        return secret_problems(load_settings(write(tmp_path, text)))

    assert problems(f"{sys.executable} -c 'print(1)'") == []
    assert problems("sh -c 'echo token'") == []
    [missing] = problems(f"no-such-token-program --client-secret {SECRET}")
    assert missing.line == 7
    assert missing.message == ("transport.token_command runs 'no-such-token-program', which is not found on PATH; "
                               "install it or give its full path")
    assert SECRET not in str(missing)
    script = tmp_path / "token.sh"
    script.write_text("#!/bin/sh\necho token\n", encoding="utf-8")
    script.chmod(0o644)
    [not_executable] = problems(str(script))
    assert not_executable.message == f"transport.token_command runs {script}, which is not executable; chmod +x it"
    script.chmod(0o755)
    assert problems(str(script)) == []
    [absent] = problems(str(tmp_path / "absent"))
    assert "which does not exist" in absent.message


# -- web.oidc: single sign-on (issue 18) ---------------------------------------------------------

OIDC = """\
timezone: Europe/Stockholm
web:
  oidc:
    issuer: https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0
    client_id: 11111111-2222-3333-4444-555555555555
    client_secret_env: DISPATCH_OIDC_SECRET
    claim: roles
    roles:
      Rapport.Redaktor: editor
      Rapport.Godkannare: approver
      Rapport.Drift: operator
"""


def test_single_sign_on_settings_load(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, OIDC + "    ca_file: certs/region-ca.pem\n    label: Logga in med SITHS\n"))
    assert settings.web is not None and settings.web.oidc is not None
    oidc = settings.web.oidc
    assert oidc.issuer.endswith("/v2.0") and oidc.claim == "roles" and oidc.client_secret_env == "DISPATCH_OIDC_SECRET"
    assert dict(oidc.roles) == {"Rapport.Redaktor": "editor", "Rapport.Godkannare": "approver", "Rapport.Drift": "operator"}
    assert oidc.scopes == "openid profile email" and oidc.label == "Logga in med SITHS"
    assert oidc.ca_file == tmp_path / "certs" / "region-ca.pem", "relative to the config file"
    assert settings.where("web.oidc.claim") == f"{tmp_path / 'config.yaml'}:7"
    web = load_settings(write(tmp_path, "web: {listen: '127.0.0.1:8025'}\n")).web
    assert web is not None and web.oidc is None


def test_a_client_secret_in_the_config_is_a_problem_at_its_line_and_never_shown(tmp_path: Path) -> None:
    path = write(tmp_path, OIDC + f"    client_secret: {SECRET}\n")
    [problem] = problems_of(path)
    assert problem.line == line_of(path.read_text(encoding="utf-8"), "client_secret:")
    assert problem.message.startswith("secrets do not belong in the config file: remove 'client_secret'")
    assert SECRET not in str(problem)


def test_an_unknown_role_is_a_problem_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, OIDC.replace("Rapport.Drift: operator", "Rapport.Drift: admin"))
    assert [(p.line, p.message) for p in problems_of(path)] == [
        (11, "'web.oidc.roles': 'Rapport.Drift' maps to 'admin', which is not a role; use one of editor, approver, operator"),
    ]


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("issuer: https://", "issuer: http://", 4, "'web.oidc.issuer' must start with https://, not 'http://login"),
        ("    client_id: 11111111-2222-3333-4444-555555555555\n", "", 3, "'web.oidc' needs 'client_id'"),
        ("client_secret_env: DISPATCH_OIDC_SECRET", "client_secret_env: A\n    client_secret_file: f", 7,
         "'web.oidc': set client_secret_env or client_secret_file, not both"),
        ("    client_secret_env: DISPATCH_OIDC_SECRET\n", "", 3, "'web.oidc' needs 'client_secret_env'"),
        ("    claim: roles\n", "    claim: roles\n    scopes: profile email\n", 8, "'web.oidc.scopes' must include openid"),
        ("      Rapport.Drift: operator\n", "      7: operator\n", 11, "'web.oidc.roles': the claim value 7 must be text"),
        ("    roles:\n      Rapport.Redaktor: editor\n      Rapport.Godkannare: approver\n      Rapport.Drift: operator\n", "",
         3, "'web.oidc.roles' must map claim values to roles"),
        ("    claim: roles", "    clam: roles", 7, "unknown key 'clam' in web.oidc; did you mean 'claim'?"),
    ],
)
def test_single_sign_on_problems_are_at_their_lines(tmp_path: Path, old: str, new: str, line: int, message: str) -> None:
    text = OIDC.replace(old, new)
    assert text != OIDC
    [problem] = problems_of(write(tmp_path, text))
    assert (problem.line, problem.message[:len(message)]) == (line, message), problem


def test_ledger_timeouts_are_read_with_defaults_and_checked_at_their_lines(tmp_path: Path) -> None:
    from dispatch.config import LedgerTimeouts

    path = write(tmp_path, "timezone: Europe/Stockholm\nledger_timeouts:\n  lock_seconds: 5\n  keepalive_seconds: 0\n")
    assert load_settings(path).ledger_timeouts == LedgerTimeouts(lock_seconds=5.0, keepalive_seconds=0.0)
    path = write(tmp_path, "timezone: Europe/Stockholm\nledger_timeouts:\n  lock_seconds: -1\n  lock_second: 3\n")
    first, second = problems_of(path)
    assert first.line == 3 and first.message.startswith("'ledger_timeouts.lock_seconds' must be a number of seconds from 0")
    assert second.line == 4 and "did you mean 'lock_seconds'?" in second.message
