"""Whether the secrets the config names can be had (without ever reading them out)."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

from dispatch.config.settings import BounceSettings, GraphDirectory, LdapDirectory, Settings, TransportSettings
from dispatch.errors import Problem, display_path
from dispatch.values import Fact


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
    if not for_send:  # a send uses the lists' accepted snapshots, not the directory
        for directory in settings.directories.values():
            problems += _directory_problems(settings, directory)
    return problems


def _directory_problems(settings: Settings, directory: LdapDirectory | GraphDirectory) -> list[Problem]:
    """The bind password (LDAP) or client secret (Graph) the directory names, and its CA file."""
    shown = display_path(settings.path)
    section = f"directories.{directory.name}"

    def at(key: str, trouble: Fact) -> Problem:
        return Problem(shown, settings.line_of.get(f"{section}.{key}", 1),
                       Fact(trouble.code, {**trouble.params, "setting": f"{section}.{key}"}))

    if isinstance(directory, LdapDirectory):
        secret = ("password_env", directory.password_env), ("password_file", directory.password_file)
    else:
        secret = ("client_secret_env", directory.client_secret_env), ("client_secret_file", directory.client_secret_file)
    problems: list[Problem] = []
    (env_key, env), (file_key, file) = secret
    if env:
        value = os.environ.get(env)
        if value is None:
            problems.append(at(env_key, Fact.of("secret.env_unset", name=env)))
        elif not value:
            problems.append(at(env_key, Fact.of("secret.env_empty", name=env)))
    elif file:
        trouble = _file_problem(file)
        if trouble:
            problems.append(at(file_key, trouble))
    if directory.ca_file is not None:
        try:
            with directory.ca_file.open("rb"):
                pass
        except OSError as exc:
            problems.append(at("ca_file", Fact.of("directory.ca_file_unusable", file=display_path(directory.ca_file),
                                                  detail=str(exc.strerror or exc))))
    return problems


def _credential_problems(settings: Settings, section: str, creds: TransportSettings | BounceSettings) -> list[Problem]:
    shown = display_path(settings.path)

    def at(key: str, trouble: Fact) -> Problem:
        return Problem(shown, settings.line_of.get(f"{section}.{key}", 1),
                       Fact(trouble.code, {**trouble.params, "setting": f"{section}.{key}"}))

    if creds.auth == "xoauth2":
        trouble = _command_problem(creds.token_command) if creds.token_command else None
        return [at("token_command", trouble)] if trouble else []
    if not creds.username:
        return []
    if creds.password_env:
        value = os.environ.get(creds.password_env)
        if value is None:
            return [at("password_env", Fact.of("secret.env_unset", name=creds.password_env))]
        if not value:
            return [at("password_env", Fact.of("secret.env_empty", name=creds.password_env))]
        return []
    if creds.password_file:
        trouble = _file_problem(creds.password_file)
        return [at("password_file", trouble)] if trouble else []
    return [at("username", Fact.of("secret.no_password", section=section))]


def _file_problem(path: Path) -> Fact | None:
    """Why a password file cannot serve (without revealing its content), or None."""
    shown = display_path(path)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return Fact.of("secret.file_missing", file=shown)
    except IsADirectoryError:
        return Fact.of("secret.file_is_directory", file=shown)
    except OSError as exc:
        return Fact.of("secret.file_unreadable", file=shown, detail=str(exc.strerror))
    if not content.strip():
        return Fact.of("secret.file_empty", file=shown)
    return None


def _command_problem(command: str) -> Fact | None:
    """Why a token command's program cannot be run, or None. Only the program is shown:
    the rest of the command line may carry a client secret."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return Fact.of("secret.command_unsplittable", detail=str(exc))
    if not argv:
        return Fact.of("secret.command_empty")
    program = argv[0]
    if "/" in program or (os.altsep is not None and os.altsep in program):
        candidate = Path(program)
        if not candidate.is_file():
            return Fact.of("secret.program_missing", program=program)
        if not os.access(candidate, os.X_OK):
            return Fact.of("secret.program_not_executable", program=program)
        return None
    if shutil.which(program) is None:
        return Fact.of("secret.program_not_on_path", program=repr(program))
    return None


class SecretUnavailable(Exception):
    """A secret named by ``*_env`` or ``*_file`` cannot be had. Not a DispatchError: each caller
    says it in its own error (a directory's, the console's), naming its own setting. ``reason``
    is ``env`` (unset or empty), ``unreadable`` (``detail`` says why), ``empty`` or ``none``
    (neither is set); never any part of a value."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def read_secret(env: str | None, file: Path | None) -> str:
    """The secret from the environment variable ``env``, else from ``file`` (surrounding
    whitespace, a trailing newline included, stripped), read at the moment it is needed."""
    if env:
        value = os.environ.get(env, "").strip()
        if not value:
            raise SecretUnavailable("env")
        return value
    if file:
        try:
            value = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretUnavailable("unreadable", str(exc.strerror or exc)) from None
        if not value:
            raise SecretUnavailable("empty")
        return value
    raise SecretUnavailable("none")
