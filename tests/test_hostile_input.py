"""Issue 15: bounded input, and files are what they claim.

Every test runs the real CLI as a process on real files. The hostile cases are timed
and their peak memory measured on the child itself (os.wait4's rusage), so a parser
that expands an alias bomb or reads a 100 MB file before refusing it fails here even
when it ends with the right message.
"""

from __future__ import annotations

import email
import os
import re
import resource
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from pathlib import Path

import pytest

from conftest import CLI, Project, unit_of
from dispatch.config.yamlsource import (
    ANCHORS_NOT_ALLOWED,
    EDITION_MAX_BYTES,
    LIST_MAX_BYTES,
    MB,
    YAML_LIST_MAX_BYTES,
)
from dispatch.publishing.intranet import PAGE_MODE

# A refusal must cost at most this much CPU time (user + system, the kernel's count for
# the child): the work that an expanding alias bomb or a 100 MB read would take, measured
# so that a machine busy with other things does not fail the test.
SECONDS = 5.0
PEAK_MB = 300  # ... and cost at most this much memory (the CLI alone is ~70 MB)
# A regression must fail the test, not swap the machine: the child gets at most this
# much address space and dies of MemoryError beyond it.
ADDRESS_SPACE = 2 * 1024 * MB

# The "billion laughs": nine levels of nine aliases, 10^9 strings once expanded.
BOMB = "".join(
    [f'a: &a [{", ".join(["lol"] * 9)}]\n']
    + [f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi", strict=True)]
)
SECRET = "hemligt123"


@dataclass
class Measured:
    returncode: int
    stdout: str
    stderr: str
    seconds: float  # CPU
    peak_mb: float
    wall: float  # from start to exit, as the test saw it

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_measured(project: Project, *args: str, timeout: float = 30.0) -> Measured:
    """The CLI as a process, with its CPU time and its own peak RSS (the rusage of wait4)."""
    argv = ["--config", str(project.config_path), *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.monotonic()
    try:
        served = CLI.run(argv, project.root, env, timeout, rlimit_as=ADDRESS_SPACE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"dispatch {' '.join(args)} still running after {timeout:.0f} s")
    if served is not None:
        result, usage = served
        return Measured(result.returncode, result.stdout, result.stderr, usage.cpu_seconds, usage.maxrss_kb / 1024,
                        time.monotonic() - start)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen([sys.executable, "-m", "dispatch", *argv], cwd=project.root, stdout=out, stderr=err, env=env)
        # Set from outside (no preexec_fn): the interpreter's start-up is long enough
        # that the limit is in place before the child reads any file.
        resource.prlimit(child.pid, resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
        while True:
            pid, status, rusage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout:
                child.kill()
                os.wait4(child.pid, 0)
                child.returncode = -9
                pytest.fail(f"dispatch {' '.join(args)} still running after {timeout:.0f} s")
            time.sleep(0.005)
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait again
        out.seek(0)
        err.seek(0)
        return Measured(
            child.returncode, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"),
            rusage.ru_utime + rusage.ru_stime, rusage.ru_maxrss / 1024,  # Linux reports KiB
            time.monotonic() - start,
        )


def assert_refused_cheaply(result: Measured, where: str, message: str) -> None:
    assert result.returncode == 1, result.output
    assert f"{where}: {message}" in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert result.seconds < SECONDS, f"took {result.seconds:.1f} s of CPU"
    assert result.peak_mb < PEAK_MB, f"peak RSS {result.peak_mb:.0f} MB"


def edition(front: str = "", body: str = "## A\n\n- b\n", day: str = "2024-11-18") -> str:
    return f"---\ncompiled: {day} 14:00\nstatus: approved\n{front}---\n\n{body}"


# -- YAML: aliases, nesting, unprintable characters ---------------------------------------

# The key each kind of file reads, so that a payload that got through would be used:
# 'notify' and 'compiled' are echoed with repr() when wrong, 'members' are iterated.
KEYS = {"config": "notify", "list": "members", "edition": "compiled"}
PAYLOADS: dict[str, tuple[Callable[[str], str], str]] = {
    "alias bomb": (lambda key: BOMB + f"{key}: *i\n", ANCHORS_NOT_ALLOWED),
    "deep nesting": (lambda key: f"{key}: {'[' * 10000}{']' * 10000}\n", "the YAML is nested more than 50 levels deep"),
    "NUL byte": (lambda key: f'{key}: "a\x00b"\n', "invalid YAML: a NUL byte at column"),
    "control character": (lambda key: f"{key}: a\x1bb\n", "invalid YAML: the control character U+001B at column"),
}


def plant(project: Project, kind: str, yaml_text: str) -> tuple[str, int, tuple[str, ...]]:
    """Put ``yaml_text`` into the config, a list file or an edition's front matter:
    (path as shown, line where it starts, the command that reads it)."""
    if kind == "config":
        text = project.config_path.read_text(encoding="utf-8")
        before, after = text.split("notify: [kommunikation@example.org]\n")
        project.config_path.write_text(before + yaml_text + after, encoding="utf-8")
        return "config.yaml", before.count("\n") + 1, ("recipients",)
    if kind == "list":
        (project.root / "recipients/hostile.yaml").write_text("name: Fientlig\n" + yaml_text, encoding="utf-8")
        return "recipients/hostile.yaml", 2, ("recipients", "hostile")
    (project.root / "reports/2024-11-18.md").write_text(
        f"---\n{yaml_text}status: approved\n---\n\n## A\n\n- b\n", encoding="utf-8")
    return "reports/2024-11-18.md", 2, ("check", "--date", "2024-11-18")


@pytest.mark.parametrize("kind", list(KEYS))
@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_hostile_yaml_is_refused_at_its_line_quickly_and_in_little_memory(project: Project, payload: str, kind: str) -> None:
    make, message = PAYLOADS[payload]
    where, line, command = plant(project, kind, make(KEYS[kind]))
    assert_refused_cheaply(run_measured(project, *command), f"{where}:{line}", message)


def test_the_alias_bomb_is_the_classic_one() -> None:
    # 9 levels of 9: the size the issue names, so the tests above test that bomb.
    assert BOMB.count("\n") == 9 and BOMB.count("*") == 72
    assert 330 < len(BOMB.encode()) < 430


# -- subject and preheader templates --------------------------------------------------------

REFUSED_TEMPLATES = {
    "string multiplication": ('{{ "a" * 1000000000 }}', "arithmetic"),
    "loop": ("{% for x in range(1000000000) %}x{% endfor %}", "'{% ... %}' statements"),
    "attribute access": ("{{ title.__class__.__mro__ }}", "attribute and item access"),
    "call": ("{{ title.upper() }}", "calls are not"),
    "unbounded filter": ("{{ title | center(1000000000) }}", "the filter 'center' is not"),
    "computed filter argument": ("{{ title | truncate(9 ** 9 ** 9) }}", "may only be given plain values"),
}


@pytest.mark.parametrize("case", list(REFUSED_TEMPLATES))
def test_subject_template_beyond_variables_and_filters_is_refused(project: Project, case: str) -> None:
    template, message = REFUSED_TEMPLATES[case]
    front = f"subject: '{template}'\n"
    (project.root / "reports/2024-11-18.md").write_text(edition(front), encoding="utf-8")
    result = run_measured(project, "check", "--date", "2024-11-18")
    assert_refused_cheaply(result, "reports/2024-11-18.md:4", "subject: only text, variables and filters are allowed")
    assert message in result.stderr


def test_preheader_template_in_the_config_is_refused_at_its_config_line(project: Project) -> None:
    text = project.config_path.read_text(encoding="utf-8")
    before, after = text.split("  list_id: regional-rapport\n")
    hostile = "  preheader: '{{ title * 1000000000 }}'\n  list_id: regional-rapport\n"
    project.config_path.write_text(before + hostile + after, encoding="utf-8")
    result = run_measured(project, "check", "--date", "2024-11-17")
    assert_refused_cheaply(result, f"config.yaml:{before.count(chr(10)) + 1}", "report.preheader: only text, variables and filters")


def test_subject_longer_than_a_header_line_once_filled_in_is_refused(project: Project) -> None:
    # 40 x the 32-character title: a short template, a 1,280-character subject.
    (project.root / "reports/2024-11-18.md").write_text(edition(f"subject: '{'{{ title }}' * 40}'\n"), encoding="utf-8")
    result = project.run("check", "--date", "2024-11-18")
    assert result.returncode == 1
    assert ("reports/2024-11-18.md:4: subject: the subject is 1280 characters once the variables are filled in, "
            "over the 998-character limit") in result.stderr


def test_variables_and_filters_still_make_the_subject(project: Project, tmp_path: Path) -> None:
    (project.root / "reports/2024-11-18.md").write_text(
        edition("subject: '{{ title | upper }}: {{ date_label | capitalize }} {{ missing | default(\"(rev)\") }}'\n"), encoding="utf-8")
    result = project.run("preview", "--date", "2024-11-18", "--out", str(tmp_path / "preview"))
    assert result.returncode == 0, result.stderr
    message = email.message_from_bytes((tmp_path / "preview/2024-11-18.eml").read_bytes(), policy=policy.default)
    assert message["Subject"] == "REGIONAL RAPPORT MILLENNIUM 2024: Måndag 18 november 2024 (rev)"


# -- size limits ----------------------------------------------------------------------------


def write_big(path: Path, head: str, unit: str, size: int) -> None:
    """A real (not sparse) file of ``size`` bytes: ``head`` then ``unit`` repeated."""
    chunk = (unit * max(1, (1 * MB) // len(unit))).encode("utf-8")
    with path.open("wb") as handle:
        handle.write(head.encode("utf-8"))
        while handle.tell() < size:
            handle.write(chunk)
        handle.truncate(size)


def test_a_100_mb_edition_is_refused_before_it_is_read(project: Project) -> None:
    path = project.root / "reports/2024-11-18.md"
    write_big(path, edition(body="## A\n\n"), "- Lorem ipsum dolor sit amet, [länk](https://example.org/a).\n", 100 * MB)
    result = run_measured(project, "check", "--date", "2024-11-18")
    assert_refused_cheaply(result, "reports/2024-11-18.md:1", "the file is 100.0 MB, over the 1 MB limit for an edition; ")


def test_an_urgent_message_file_has_the_edition_limit(project: Project) -> None:
    path = project.root / "reports/urgent/stor.md"
    write_big(path, "---\nsubject: Stor\n---\n\n", "Lorem ipsum dolor sit amet.\n", EDITION_MAX_BYTES + 1)
    result = run_measured(project, "check", "--urgent", "--file", str(path))
    assert_refused_cheaply(result, "reports/urgent/stor.md:1", "the file is 1,048,577 bytes, over the 1 MB limit for an edition")


def test_a_config_over_1_mb_is_refused(project: Project) -> None:
    write_big(project.config_path, project.config_path.read_text(encoding="utf-8"), "# padding\n", 2 * MB)
    result = run_measured(project, "recipients")
    assert_refused_cheaply(result, "config.yaml:1", "the file is 2.0 MB, over the 1 MB limit for a config file")


def test_a_60_mb_list_is_refused(project: Project) -> None:
    rows = "".join(f"person{i:06d}@example.org,Person {i}\n" for i in range(1000))
    write_big(project.root / "recipients/stor.csv", "email,name\n", rows, 60 * MB)
    result = run_measured(project, "recipients", "stor")
    assert_refused_cheaply(result, "recipients/stor.csv:1", "the file is 60.0 MB, over the 50 MB limit for a recipient list")
    assert LIST_MAX_BYTES == 50 * MB


def test_a_yaml_list_over_its_limit_is_refused_and_pointed_to_csv(project: Project) -> None:
    write_big(project.root / "recipients/stor.yaml", "name: Stor\nmembers:\n", "  - {email: a@example.org, name: A}\n",
              YAML_LIST_MAX_BYTES + 1)
    result = run_measured(project, "recipients", "stor")
    assert_refused_cheaply(result, "recipients/stor.yaml:1",
                           "the file is 10,485,761 bytes, over the 10 MB limit for a YAML recipient list; save a list this large as CSV")


@pytest.mark.slow  # 100,000 recipients; fast twin: test_a_60_mb_list_is_refused
def test_a_100000_row_csv_list_still_loads(project: Project) -> None:
    rows = "".join(f"person{i:06d}@example.org,Person {i}\n" for i in range(100_000))
    (project.root / "recipients/stor.csv").write_text("email,name\n" + rows, encoding="utf-8")
    assert 3 * MB < (project.root / "recipients/stor.csv").stat().st_size < 5 * MB
    result = project.run("recipients", "stor")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "stor: 100000 members" in result.stdout


# -- files are what they claim ---------------------------------------------------------------


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file the service user can read and nobody should see: the kind a link points at."""
    path = tmp_path / "secrets.env"
    path.write_text(f"DISPATCH_SMTP_PASSWORD={SECRET}\n", encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("name", ["suppressed.txt", "chefer.csv"])
def test_a_symbolic_link_in_recipients_is_refused_and_its_target_never_shown(project: Project, secret: Path, name: str) -> None:
    link = project.root / "recipients" / name
    link.unlink(missing_ok=True)
    link.symlink_to(secret)
    for command in (("check", "--date", "2024-11-17"), ("recipients",)):
        result = project.run(*command)
        assert result.returncode == 1, result.stderr
        assert (f"recipients/{name}:1: the file is a symbolic link (to {secret}); dispatch reads only regular "
                "files in recipients/; copy the file instead") in result.stderr
        assert SECRET not in result.stdout + result.stderr


def test_a_symbolic_link_as_the_edition_is_refused(project: Project, secret: Path) -> None:
    (project.root / "reports/2024-11-18.md").unlink(missing_ok=True)  # the second sample edition (issue 19)
    (project.root / "reports/2024-11-18.md").symlink_to(secret)
    result = project.run("check", "--date", "2024-11-18")
    assert result.returncode == 1
    assert "reports/2024-11-18.md:1: the file is a symbolic link" in result.stderr
    assert "dispatch reads only regular files in reports/" in result.stderr
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize("name", ["recipients/suppressed.txt", "recipients/chefer.csv", "reports/2024-11-17.md"])
def test_a_named_pipe_is_refused_without_waiting_for_a_writer(project: Project, name: str) -> None:
    path = project.root / name
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    result = run_measured(project, "check", "--date", "2024-11-17", timeout=15)
    assert_refused_cheaply(result, f"{name}:1", "the file is a named pipe (FIFO); dispatch reads only regular files")
    assert result.wall < SECONDS, f"waited {result.wall:.1f} s"  # waiting costs no CPU: this is the clock's to tell


def test_a_bad_csv_row_is_named_by_line_with_the_value_shortened(project: Project) -> None:
    long_value = "x" * 5000 + "SLUTET-AV-RADEN@example.org"
    (project.root / "recipients/lang.csv").write_text(f"email,name\nok@example.org,Ok\n{long_value},Namn\n", encoding="utf-8")
    result = project.run("recipients", "lang")
    assert result.returncode == 1
    problem = next(line for line in result.stderr.splitlines() if line.startswith("recipients/lang.csv:3: invalid address"))
    assert "SLUTET-AV-RADEN" not in problem and len(problem) < 300


def test_a_csv_without_an_email_header_shows_at_most_a_short_part_of_it(project: Project) -> None:
    (project.root / "recipients/fel.csv").write_text(f"DISPATCH_SMTP_PASSWORD=hemligt;{'y' * 200}{SECRET}\n", encoding="utf-8")
    result = project.run("recipients", "fel")
    assert result.returncode == 1
    assert "recipients/fel.csv:1: the first row must be a header with an 'email' column" in result.stderr
    assert SECRET not in result.stderr


# -- what we write ---------------------------------------------------------------------------


def test_exports_and_the_ledger_are_private_and_pages_stay_readable(project: Project, tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        sent = project.run("send", "--date", "2024-11-17")
        assert sent.returncode == 0, sent.stderr
        exported = project.run("export", "2024-11-17", "--out", str(tmp_path / "export"))
        assert exported.returncode == 0, exported.stderr
    finally:
        os.umask(previous)

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    files = sorted((tmp_path / "export").iterdir())
    assert len(files) >= 4
    assert {path.name: mode(path) for path in files} == {path.name: 0o600 for path in files}
    ledger = project.root / "var/ledger.db"
    assert mode(ledger) == 0o600
    # While the ledger is open, SQLite's -wal and -shm files take the database's mode.
    with sqlite3.connect(ledger) as connection:
        connection.execute("UPDATE dispatches SET subject = subject")
        for suffix in ("-wal", "-shm"):
            assert mode(Path(f"{ledger}{suffix}")) == 0o600
    connection.close()
    intranet = project.root / "var/intranet"
    assert mode(intranet / "2024-11-17.html") == PAGE_MODE
    assert mode(intranet / ".publish.lock") == 0o644  # the umask, as for any file we make


@pytest.mark.parametrize("planted", ["lock", "page"])
def test_publishing_never_follows_a_symbolic_link(project: Project, tmp_path: Path, planted: str) -> None:
    intranet = project.root / "var/intranet"
    intranet.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    if planted == "page":
        elsewhere.write_text("someone else's file\n", encoding="utf-8")
    name = ".publish.lock" if planted == "lock" else "2024-11-17.html"
    (intranet / name).symlink_to(elsewhere)  # the lock's link dangles: O_CREAT through it would create the target
    result = project.run("publish", "--date", "2024-11-17")
    assert result.returncode == 1
    what = "lock file" if planted == "lock" else "page"
    assert f"var/intranet/{name}: the {what} is a symbolic link (to {elsewhere}); dispatch does not follow links" in result.stderr
    if planted == "lock":
        assert not elsewhere.exists()
    else:
        assert elsewhere.read_text(encoding="utf-8") == "someone else's file\n"
    assert (intranet / name).is_symlink()


def test_a_symbolic_link_as_the_publish_directory_is_refused(project: Project, tmp_path: Path) -> None:
    # Through the API: config.py resolves publish.dir (and so any link in it) when it
    # loads the config, so from the CLI this directory arrives already resolved.
    from datetime import date, datetime

    from dispatch import app
    from dispatch.config import load_settings
    from dispatch.publishing.intranet import PublishError, publish_edition

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "intranet"
    link.symlink_to(elsewhere)
    settings = load_settings(project.config_path)
    now = datetime(2024, 11, 17, 15, 0, tzinfo=settings.timezone)
    edition = app.read_edition(unit_of(settings), date(2024, 11, 17), None, now)
    with pytest.raises(PublishError, match=r"the publish directory is a symbolic link \(to .*elsewhere\)"):
        publish_edition(edition, link, settings.templates_dir, now)
    assert list(elsewhere.iterdir()) == []


def test_a_symlinked_publish_directory_is_refused_by_the_command(project: Project, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (project.root / "var").mkdir(exist_ok=True)
    (project.root / "var" / "intranet").symlink_to(elsewhere)
    result = project.run("publish", "--date", "2024-11-17")
    assert result.returncode == 1, result.stderr
    assert "the publish directory is a symbolic link" in result.stderr
    assert list(elsewhere.iterdir()) == [], "nothing written through the link"


@pytest.mark.parametrize("written", ['"²"', "²", "0x2", "1_0", "+2"])
def test_a_revision_not_written_in_ascii_digits_is_refused_at_its_line(project: Project, written: str) -> None:
    """'²'.isdigit() is true and int('²') fails; YAML reads 0x2, 1_0 and +2 as numbers: a
    revision is ASCII digits, anything else a problem at its line, never a crash."""
    path = project.root / "reports/2024-11-18.md"
    path.write_text(path.read_text(encoding="utf-8").replace(
        "status: approved\n", f"status: approved\nrevision: {written}\ncorrection: Rättad tid.\n", 1), encoding="utf-8")
    checked = project.run("check", "--date", "2024-11-18")
    assert checked.returncode == 1
    assert re.search(r"^reports/2024-11-18\.md:4: 'revision' must be a whole number from 1, not ", checked.stderr, re.M), \
        checked.stderr
    assert "Traceback" not in checked.stderr
