"""The tests' CLI server (tests/cliserver.py) runs a command as a fresh interpreter would.

Most tests run `python -m dispatch` through it; they are only worth what that is worth. Each
command here runs both ways, in two copies of the sample project, and must end the same: exit
status, stdout and stderr (the copies' paths aside). A child that lost its buffered output at
exit, or turned an exit status into another, would differ here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CLI, copy_project

WHEN = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d:\d\d|Z)?|\b\d\d:\d\d(:\d\d)?\b")
MAILDIR_NAME = re.compile(r"new/[^\s\",]+")  # a Maildir file name: time, pid, host
COMMANDS = [
    ["--version"],
    ["send", "--no-such-option"],  # a usage error: exit 2, click's message on stderr
    ["status"],  # no ledger yet: one line, exit 1
    ["recipients", "politisk-ledning"],
    ["send", "--date", "2024-11-17"],  # the sample, into the Maildir outbox: a ledger, a page, a summary
    ["status", "2024-11-17"],
    ["history"],
]


@pytest.mark.slow  # a fresh interpreter per command (about a second of CPU each)
def test_a_command_ends_the_same_through_the_cli_server_and_as_a_fresh_interpreter(tmp_path: Path) -> None:
    if CLI.failed:
        pytest.skip("the CLI server is off (DISPATCH_TEST_FORK=0): everything already runs the ordinary way")
    forked_project = copy_project(tmp_path / "forked" / "project")
    fresh_project = copy_project(tmp_path / "fresh" / "project")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for command in COMMANDS:
        served = CLI.run(["--config", str(forked_project.config_path), *command], forked_project.root,
                         {**env, "DISPATCH_STATE_DIR": str(tmp_path / "forked" / "state")}, 120)
        assert served is not None, "the CLI server did not run the command"
        forked = served[0]
        fresh = subprocess.run([sys.executable, "-m", "dispatch", "--config", str(fresh_project.config_path), *command],
                               cwd=fresh_project.root, capture_output=True, text=True, timeout=120,
                               env={**env, "DISPATCH_STATE_DIR": str(tmp_path / "fresh" / "state")})

        def same(text: str, which: str) -> str:
            """The text with the copy's path, the moments of the run and Maildir names set aside."""
            return MAILDIR_NAME.sub("new/<name>", WHEN.sub("<when>", text.replace(str(tmp_path / which), "<root>")))

        assert forked.returncode == fresh.returncode, command
        assert same(forked.stdout, "forked").splitlines() == same(fresh.stdout, "fresh").splitlines(), command
        assert same(forked.stderr, "forked").splitlines() == same(fresh.stderr, "fresh").splitlines(), command
    assert forked.stdout.strip(), "history printed nothing: the comparison would be empty"
