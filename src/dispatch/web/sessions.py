"""Console sessions: a signed cookie (itsdangerous) holding who signed in, when, when last
seen, the account's session generation at sign-in, and the session's CSRF token. Nothing
secret is in it; the signature stops forgery.

The session ends after ``idle_minutes`` without a request and ``absolute_hours`` after
sign-in whatever happens, and at once when the account signs out, gets a new password or is
disabled: each moves the account's session generation in the ledger on, and every request
checks the cookie's generation against it, so a copy of the cookie ends with the original
(on every node sharing the ledger). Cookies are HttpOnly and SameSite=Strict, and Secure
when the console's base URL is https.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.requests import Request
from starlette.responses import Response

from dispatch.app import WebSettings, state_dir
from dispatch.errors import ConsoleError

COOKIE = "dispatch_session"
SIGN_IN_COOKIE = "dispatch_signin"  # the CSRF token of the sign-in form, before any session
REFRESH_AFTER = timedelta(seconds=30)  # "last seen" is rewritten at most this often


@dataclass(frozen=True)
class Session:
    user: str
    issued: datetime
    seen: datetime
    csrf: str
    generation: int = 0  # the account's session generation when it signed in


def load_secret(web: WebSettings) -> bytes:
    """The key that signs sessions: from the environment or a file (shared by every node of
    a two-node setup), else one made once and kept 0600 in the state directory."""
    if web.session_secret_env:
        value = os.environ.get(web.session_secret_env, "")
        if len(value) < 32:
            raise ConsoleError(f"${web.session_secret_env} must hold at least 32 characters to sign console sessions")
        return value.encode()
    path: Path = web.session_secret_file or state_dir() / "console-secret"
    if web.session_secret_file is None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConsoleError(f"{path}: cannot read the console's session key: {exc.strerror}") from None
    if len(value) < 32:
        raise ConsoleError(f"{path}: the console's session key must be at least 32 characters")
    return value.encode()


class Sessions:
    def __init__(self, web: WebSettings, secret: bytes, generation: Callable[[str], int] = lambda name: 0) -> None:
        """``generation``: an account's session generation now (the ledger's), for ``start``."""
        self.web = web
        self.generation = generation
        self.idle = timedelta(minutes=web.idle_minutes)
        self.absolute = timedelta(hours=web.absolute_hours)
        self._signer = URLSafeSerializer(secret, salt="dispatch-console-session")
        self._sign_in = URLSafeSerializer(secret, salt="dispatch-console-signin")

    def read(self, request: Request, now: datetime) -> Session | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data: Any = self._signer.loads(raw)
            session = Session(str(data["u"]), datetime.fromisoformat(data["i"]), datetime.fromisoformat(data["s"]),
                              str(data["c"]), int(data["g"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        if now - session.issued > self.absolute or now - session.seen > self.idle:
            return None
        return session

    def start(self, response: Response, user: str, now: datetime) -> Session:
        """A new session for ``user``, who has just signed in, in their generation now."""
        session = Session(user, now, now, secrets.token_urlsafe(32), self.generation(user))
        self.write(response, session)
        response.delete_cookie(SIGN_IN_COOKIE, path="/")
        return session

    def touch(self, response: Response, session: Session, now: datetime, *, force: bool = False) -> None:
        """Renew "last seen", unless the response sets the cookie itself (a new session after a
        new password, or none after sign-out): that one must stand."""
        sets_cookie = any(name == b"set-cookie" and value.startswith(f"{COOKIE}=".encode())
                          for name, value in response.raw_headers)
        if not sets_cookie and (force or now - session.seen >= REFRESH_AFTER):
            self.write(response, Session(session.user, session.issued, now, session.csrf, session.generation))

    def write(self, response: Response, session: Session) -> None:
        value = self._signer.dumps({"u": session.user, "i": session.issued.isoformat(), "s": session.seen.isoformat(),
                                    "c": session.csrf, "g": session.generation})
        response.set_cookie(COOKIE, value, max_age=int(self.absolute.total_seconds()), path="/", httponly=True,
                            samesite="strict", secure=self.web.secure)

    def end(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=self.web.secure)

    def expires_at(self, session: Session) -> tuple[datetime, datetime]:
        """(when it ends if idle from now on, when it ends in any case)."""
        return session.seen + self.idle, session.issued + self.absolute

    # -- the sign-in form's CSRF token (there is no session yet) --------------------------

    def sign_in_token(self, request: Request) -> str:
        """The sign-in form's token: the one the browser holds, or a new one (keep it with
        ``keep_sign_in_token`` on the response)."""
        raw = request.cookies.get(SIGN_IN_COOKIE)
        if raw:
            try:
                return str(self._sign_in.loads(raw))
            except BadSignature:
                pass
        return secrets.token_urlsafe(32)

    def keep_sign_in_token(self, response: Response, token: str) -> None:
        response.set_cookie(SIGN_IN_COOKIE, self._sign_in.dumps(token), path="/", httponly=True,
                            samesite="strict", secure=self.web.secure)

    def sign_in_token_ok(self, request: Request, submitted: str) -> bool:
        raw = request.cookies.get(SIGN_IN_COOKIE)
        if not raw or not submitted:
            return False
        try:
            expected = str(self._sign_in.loads(raw))
        except BadSignature:
            return False
        return hmac.compare_digest(expected, submitted)


def csrf_ok(session: Session, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(session.csrf, submitted or "")
