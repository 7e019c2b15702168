"""One root error for everything dispatch raises on purpose.

Each subclass carries the context a reader needs (a file and line, a host, an
address), added once where the outside world was touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from dispatch.values import Fact, RelayCause
from dispatch.wording import english


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file: where, and what as a fact (a code and its parameters)
    that each front door words; the command line shows it as ``path:line: message``.

    A plain string is an English sentence without a code: only the config reader's problems,
    which only the command line shows."""

    path: str
    line: int
    fact: Fact | str

    @staticmethod
    def of(path: str, line: int, code: str, **params: str | int | float | Fact) -> Problem:
        return Problem(path, line, Fact(code, MappingProxyType(params)))

    @property
    def message(self) -> str:
        """The problem in English, for the command line, the logs and the office's records."""
        return self.fact if isinstance(self.fact, str) else english(self.fact)

    @property
    def where(self) -> str:
        """``path:line``, or the path alone for line 0: no line (a file that does not exist, an
        option such as ``--to``), never a made-up ``:1`` or ``:0``."""
        return f"{self.path}:{self.line}" if self.line else self.path

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def display_path(path: Path | str) -> str:
    """A path as the user would type it: relative to the working directory when below it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class DispatchError(Exception):
    """Root of every error dispatch raises deliberately."""

    @property
    def fact(self) -> Fact:
        """What went wrong, for a front door to word: a subclass that knows more says more; by
        default the error as it was said (the command line prints ``str(error)`` itself)."""
        return Fact.of("error.said", text=str(self))


class InputError(DispatchError):
    """An edition, recipient list or config file is wrong; nothing may be sent."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class PreflightError(InputError):
    """The rendered message fails a pre-flight check; nothing may be sent."""


class LedgerError(DispatchError):
    """The ledger database cannot be reached or has an unexpected schema."""

    @property
    def fact(self) -> Fact:
        return Fact.of("error.ledger", detail=str(self))


class LedgerBusy(LedgerError):
    """A row or table the operation needs stayed locked longer than ``lock_timeout`` (another
    node's transaction, perhaps of a node that froze). Nothing was written; the caller may
    try again."""

    @property
    def fact(self) -> Fact:
        return Fact.of("error.ledger_busy", detail=str(self))


class TransportError(DispatchError, ConnectionError):
    """The mail server cannot be reached or refuses the session (not a single recipient).

    ``permanent``: retrying soon will not help (a 5xx to MAIL FROM, refused credentials, an
    untrusted certificate): the dispatch pauses and someone must fix the cause. Otherwise
    (a refused or lost connection, a 421, a timeout) the session is retried with backoff.
    Either way no recipient's fate is decided by it."""

    def __init__(self, endpoint: str, message: str, *, permanent: bool = False, cause: RelayCause | None = None) -> None:
        self.endpoint = endpoint
        self.permanent = permanent
        self.detail = message
        # Why, as a fact, decided where the library's error is caught (delivery/trouble.py);
        # None: nothing more is known than that the session failed.
        self.cause = cause
        super().__init__(f"{endpoint}: {message}")

    @property
    def fact(self) -> Fact:
        return Fact.of("error.transport", endpoint=self.endpoint, detail=self.detail)


class AuthenticationError(TransportError):
    """The mail server refused our credentials, or we refused to send them."""

    def __init__(self, endpoint: str, message: str) -> None:
        super().__init__(endpoint, message, permanent=True, cause=RelayCause.AUTHENTICATION)


class ChangeControlError(InputError):
    """The content may not go out as it is: it changed after it was sent, or it lacks the
    approval the config requires. ``details`` (e.g. a diff) is printed after the problems."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...], details: str = "") -> None:
        super().__init__(problems)
        self.details = details


class ConsoleError(DispatchError):
    """The editor console cannot start (its session key, its listen address)."""


class SigningError(DispatchError):
    """A message cannot be DKIM-signed (the key file, or dkimpy refusing); nothing is sent
    unsigned when signing is configured."""

    @property
    def fact(self) -> Fact:
        return Fact.of("error.signing", detail=str(self))


class DirectoryError(DispatchError):
    """A directory (LDAP or Microsoft Graph) could not be read: down, refused our credentials,
    or answered something we cannot use. ``server`` names it (a URL without credentials);
    the message never carries a password or a client secret. A list whose directory fails
    is held: sends go on with its last accepted snapshot."""

    def __init__(self, directory: str, server: str, message: str) -> None:
        self.directory = directory
        self.server = server
        self.detail = message
        super().__init__(f"{server}: {message}")

    @property
    def fact(self) -> Fact:
        return Fact.of("error.directory", directory=self.directory, server=self.server, detail=self.detail)
