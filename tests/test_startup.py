"""Start-up (issue 34): a command imports only what it needs, and `dispatch web` says where it
listens as soon as it does.

Behaviour, not timing: which libraries a fresh interpreter has loaded after running a
command's code path (`sys.modules`), and the console's line and health check. The time each
takes is measured side by side by bench/startup.py (a loaded machine would break a bound).
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dispatch.app
from conftest import ROOT, Project, start_dispatch
from consolekit import http_client

# Loaded by no command that neither signs anyone in, reads the bounce mailbox, renders an
# edition, signs mail, serves the console, talks to a directory nor runs the scheduler.
NEVER_FOR_STATUS = ("argon2", "imapclient", "flufl", "premailer", "cssutils", "lxml", "starlette", "uvicorn", "authlib",
                    "httpx2", "ldap3", "dkim", "markdownify", "bs4", "apscheduler", "email_validator", "requests")
# `--help` reads neither the config nor the ledger, and renders nothing.
NEVER_FOR_HELP = (*NEVER_FOR_STATUS, "sqlalchemy", "jinja2", "markdown_it", "babel", "yaml")

# Runs the command's code path as `python -m dispatch ARGS` does, in this fresh interpreter,
# then writes the top-level names of every module it loaded into OUT.
PROBE = """
import json, runpy, sys
out, sys.argv = sys.argv[1], ["dispatch", *sys.argv[2:]]
try:
    runpy.run_module("dispatch", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
with open(out, "w") as handle:
    json.dump({"code": code, "modules": sorted({name.split(".")[0] for name in sys.modules})}, handle)
"""


def loaded_by(tmp_path: Path, *args: str, cwd: Path) -> tuple[int, set[str], subprocess.CompletedProcess[str]]:
    """(exit code, top-level modules loaded, the process) of ``dispatch ARGS`` in a fresh interpreter
    (never the tests' forking CLI server, which has imported everything already)."""
    out = tmp_path / "loaded.json"
    done = subprocess.run([sys.executable, "-c", PROBE, str(out), *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.exists(), done.stderr
    found = json.loads(out.read_text(encoding="utf-8"))
    return found["code"], set(found["modules"]), done


def test_status_loads_neither_renderer_console_bounces_nor_directories(project: Project, tmp_path: Path) -> None:
    sent = project.run("send", "--date", "2024-11-17")
    assert sent.returncode == 0, sent.stderr
    code, modules, done = loaded_by(tmp_path, "--config", str(project.config_path), "status", cwd=project.root)
    assert code == 0, done.stderr
    assert "sent: 49" in done.stdout and "edition file: reports/2024-11-17.md unchanged" in done.stdout, done.stdout
    assert "sqlalchemy" in modules, "status reads the ledger (the probe sees what was loaded)"
    assert not modules & set(NEVER_FOR_STATUS), f"dispatch status loaded {sorted(modules & set(NEVER_FOR_STATUS))}"


def test_help_loads_no_library_beyond_the_command_line(tmp_path: Path) -> None:
    code, modules, done = loaded_by(tmp_path, "--help", cwd=tmp_path)
    assert code == 0 and "status" in done.stdout and "web" in done.stdout, done.stdout + done.stderr
    assert "click" in modules
    assert not modules & set(NEVER_FOR_HELP), f"dispatch --help loaded {sorted(modules & set(NEVER_FOR_HELP))}"


def test_the_console_without_single_sign_on_loads_no_oidc_client_nor_argon2(project: Project, tmp_path: Path) -> None:
    """What `dispatch web` builds before it listens: no authlib, httpx2 (single sign-on, only
    when web.oidc is configured), argon2 (at the first sign-in), bounce reader or renderer."""
    out = tmp_path / "console.json"
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from dispatch import app\n"
        "from dispatch.web import create_console\n"
        f"asgi = create_console(app.load_settings(Path({str(project.config_path)!r})))\n"
        "asgi.state.console.app.close()\n"
        f"Path({str(out)!r}).write_text(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=project.root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    modules = set(json.loads(out.read_text(encoding="utf-8")))
    assert {"starlette", "sqlalchemy", "jinja2"} <= modules, "the probe sees the console's own libraries"
    unwanted = {"authlib", "httpx2", "argon2", "imapclient", "flufl", "premailer", "ldap3", "markdownify"}
    assert not modules & unwanted, f"the console loaded {sorted(modules & unwanted)} before anyone used them"


LISTENING = re.compile(r"^dispatch web: listening on (http://127\.0\.0\.1:(\d+)/) \(sign in at (http://127\.0\.0\.1:\d+/login)\)$")


def test_web_says_where_it_listens_and_answers_there(project: Project) -> None:
    """Port 0: the line names the port the system chose, so it is the console's real address."""
    web = start_dispatch(project, "web", "--listen", "127.0.0.1:0")
    try:
        deadline = time.monotonic() + 60  # generous: a loaded machine; bench/startup.py measures the time
        found = None
        for line in web.stderr_lines():
            found = LISTENING.match(line)
            if found or time.monotonic() > deadline:
                break
        assert found, f"no 'listening on' line; stderr: {web.stderr()!r}"
        base, port, login = found.group(1), int(found.group(2)), found.group(3)
        assert port != 0 and login == base + "login"
        with http_client(base, timeout=10) as client:
            health = client.get("/healthz")
            assert health.status_code == 200, health.text
            assert client.get("/login").status_code == 200, "the sign-in page is where the line says"
    finally:
        web.terminate()
        code = web.wait(60)
        assert code == 0, f"exit {code} after SIGTERM (a clean stop is 0); stderr: {web.stderr()!r}"


def test_web_prints_no_address_when_it_cannot_listen(project: Project) -> None:
    """A port already taken: the console does not start, and says nothing of listening."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        web = start_dispatch(project, "web", "--listen", f"127.0.0.1:{taken.getsockname()[1]}")
        code = web.wait(60)
    assert code == 1, web.stderr()
    assert "listening on" not in web.stderr()


# -- dispatch.app's lazy names ------------------------------------------------------------------

APP_INIT = ROOT / "src" / "dispatch" / "app" / "__init__.py"


def type_checking_imports() -> dict[str, tuple[str, str]]:
    """name -> (module, original name) of the imports under ``if TYPE_CHECKING:`` in app/__init__.py."""
    found: dict[str, tuple[str, str]] = {}
    for node in ast.parse(APP_INIT.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom) and statement.module, ast.unparse(statement)
                for alias in statement.names:
                    found[alias.asname or alias.name] = (statement.module, alias.name)
    return found


def test_the_lazy_names_are_the_ones_type_checkers_read() -> None:
    """WHERE (what runs) and the TYPE_CHECKING imports (what mypy reads) name the same things."""
    lazy = {entry.partition(":")[0]: (module, entry.partition(":")[2] or entry)
            for module, entries in dispatch.app.WHERE.items() for entry in entries}
    assert lazy == type_checking_imports()
    assert set(dispatch.app.__all__) == set(lazy)


def test_every_name_of_dispatch_app_is_its_module_s_object() -> None:
    for name, (module, original) in type_checking_imports().items():
        assert getattr(dispatch.app, name) is getattr(importlib.import_module(module), original), name
    assert set(dispatch.app.__all__) <= set(dir(dispatch.app))


def test_an_unknown_name_of_dispatch_app_is_an_attribute_error() -> None:
    unknown = "no_such_use_case"
    with pytest.raises(AttributeError, match=f"has no attribute '{unknown}'"):
        getattr(dispatch.app, unknown)
    with pytest.raises(ImportError):
        from dispatch.app import no_such_use_case  # type: ignore[attr-defined]  # noqa: F401

