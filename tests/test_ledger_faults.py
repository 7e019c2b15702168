"""Issue 16: a ledger whose table is gone is one line naming the ledger and the operation,
never a traceback, whichever command meets it."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from conftest import Project
from dispatch.errors import LedgerError
from dispatch.ledger import Ledger

COMMANDS = {
    "check": ("check", "--date", "2024-11-17"),
    "send": ("send", "--date", "2024-11-17"),
    "status": ("status",),
    "status-date": ("status", "2024-11-17"),
    "history": ("history",),
    "export": ("export", "2024-11-17"),
    "publish": ("publish", "--date", "2024-11-17"),
    "approve": ("approve", "--date", "2024-11-17", "--by", "Anna"),
}


@pytest.fixture
def broken_ledger(project: Project) -> Project:
    assert project.run("send", "--date", "2024-11-17").returncode == 0
    with sqlite3.connect(project.root / "var" / "ledger.db") as db:
        db.execute("DROP TABLE deliveries")
    return project


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_names_the_ledger_and_the_operation(name: str, broken_ledger: Project) -> None:
    result = broken_ledger.run(*COMMANDS[name])
    assert result.returncode in (1, 3), result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "no such table: deliveries" in line]
    assert len(errors) == 1, result.stderr
    assert re.search(r"ledger \S*ledger\.db \([a-z ]+\): OperationalError: no such table: deliveries", errors[0]), errors[0]



def test_a_database_error_is_wrapped_once_naming_the_operation_and_keeping_its_cause(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = Ledger(f"sqlite:///{path}", allow_new=True)
    try:
        with sqlite3.connect(path) as db:
            db.execute("DROP TABLE deliveries")
        with pytest.raises(LedgerError) as raised:
            ledger.counts(1)
        assert str(raised.value) == f"ledger {path} (counts): OperationalError: no such table: deliveries"
        assert isinstance(raised.value.__cause__, OperationalError), "the database's error is kept as its cause"
        assert not isinstance(raised.value.__cause__, LedgerError), "wrapped once"
    finally:
        ledger.close()
