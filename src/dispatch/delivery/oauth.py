"""OAuth2 access tokens for SMTP submission (SASL XOAUTH2), e.g. for Exchange Online.

dispatch does not speak to an identity provider itself: the operator configures a
``token_command`` (MSAL, the Azure CLI, a vault client...) that prints a token, either
bare or as JSON with ``access_token`` and ``expires_in`` / ``expires_on``. That keeps the
project free of any one identity library and lets the operator rotate credentials without
touching dispatch.

The token is a secret like a password: it is read from the command's stdout through a
pipe (never passed as an argument or through the environment, so it never shows in a
process listing), and it never appears in an exception, a log line or the ledger.
"""

from __future__ import annotations

import json
import re
import shlex
import smtplib
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from dispatch.delivery.transport import explain_auth_reply
from dispatch.errors import AuthenticationError

# Refetch this long before the stated expiry: a token that is valid when AUTH starts but
# expires during a long dispatch is harmless (SMTP checks it once per session), but clock
# skew between this host and the identity provider is not.
EXPIRY_MARGIN_SECONDS = 300.0
# A bare token says nothing about its lifetime; Entra ID tokens live 60-90 minutes, so
# assume less and fetch again early rather than collect a 535 mid-dispatch.
BARE_TOKEN_LIFETIME_SECONDS = 35 * 60.0
COMMAND_TIMEOUT_SECONDS = 60.0
# Replies after which a fresh token may help: 535 (credentials invalid, e.g. an expired
# or revoked token) and 454 (temporary authentication failure).
RETRY_CODES = (535, 454)
_STDERR_LIMIT = 600
# Anything that looks like a JWT or a long opaque credential is blanked out of the
# command's stderr before it goes into an error message: a careless script might print
# its token (or a refresh token) there.
_SECRET_LIKE = re.compile(r"[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}(?:\.[A-Za-z0-9_\-]*)?|[A-Za-z0-9+/_\-]{40,}={0,2}")


@dataclass(frozen=True)
class Token:
    """An access token and when to stop using it (epoch seconds, margin already applied)."""

    value: str
    refresh_at: float

    def __repr__(self) -> str:  # never let a token reach a traceback or a log line
        return f"Token(value=<redacted>, refresh_at={self.refresh_at!r})"


def parse_token_output(output: str, fetched_at: float) -> Token:
    """The command's stdout -> Token. ``fetched_at`` is taken *before* the command ran, so
    ``expires_in`` never overstates the lifetime. Raises ValueError with a message that
    never contains the output (it may be a secret)."""
    text = output.strip()
    if not text:
        raise ValueError("it printed nothing on stdout")
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"its output starts with '{{' but is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
        if not isinstance(data, dict):
            raise ValueError("its JSON output is not an object")
        # access_token: OAuth2 / MSAL; accessToken: `az account get-access-token` JSON.
        value = data.get("access_token", data.get("accessToken"))
        if not isinstance(value, str) or not value.strip():
            raise ValueError("its JSON output has no 'access_token' string")
        value = value.strip()
        expires_at = _expiry_from_json(data, fetched_at)
    else:
        value, expires_at = text, fetched_at + BARE_TOKEN_LIFETIME_SECONDS
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        # Probably a message rather than a token; do not show it, it might still be secret.
        raise ValueError("its output is not a single token (it contains spaces or line breaks); "
                         "print only the token, or JSON with access_token")
    if not value.isascii():
        raise ValueError("the token contains non-ASCII characters")
    # Never refresh before fetching: a token with a short life is used once rather than
    # never (the margin would otherwise put refresh_at in the past).
    refresh_at = max(expires_at - EXPIRY_MARGIN_SECONDS, fetched_at + min(60.0, max(0.0, expires_at - fetched_at) / 2))
    return Token(value, refresh_at)


def _expiry_from_json(data: dict[str, object], fetched_at: float) -> float:
    expires_in = data.get("expires_in")
    if expires_in is not None:
        try:
            return fetched_at + float(expires_in)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError("'expires_in' is not a number of seconds") from None
    # expires_on: epoch seconds (number or digit string, as MSAL and az emit) or an ISO time;
    # expiresOn: the Azure CLI's local "YYYY-MM-DD HH:MM:SS.ffffff".
    for key in ("expires_on", "expiresOn"):
        raw = data.get(key)
        if raw is None:
            continue
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        if isinstance(raw, str):
            stripped = raw.strip()
            try:
                return float(stripped)
            except ValueError:
                pass
            try:
                # A time without an offset is local time, as the Azure CLI writes it.
                return datetime.fromisoformat(stripped.replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise ValueError(f"'{key}' is neither epoch seconds nor an ISO time") from None
        raise ValueError(f"'{key}' is neither epoch seconds nor an ISO time")
    return fetched_at + BARE_TOKEN_LIFETIME_SECONDS


def xoauth2_string(username: str, token: str) -> str:
    """The SASL XOAUTH2 initial response, before base64 (smtplib encodes it)."""
    return f"user={username}\x01auth=Bearer {token}\x01\x01"


class CommandTokenSource:
    """Access tokens from the operator's ``token_command``, cached in memory.

    Several SMTP connections authenticate in parallel; the lock makes them share one fetch.
    """

    def __init__(self, command: str, endpoint: str, *, clock: Callable[[], float] = time.time,
                 timeout: float = COMMAND_TIMEOUT_SECONDS) -> None:
        self.endpoint = endpoint
        self._clock = clock
        self._timeout = timeout
        try:
            self._argv = shlex.split(command)
        except ValueError as exc:
            raise AuthenticationError(endpoint, f"transport.token_command cannot be split into words: {exc}") from None
        if not self._argv:
            raise AuthenticationError(endpoint, "transport.token_command is empty")
        self._lock = threading.Lock()
        self._token: Token | None = None
        self.fetches = 0  # how often the command ran; for operators' diagnostics and tests

    def __repr__(self) -> str:
        return f"CommandTokenSource({self._argv[0]!r}, {self.endpoint!r})"

    def token(self) -> str:
        """A token that is not known to be expired: the cached one, or a fresh one."""
        with self._lock:
            if self._token is None or self._clock() >= self._token.refresh_at:
                self._token = self._fetch()
            return self._token.value

    def invalidate(self, rejected: str) -> None:
        """Forget ``rejected``, unless another connection already replaced it: of several
        connections refused with the same token, only the first causes a new fetch."""
        with self._lock:
            if self._token is not None and self._token.value == rejected:
                self._token = None

    def authenticate(self, client: smtplib.SMTP, username: str) -> None:
        """AUTH XOAUTH2 on ``client`` (already encrypted: the transport checks that).
        A 535/454 reply means the token may be stale: fetch once more and retry once."""
        if not username:
            raise AuthenticationError(self.endpoint, "auth: xoauth2 needs transport.username (the mailbox address the token is for)")
        offered = client.esmtp_features.get("auth", "").upper().split() if client.has_extn("auth") else []
        if "XOAUTH2" not in offered:
            # Checked before fetching: no token is minted for a server that cannot take it.
            raise AuthenticationError(
                self.endpoint,
                f"the server does not offer AUTH XOAUTH2 (it offers: {' '.join(offered) or 'no AUTH at all'}); "
                f"check transport.host and that SMTP AUTH is enabled for {username}",
            )
        token = self.token()
        try:
            self._auth(client, username, token)
            return
        except smtplib.SMTPAuthenticationError as exc:
            if exc.smtp_code not in RETRY_CODES:
                reply = explain_auth_reply(exc.smtp_code, exc.smtp_error)
                raise AuthenticationError(self.endpoint, f"XOAUTH2 authentication failed: {reply}") from None
        self.invalidate(token)
        token = self.token()
        try:
            self._auth(client, username, token)
        except smtplib.SMTPAuthenticationError as exc:
            raise AuthenticationError(
                self.endpoint,
                f"XOAUTH2 authentication failed twice, also with a freshly fetched token: "
                f"{explain_auth_reply(exc.smtp_code, exc.smtp_error)}; check that token_command gets a token "
                f"for https://outlook.office365.com (scope SMTP.SendAsApp or SMTP.Send) and that "
                f"{username} may use SMTP AUTH",
            ) from None

    @staticmethod
    def _auth(client: smtplib.SMTP, username: str, token: str) -> None:
        # The initial response goes with the AUTH command (SASL-IR). If the server answers
        # with a 334 error challenge (as Gmail does), smtplib calls us again: the empty
        # reply lets the server send its final 5xx.
        def respond(challenge: bytes | None = None) -> str:
            return xoauth2_string(username, token) if challenge is None else ""

        client.auth("XOAUTH2", respond, initial_response_ok=True)

    def _fetch(self) -> Token:
        fetched_at = self._clock()
        self.fetches += 1
        try:
            completed = subprocess.run(
                self._argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=self._timeout, check=False,
            )
        except FileNotFoundError:
            raise self._error(f"{self._argv[0]!r} not found") from None
        except PermissionError:
            raise self._error(f"{self._argv[0]!r} is not executable") from None
        except subprocess.TimeoutExpired:
            raise self._error(f"no token within {self._timeout:g} seconds (the command was stopped)") from None
        except OSError as exc:
            raise self._error(f"cannot run it: {exc.strerror}") from None
        if completed.returncode != 0:
            raise self._error(f"it exited with status {completed.returncode}{_stderr_excerpt(completed.stderr)}")
        try:
            output = completed.stdout.decode("utf-8")
        except UnicodeDecodeError:
            raise self._error("its output is not UTF-8") from None
        try:
            return parse_token_output(output, fetched_at)
        except ValueError as exc:
            raise self._error(f"{exc}{_stderr_excerpt(completed.stderr)}") from None

    def _error(self, detail: str) -> AuthenticationError:
        return AuthenticationError(self.endpoint, f"cannot get an OAuth2 token from transport.token_command: {detail}")


def _stderr_excerpt(stderr: bytes) -> str:
    """The end of the command's stderr (where the reason usually is), secrets blanked."""
    text = stderr.decode("utf-8", "replace").strip()
    if not text:
        return ""
    text = _SECRET_LIKE.sub("[redacted]", text)
    text = " ".join(text.split())
    if len(text) > _STDERR_LIMIT:
        text = "..." + text[-_STDERR_LIMIT:]
    return f": {text}"
