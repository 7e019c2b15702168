"""The rules of the layout (DESIGN.md, docs/explanation/architecture.md), checked on the source.

- One way in (issue 16, issue 31): the command line (whose `serve` command runs app's scheduler
  service) and the console reach the rest of the program only through ``dispatch.app``, the value
  types (``dispatch.values``), their wording (``dispatch.wording``) and the error types
  (``dispatch.errors``), so that the console, the CLI and the service share one set of functions
  and one approval rule.
- No private name (``_x``) is imported from another module: a name another module needs is an
  interface, and says so by being public (issue 31, in place of a cap on lines).
- No import cycle anywhere in ``src`` (issue 31).
- Every package appears in the architecture page's module map.

Imports are read with ``ast``. For the first two rules type-only imports (``if TYPE_CHECKING:``)
and imports inside functions count too; the cycle rule leaves type-only imports out (below, why).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "src" / "dispatch"
ARCHITECTURE = ROOT / "docs" / "explanation" / "architecture.md"

# What a front door (cli, web) may import from the project, besides its own package.
ALLOWED = ("dispatch.app", "dispatch.values", "dispatch.wording", "dispatch.errors")


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
            module = absolute(node, package)
            if module.split(".")[0] != "dispatch":
                continue
            if module == "dispatch":
                # `from dispatch import app`: each name is a module of the package.
                for alias in node.names:
                    yield node.lineno, f"dispatch.{alias.name}"
            else:
                yield node.lineno, module


def absolute(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from ... import`` reads from, relative imports resolved against ``package``."""
    module = node.module or ""
    if not node.level:
        return module
    parts = package.split(".")
    return ".".join([*parts[: len(parts) - node.level + 1], *([module] if module else [])])


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
def test_front_doors_import_only_app_values_wording_and_errors(path: Path) -> None:
    wrong = [f"{path.relative_to(ROOT)}:{line}: imports {module}" for line, module in project_imports(path)
             if not allowed(path, module)]
    assert not wrong, "cli and web go through dispatch.app (and the values, their wording, the errors) only:\n" + "\n".join(wrong)


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
    assert not allowed(probe, "dispatch.config"), "the settings come through dispatch.app"
    assert allowed(probe, "dispatch.values") and allowed(probe, "dispatch.wording")
    assert not allowed(probe, "dispatch.values_extra"), "a prefix of a name is not the name"
    assert not allowed(PACKAGE / "web" / "probe.py", "dispatch.cli"), "the console does not call the command line"
    assert not allowed(PACKAGE / "cli" / "serving.py", "dispatch.serve")
    assert allowed(PACKAGE / "cli" / "serving.py", "dispatch.app.service")


def module_and_package(path: Path) -> tuple[str, str]:
    """``dispatch.email.edition`` in ``dispatch.email``; a package's ``__init__`` is the package, in itself."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), ".".join(parts[:-1])
    return ".".join(parts), ".".join(parts[:-1])


def private_imports(source: str, module: str, package: str) -> Iterator[tuple[int, str]]:
    """(line, module.name) for every private name this module takes from another project module:
    ``from m import _x``, and ``m._x`` where ``m`` is a project module imported here."""
    tree = ast.parse(source)
    names: dict[str, str] = {}  # local name -> the project module or name it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "dispatch":
                    names[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            source_module = absolute(node, package)
            if source_module.split(".")[0] != "dispatch":
                continue
            for alias in node.names:
                if is_private(alias.name) and source_module != module:
                    yield node.lineno, f"{source_module}.{alias.name}"
                names[alias.asname or alias.name] = f"{source_module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            base = ast.unparse(node.value)
            if base in names and names[base] != module:
                yield node.lineno, f"{names[base]}.{node.attr}"


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_name_is_imported_from_another_module(path: Path) -> None:
    module, package = module_and_package(path)
    wrong = [f"{path.relative_to(ROOT)}:{line}: uses {target}"
             for line, target in private_imports(path.read_text(encoding="utf-8"), module, package)]
    assert not wrong, "a name another module needs is an interface: make it public, or move the code where it belongs:\n" + "\n".join(wrong)


def test_the_private_name_checker_sees_every_way_in() -> None:
    source = (
        "import dispatch.ledger.database\n"
        "import dispatch.ledger.database as db\n"
        "from dispatch.config.reader import _Reader, Reader\n"
        "from .edition import _split_sections\n"
        "from dispatch import email\n"
        "from dispatch.email import edition\n"
        "from dispatch.app import records as r\n"
        "from . import _here\n"
        "def f():\n"
        "    from dispatch.web.pages import _safe_next\n"
        "    return db._utc, edition._CONTROL, r._row, dispatch.ledger.database._describe, email._x, _local.__dict__, Reader._y\n"
    )
    found = {target for _, target in private_imports(source, "dispatch.email.whats_new", "dispatch.email")}
    assert found == {"dispatch.config.reader._Reader", "dispatch.email.edition._split_sections", "dispatch.web.pages._safe_next",
                     "dispatch.ledger.database._utc", "dispatch.email.edition._CONTROL", "dispatch.app.records._row",
                     "dispatch.ledger.database._describe", "dispatch.email._x", "dispatch.email._here",
                     "dispatch.config.reader.Reader._y"}
    assert not set(private_imports("from dispatch.email.edition import _own\nimport dispatch.email.edition as me\nme._x\n",
                                   "dispatch.email.edition", "dispatch.email")), "a module's own private names are its own"
    assert module_and_package(PACKAGE / "config" / "__init__.py") == ("dispatch.config", "dispatch.config")
    assert module_and_package(PACKAGE / "config" / "reader.py") == ("dispatch.config.reader", "dispatch.config")


def packages() -> list[str]:
    return sorted(path.parent.name for path in PACKAGE.glob("*/__init__.py"))


def test_every_package_is_in_the_module_map() -> None:
    missing = [name for name in packages() if not mapped(ARCHITECTURE.read_text(encoding="utf-8"), name)]
    assert not missing, f"docs/explanation/architecture.md's module map does not show: {', '.join(missing)}"


def mapped(page: str, package: str) -> bool:
    """The module map names the package as a heading of its own: ``### `email/` ``."""
    return f"### `{package}/`" in page


def test_the_module_map_checker_wants_a_heading_not_a_mention() -> None:
    page = "## Module map\n\n### `email/`\n\nedition ...; see also the delivery/ package\n"
    assert mapped(page, "email") and not mapped(page, "delivery")
    assert "email" in packages() and "values" not in packages(), "packages are directories with an __init__.py"


@pytest.mark.parametrize("path", sorted((PACKAGE / "web").glob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_console_does_not_narrow_with_assert(path: Path) -> None:
    """An assert is gone under `python -O`: the console's checks of who is signed in are real code."""
    asserts = [node.lineno for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, ast.Assert)]
    assert not asserts, f"{path.relative_to(ROOT)}: assert on line(s) {asserts}"


# -- no import cycle ----------------------------------------------------------------------------
#
# Every import of a dispatch module counts, at module level and inside functions (an import in a
# function is a cycle put off until the call, not broken). Imports under ``if TYPE_CHECKING:`` are
# left out: they never run, and annotations may name each other both ways. Importing a submodule
# also runs its package's __init__; that edge is left out too, since a package that re-exports its
# own submodules would otherwise be a "cycle" that Python resolves without trouble.


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            skipped.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return skipped


def runtime_imports(source: str, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``module`` imports when it runs (or when its functions do).
    ``from package import name`` is an import of the submodule ``package.name`` where one exists."""
    tree = ast.parse(source)
    skipped = _type_checking_nodes(tree)
    package = module if is_package else module.rpartition(".")[0]
    named: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            for alias in node.names:
                named.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    found = set()
    for name in named:
        while name not in modules and "." in name:
            name = name.rpartition(".")[0]  # `import dispatch.x.y` of an object: its module
        if name in modules and name != module:
            found.add(name)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    files = {_module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    modules = set(files)
    return {name: runtime_imports(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", modules)
            for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each cycle's modules (a strongly connected component of more than one module, or a
    module importing itself), found with Tarjan's algorithm without recursion."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.get(target, ())))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph.get(node, ()):
                        found.append(sorted(component))
    return found


def test_no_import_cycle_in_src() -> None:
    found = cycles(import_graph(PACKAGE))
    assert not found, "modules that import each other (move the shared piece into its own module):\n" + "\n".join(
        " <-> ".join(cycle) for cycle in found)


def test_the_cycle_checker_sees_a_cycle_through_any_kind_of_import(tmp_path: Path) -> None:
    root = tmp_path / "dispatch"
    (root / "email").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "email" / "__init__.py").write_text("from dispatch.email import edition\n")
    (root / "email" / "edition.py").write_text("from . import editorial\n")
    # The way back is an import inside a function, as edition <-> editorial once was.
    (root / "email" / "editorial.py").write_text("def f():\n    from dispatch.email.edition import split\n")
    (root / "email" / "markup.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from dispatch.email import editorial\n")
    (root / "values.py").write_text("import dispatch.email.markup\n")
    graph = import_graph(root)
    assert graph["dispatch.email.edition"] == {"dispatch.email.editorial"}
    assert graph["dispatch.email.editorial"] == {"dispatch.email.edition"}
    assert graph["dispatch.email.markup"] == set(), "type-only imports do not run"
    assert graph["dispatch.values"] == {"dispatch.email.markup"}
    assert cycles(graph) == [["dispatch.email.edition", "dispatch.email.editorial"]]
    (root / "email" / "editorial.py").write_text("from dispatch.email import markup\n")
    assert cycles(import_graph(root)) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}}) == [["a", "b", "c"], ["d"]]
