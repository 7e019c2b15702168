"""Whether the secrets the config names can be had (without ever reading them out)."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

from dispatch.config.settings import BounceSettings, Settings, TransportSettings
from dispatch.errors import Problem, display_path


def secret_problems(settings: Settings, *, for_send: bool = False) -> list[Problem]:
    """What the environment lacks for the secrets the config names: a password's environment
    variable or file, an OAuth2 token command. Checks that they can be had; never shows a value.

    Only for what a send would use: the SMTP transport's credentials (a maildir transport
    needs none) and the bounce mailbox's, when configured.
    """
    problems: list[Problem] = []
    if settings.transport.kind == "smtp":
        problems += _credential_problems(settings, "transport", settings.transport)
    if settings.bounces is not None and not for_send:  # reading bounces is not sending: check names it, send goes on
        problems += _credential_problems(settings, "bounces", settings.bounces)
    return problems


def _credential_problems(settings: Settings, section: str, creds: TransportSettings | BounceSettings) -> list[Problem]:
    shown = display_path(settings.path)

    def at(key: str, message: str) -> Problem:
        return Problem(shown, settings.line_of.get(f"{section}.{key}", 1), f"{section}.{key} {message}")

    if creds.auth == "xoauth2":
        trouble = _command_problem(creds.token_command) if creds.token_command else None
        return [at("token_command", trouble)] if trouble else []
    if not creds.username:
        return []
    if creds.password_env:
        value = os.environ.get(creds.password_env)
        if value is None:
            return [at("password_env", f"names {creds.password_env}, which is not set in the environment; "
                                       "export it (or use password_file)")]
        if not value:
            return [at("password_env", f"names {creds.password_env}, which is set but empty; "
                                       "export the password in it (or use password_file)")]
        return []
    if creds.password_file:
        message = _file_problem(creds.password_file)
        return [at("password_file", message)] if message else []
    return [at("username", f"is set but no password is: set {section}.password_env (the name of an environment "
                           f"variable) or {section}.password_file")]


def _file_problem(path: Path) -> str | None:
    """Why a password file cannot serve (without revealing its content), or None."""
    shown = display_path(path)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return f"names {shown}, which does not exist; create it (or use password_env)"
    except IsADirectoryError:
        return f"names {shown}, which is a directory; name the file that holds the password"
    except OSError as exc:
        return f"names {shown}, which cannot be read ({exc.strerror}); let the user running dispatch read it (or use password_env)"
    if not content.strip():
        return f"names {shown}, which is empty; put the password in it"
    return None


def _command_problem(command: str) -> str | None:
    """Why a token command's program cannot be run, or None. Only the program is shown:
    the rest of the command line may carry a client secret."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return f"cannot be split into words ({exc}); check its quotes"
    if not argv:
        return "is empty; give the command that prints an access token"
    program = argv[0]
    if "/" in program or (os.altsep is not None and os.altsep in program):
        candidate = Path(program)
        if not candidate.is_file():
            return f"runs {program}, which does not exist; give the full path of the token program"
        if not os.access(candidate, os.X_OK):
            return f"runs {program}, which is not executable; chmod +x it"
        return None
    if shutil.which(program) is None:
        return f"runs {program!r}, which is not found on PATH; install it or give its full path"
    return None
