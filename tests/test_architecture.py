"""Issue 16, "one way in": the layering that DESIGN.md describes, checked on the source.

cli -> app -> pipeline -> the stages. The command line (whose `serve` command runs app's
scheduler service) and the console reach the rest of the program only through ``dispatch.app`` (plus the error types and the
settings), so that the console, the CLI and the service share one set of functions and one
approval rule. Imports are read with ``ast``: type-only imports (``if TYPE_CHECKING:``)
and imports inside functions count too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "src" / "dispatch"
MAX_LINES = 400

# What a driver (cli, serve) may import from the project.
# Issue 31: the front doors also read the value types the use cases return and word them from
# the catalogues (dispatch.wording: English in code, Swedish from locale/).
ALLOWED = ("dispatch.app", "dispatch.errors", "dispatch.config", "dispatch.config.settings", "dispatch.values",
           "dispatch.wording")


def driver_files() -> list[Path]:
    cli = PACKAGE / "cli"
    files = sorted(cli.rglob("*.py")) if cli.is_dir() else [PACKAGE / "cli.py"]
    files += sorted((PACKAGE / "web").rglob("*.py"))  # the console: the second front door
    # The scheduler process is app's (app.service): `dispatch serve` calls it like any command.
    assert not (PACKAGE / "serve.py").exists(), "the service process lives in app.service"
    return files


def project_imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every import of a ``dispatch`` module in the file, anywhere in it."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    return imports_in(path.read_text(encoding="utf-8"), package)


def imports_in(source: str, package: str) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "dispatch":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: from ..ledger import Ledger
                parts = package.split(".")
                module = ".".join([*parts[: len(parts) - node.level + 1], *([module] if module else [])])
            if module.split(".")[0] != "dispatch":
                continue
            if module == "dispatch":
                # `from dispatch import app`: each name is a module of the package.
                for alias in node.names:
                    yield node.lineno, f"dispatch.{alias.name}"
            else:
                yield node.lineno, module


def allowed(path: Path, module: str) -> bool:
    # Each front door's own modules; the command line also starts the console (web, serve).
    if path.parent.name == "cli":
        permitted: tuple[str, ...] = (*ALLOWED, "dispatch.cli", "dispatch.web")
    elif path.parent.name == "web":
        permitted = (*ALLOWED, "dispatch.web")
    else:
        permitted = ALLOWED
    return any(module == name or module.startswith(name + ".") for name in permitted)


@pytest.mark.parametrize("path", driver_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_drivers_import_only_app_errors_and_config(path: Path) -> None:
    wrong = [f"{path.relative_to(ROOT)}:{line}: imports {module}" for line, module in project_imports(path)
             if not allowed(path, module)]
    assert not wrong, "cli and serve go through dispatch.app only:\n" + "\n".join(wrong)


@pytest.mark.parametrize("path", driver_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_drivers_do_not_import_by_name_at_run_time(path: Path) -> None:
    """No importlib/__import__ around the rule above."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert "__import__" not in names and not {m for m in modules if m.split(".")[0] == "importlib"}


def test_the_checker_sees_every_kind_of_import() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import dispatch.ledger\n"
        "from dispatch import app, pipeline\n"
        "from .. import render\n"
        "from ..errors import InputError\n"
        "if TYPE_CHECKING:\n"
        "    from dispatch.models import Edition\n"
        "def f():\n"
        "    from dispatch.timetable import due_runs\n"
        "    from dispatch.app.records import status\n"
    )
    found = {module for _, module in imports_in(source, "dispatch.cli")}
    assert found == {"dispatch.ledger", "dispatch.app", "dispatch.pipeline", "dispatch.render", "dispatch.errors",
                     "dispatch.models", "dispatch.timetable", "dispatch.app.records"}
    probe = PACKAGE / "cli" / "probe.py"
    assert {m for m in found if not allowed(probe, m)} == {"dispatch.ledger", "dispatch.pipeline", "dispatch.render",
                                                           "dispatch.models", "dispatch.timetable"}
    assert not allowed(probe, "dispatch.config_reader"), "a prefix of a name is not the name"
    assert not allowed(PACKAGE / "cli" / "serving.py", "dispatch.serve")
    assert allowed(PACKAGE / "cli" / "serving.py", "dispatch.app.service")


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_400_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines; more than {MAX_LINES} is usually two responsibilities"


@pytest.mark.parametrize("path", sorted((PACKAGE / "web").glob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_console_does_not_narrow_with_assert(path: Path) -> None:
    """An assert is gone under `python -O`: the console's checks of who is signed in are real code."""
    asserts = [node.lineno for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, ast.Assert)]
    assert not asserts, f"{path.relative_to(ROOT)}: assert on line(s) {asserts}"
