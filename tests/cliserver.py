"""`python -m dispatch` as a real process, without paying for the interpreter's start-up
and the imports each time (about a second of CPU per run on the test machine).

This file is a program: the tests start it once (``CLIServer`` in conftest.py). It
imports the dispatch package, then reads one JSON request per line on stdin and answers
each with a fork: the child takes the request's working directory, environment, argv and
stdout/stderr files, and runs ``dispatch/__main__.py`` as ``python -m dispatch`` would,
ending the way an interpreter does (SystemExit codes, a traceback and exit 1 on an
uncaught exception, non-daemon threads joined, atexit handlers run; see finish()). The server is
single-threaded, so forking it is safe; it answers ``{"pid": ...}`` at once and
``{"status": ..., "rusage": ...}`` when the child has ended.

A request with ``"status_file"`` is a command in the background (a `serve`, a `web`, a send
that a test signals or kills part-way): the server answers with the pid only and goes on
reading requests; when the child ends, it writes the exit status into that file.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import os
import pkgutil
import resource
import runpy
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn


def preload() -> None:
    """Import what a command imports. Best effort: a module that does not import is left
    to the child, which then fails the way a fresh interpreter would, with its traceback."""
    names = ["dispatch.cli", "dispatch.app"]
    with contextlib.suppress(Exception):  # the child reports it
        import dispatch

        modules = pkgutil.walk_packages(dispatch.__path__, "dispatch.", onerror=lambda name: None)
        names += [m.name for m in modules if m.name != "dispatch.__main__"]  # that one runs the command
    # The libraries the program imports inside the functions that use them (issue 34: a command
    # loads only what it needs), loaded here once so that no child pays for them.
    names += ["argon2", "argon2.exceptions", "dkim", "dkim.crypto", "email_validator", "babel.dates", "premailer", "cssutils",
              "jinja2.sandbox"]
    for name in names:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def warm() -> None:
    """Render the sample edition once, so that what the libraries memoise of it (premailer
    keeps the parsed stylesheet and style attributes, keyed by their text) is there in
    every child, as in a long-running process. Best effort, like preload()."""
    root = Path(__file__).resolve().parents[1]
    with contextlib.suppress(Exception):
        from dispatch.config import load_settings
        from dispatch.email.edition import assemble
        from dispatch.email.render import render

        settings = load_settings(root / "config.yaml")
        path = root / "reports" / "2024-11-17.md"
        edition = assemble(path, path.read_text(encoding="utf-8"), settings.report, datetime(2024, 11, 17, 13, 0, tzinfo=UTC))
        render(edition, root / "templates" / "email", footer="")


def child(request: dict[str, Any]) -> None:
    """In the forked process: become `python -m dispatch ARGS` and never return normally."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # as in a fresh interpreter
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    stdin = os.open(os.devnull, os.O_RDONLY)
    stdout = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    stderr = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
        os.close(fd)
    if request.get("rlimit_as"):
        limit = int(request["rlimit_as"])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["-m", *request["args"]]  # run_module puts the __main__.py path first, as -m does
    sys.path.insert(0, request["cwd"])  # as -m does
    try:
        runpy.run_module("dispatch", run_name="__main__", alter_sys=True)
    except SystemExit as ended:
        finish(ended.code)
    finish(0)


def finish(code: object) -> NoReturn:
    """End the child as the interpreter ends a program, up to its teardown: non-daemon threads
    joined, atexit handlers run (logging's shutdown and weakref finalizers among them), the
    SystemExit code printed or turned into a status, stdout and stderr flushed. The teardown
    after that (every module's objects released) is left out: in a child of a preloaded
    process it writes to nearly every inherited page, which the kernel then copies (about
    40 ms of CPU per command, a tenth of the fast lane). The program closes what it opens
    (ledgers, files) itself and does not count on that teardown."""
    threading._shutdown()  # type: ignore[attr-defined]  # what Py_FinalizeEx calls first
    atexit._run_exitfuncs()
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): printed to stderr, exit status 1
        print(code, file=sys.stderr)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status & 0xFF)


BACKGROUND: dict[int, str] = {}  # pid -> the file its exit status goes to


def reap_background(_signum: int = 0, _frame: object = None) -> None:
    """SIGCHLD: record how the background children that ended did so. Only those: a command
    in the foreground is waited for by serve() itself."""
    for pid, status_file in list(BACKGROUND.items()):
        ended, status = os.waitpid(pid, os.WNOHANG)
        if ended:
            del BACKGROUND[pid]
            partial = status_file + ".part"
            with open(partial, "w", encoding="utf-8") as handle:
                handle.write(str(os.waitstatus_to_exitcode(status)))
            os.replace(partial, status_file)  # whole or not there


def serve() -> None:
    requests = os.fdopen(0, "r", encoding="utf-8", closefd=False)
    replies = 1
    signal.signal(signal.SIGCHLD, reap_background)
    while True:
        line = requests.readline()
        if not line:
            return
        request = json.loads(line)
        status_file = request.get("status_file")  # set: a command in the background
        # A background child that ended before it is in BACKGROUND would be missed: hold
        # SIGCHLD until it is (the child unblocks it for itself).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        pid = os.fork()
        if pid == 0:
            child(request)  # raises SystemExit (or anything else) up to the interpreter
            return
        if status_file:
            BACKGROUND[pid] = status_file
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        os.write(replies, (json.dumps({"pid": pid}) + "\n").encode())
        if status_file:
            continue
        _, status, usage = os.wait4(pid, 0)
        answer = {
            "status": os.waitstatus_to_exitcode(status),
            "rusage": {"maxrss_kb": usage.ru_maxrss, "cpu_seconds": usage.ru_utime + usage.ru_stime},
        }
        os.write(replies, (json.dumps(answer) + "\n").encode())


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != here]  # as for -m: tests/ is not on the path
    preload()
    warm()
    gc.freeze()  # the preloaded objects stay out of the children's collections: fewer copied pages
    serve()
