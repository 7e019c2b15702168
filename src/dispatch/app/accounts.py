"""The console's people: accounts and roles, single sign-on, and the audit log of what they
did. Passwords, signing in and out, and sessions ending: ``passwords``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime

from dispatch.addresses import AddressError, normalise
from dispatch.app.passwords import HASHING, MIN_PASSWORD, NAME
from dispatch.errors import DispatchError, InputError, LedgerError, Problem
from dispatch.ledger import Ledger
from dispatch.models import ROLES, AuditEntry, User

_NAME = NAME


class SSORefused(DispatchError):
    """A person the identity provider vouched for who may not use the console (the audit log
    says why; the message is for the log)."""


def add_user(ledger: Ledger, name: str, email: str, role: str, password: str | None, now: datetime, *, by: str,
             hashing: str = "standard") -> User:
    """Create an account; ``password`` None makes a single-sign-on-only account; ``hashing``
    is the profile its hash is made with (`web.password_hashing`)."""
    problems = []
    if not _NAME.match(name):
        problems.append(Problem("users add", 0, f"the name {name!r} must be 1-64 letters, digits, '.', '_' or '-' "
                                                "(no spaces): people sign in with it"))
    try:
        address, _ = normalise(email)
    except AddressError as exc:
        problems.append(Problem("--email", 0, f"invalid address {email!r}: {exc}"))
        address = email
    if role not in ROLES:
        problems.append(Problem("--role", 0, f"the role must be one of {', '.join(ROLES)}, not {role!r}"))
    if password is not None and len(password) < MIN_PASSWORD:
        problems.append(Problem("password", 0, f"the password must be at least {MIN_PASSWORD} characters "
                                               "(a few words are easier to remember than symbols)"))
    if problems:
        raise InputError(problems)
    user = ledger.add_user(name, address, role, HASHING[hashing].hash(password) if password is not None else None, now)
    ledger.record_audit(now, by, "user_added", name, None, f"role {role}, {address}")
    return user


def list_users(ledger: Ledger) -> list[User]:
    return ledger.users()


def disable_user(ledger: Ledger, name: str, now: datetime, *, by: str) -> bool:
    """The account can no longer sign in, and its sessions end (also if it is enabled again)."""
    if not ledger.update_user(name, disabled=True):
        return False
    ledger.end_sessions(name)
    ledger.record_audit(now, by, "user_disabled", name)
    return True


def active_user(ledger: Ledger, name: str, generation: int) -> User | None:
    """The account behind a session begun in session ``generation``, if it may still act: not
    disabled, and no sign-out, new password or disabling since (each moves the generation on)."""
    user = ledger.user(name)
    return user if user is not None and not user.disabled and user.session_generation == generation else None


def audit(ledger: Ledger, now: datetime, user: str, action: str, target: str = "", content_hash: str | None = None,
          detail: str = "") -> None:
    ledger.record_audit(now, user, action, target, content_hash, detail)


def audit_log(ledger: Ledger, limit: int = 500) -> list[AuditEntry]:
    return ledger.audit_log(limit)


# -- single sign-on -----------------------------------------------------------------------------
# The identity provider says who someone is and which groups (or app roles) they have; the
# console keeps them as an ordinary row in ``users`` (no password), so roles, the audit log and
# the four-eyes rule (by user name) work as for local accounts.


def sso_name(claims: Mapping[str, object]) -> str:
    """The console's name for a person: ``preferred_username``, else ``email``, else ``sub``,
    made to fit the account names (lower case, ASCII: "Åsa.Öberg@x.se" is "asa.oberg_x.se").
    SSORefused when none of them gives a usable name."""
    for key in ("preferred_username", "email", "sub"):
        value = claims.get(key)
        if isinstance(value, str):
            # å, ä, ö lose their marks rather than the letter; anything else outside the pattern is '_'.
            plain = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode().lower()
            name = re.sub(r"[^a-z0-9._-]+", "_", plain).lstrip("._-")[:64]
            if _NAME.match(name):
                return name
    raise SSORefused("the identity provider gave no preferred_username, email or sub to name the user by")


def claim_values(claims: Mapping[str, object], claim: str) -> list[str]:
    """The values of a groups/roles claim: a list (Entra ID, Keycloak) or a single value."""
    value = claims.get(claim)
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else [value]
    return [str(item) for item in items if isinstance(item, str | int)]


def sso_role(values: Iterable[str], roles: Iterable[tuple[str, str]]) -> str | None:
    """The highest role any of the values maps to (None: no value maps to a role)."""
    have = set(values)
    found = [role for value, role in roles if value in have and role in ROLES]
    return max(found, key=ROLES.index) if found else None


def sso_user(ledger: Ledger, name: str, email: str, role: str, now: datetime, *, remote: str = "",
             subject: str = "") -> User:
    """The account of a person who signed in through the identity provider: made on first
    sign-in, its role and address brought up to date on every later one (the provider is the
    source of truth for them). Refused (SSORefused, in the audit log) when the name belongs to a
    local account (a provider's user must not take over a break-glass account) or the account
    has been disabled in the console (a decision the provider cannot undo)."""
    if role not in ROLES:
        raise SSORefused(f"{role!r} is not a console role")
    try:
        address = normalise(email)[0] if email else ""
    except AddressError:
        address = ""  # no usable address: the account works, only "a test to me" has nowhere to go
    user = ledger.user(name)
    if user is None:
        try:
            user = ledger.add_user(name, address, role, None, now)
        except LedgerError:  # the same person's first sign-in in another tab, a moment earlier
            user = ledger.user(name)
            if user is None:
                raise
        else:
            ledger.update_user(name, sso_subject=subject or None)
            ledger.record_audit(now, name, "user_added", name, None, f"role {role}, {address or 'no address'}; single sign-on")
            user = ledger.user(name) or user
    if user.password_hash is not None:
        sso_refused(ledger, name, "the name belongs to a local account", now, remote=remote)
        raise SSORefused(f"{name!r} is a local account; single sign-on does not sign in as it")
    if subject and user.sso_subject not in (None, subject):
        # Another person at the provider has this console name (names are cleaned up to
        # letters, digits and . _ -): never sign them in as each other.
        sso_refused(ledger, name, "the name belongs to another person at the identity provider", now, remote=remote)
        raise SSORefused(f"{name!r} belongs to another identity provider account")
    if subject and user.sso_subject is None:
        ledger.update_user(name, sso_subject=subject)
    if user.disabled:
        sso_refused(ledger, name, "the account is disabled in the console", now, remote=remote)
        raise SSORefused(f"the account {name!r} is disabled")
    if (user.role, user.email) != (role, address):
        ledger.update_user(name, role=role, email=address)
        changes = [f"{what} {old or '-'} -> {new or '-'}" for what, old, new in
                   (("role", user.role, role), ("email", user.email, address)) if old != new]
        ledger.record_audit(now, name, "user_updated", name, None, "; ".join(changes) + " (from the identity provider)")
        user = ledger.user(name) or user
    ledger.record_audit(now, name, "sign_in", name, None, _where(remote, "single sign-on"))
    return user


def sso_refused(ledger: Ledger, name: str, detail: str, now: datetime, *, remote: str = "") -> None:
    """The provider signed someone in whom the console does not let in."""
    ledger.record_audit(now, name, "sso_refused", name, None, _where(remote, detail))


def sso_failed(ledger: Ledger, reason: str, now: datetime, *, remote: str = "") -> None:
    """A sign-in through the provider that did not complete (a wrong state, a reused code, an
    invalid token): nobody is known yet, so the entry is under '?'."""
    ledger.record_audit(now, "?", "sso_failed", "", None, _where(remote, reason))


def _where(remote: str, detail: str) -> str:
    return "; ".join(part for part in (f"from {remote}" if remote else "", detail) if part)
