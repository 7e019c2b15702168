"""The console's people: accounts and roles, single sign-on, and the audit log of what they
did. Passwords, signing in and out, and sessions ending: ``passwords``.
"""

from __future__ import annotations

import re  # not wording: makes an account name from a single sign-on address
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime

from dispatch.app.application import Session
from dispatch.app.passwords import MIN_PASSWORD, NAME, hasher, where
from dispatch.errors import DispatchError, InputError, LedgerError, Problem
from dispatch.models import AuditEntry, User
from dispatch.recipients.addresses import AddressError, normalise
from dispatch.values import Fact, Role

_NAME = NAME


class SSORefused(DispatchError):
    """A person the identity provider vouched for who may not use the console (the audit log
    says why; the message is for the log)."""


def add_user(s: Session, name: str, email: str, role: str, password: str | None, now: datetime, *, by: str,
             hashing: str = "standard") -> User:
    """Create an account; ``password`` None makes a single-sign-on-only account; ``hashing``
    is the profile its hash is made with (`web.password_hashing`)."""
    ledger = s.ledger
    problems = []
    if not _NAME.match(name):
        problems.append(Problem.of("users add", 0, "account.bad_name", name=repr(name)))
    try:
        address, _ = normalise(email)
    except AddressError as exc:
        problems.append(Problem.of("--email", 0, "recipients.invalid_address", address=repr(email), detail=exc.fact))
        address = email
    if Role.named(role) is None:
        problems.append(Problem.of("--role", 0, "account.bad_role", roles=", ".join(Role), role=repr(role)))
    if password is not None and len(password) < MIN_PASSWORD:
        problems.append(Problem.of("password", 0, "password.too_short", minimum=MIN_PASSWORD))
    if problems:
        raise InputError(problems)
    user = ledger.add_user(name, address, role, hasher(hashing).hash(password) if password is not None else None, now)
    ledger.record_audit(now, by, "user_added", name, None, (Fact.of("audit_detail.role_and_address", role=role_named(role),
                                                                    address=address),))
    return user


def list_users(s: Session) -> list[User]:
    return s.ledger.users()


def disable_user(s: Session, name: str, now: datetime, *, by: str) -> bool:
    """The account can no longer sign in, and its sessions end (also if it is enabled again)."""
    ledger = s.ledger
    if not ledger.update_user(name, disabled=True):
        return False
    ledger.end_sessions(name)
    ledger.record_audit(now, by, "user_disabled", name)
    return True


def active_user(s: Session, name: str, generation: int) -> User | None:
    """The account behind a session begun in session ``generation``, if it may still act: not
    disabled, and no sign-out, new password or disabling since (each moves the generation on)."""
    ledger = s.ledger
    user = ledger.user(name)
    if user is None or user.disabled or user.session_generation != generation:
        return None
    return user if Role.named(user.role) is not None else None  # NO_ROLE (taken away at the provider): nothing


def role_named(role: str) -> Fact | str:
    """A role as a fact each front door words ('-' for none: an account whose groups no longer
    give one)."""
    return Fact.of(f"role.{role}") if Role.named(role) is not None else (role or "-")


def audit(s: Session, now: datetime, user: str, action: str, target: str = "", content_hash: str | None = None,
          detail: tuple[Fact, ...] = ()) -> None:
    ledger = s.ledger
    ledger.record_audit(now, user, action, target, content_hash, detail)


def audit_log(s: Session, limit: int = 500) -> list[AuditEntry]:
    ledger = s.ledger
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


def sso_role(values: Iterable[str], roles: Iterable[tuple[str, str]]) -> Role | None:
    """The highest role any of the values maps to (None: no value maps to a role)."""
    have = set(values)
    found = [role for value, name in roles if value in have and (role := Role.named(name)) is not None]
    return max(found, key=lambda role: len(role.permissions)) if found else None  # each role has more than the last


class SSOHeld(SSORefused):
    """A new provider account whose name, cleaned up, is another account's: it is kept under a
    name of its own, disabled until an operator enables it (``held`` is that name)."""

    def __init__(self, message: str, held: str) -> None:
        super().__init__(message)
        self.held = held


NO_ROLE = ""  # an account whose groups at the provider no longer map to a role: it may do nothing


def sso_user(s: Session, name: str, email: str, role: Role, now: datetime, *, subject: str,
             remote: str = "") -> User:
    """The account of a person who signed in through the identity provider, found by
    ``subject`` (the provider's issuer and subject: names can change and clean up alike).
    Made on first sign-in under ``name``; its role and address brought up to date on every later
    one (the provider is the source of truth for them), its name never (approvals are by name).

    Refused (SSORefused, in the audit log) when the account has been disabled in the console (a
    decision the provider cannot undo), or when ``name`` is a local account's (a provider's user
    must not take over a break-glass account). A first sign-in whose ``name`` another account
    has (two provider accounts, "erik@..." and "Érik@...", both clean up to "erik_..."), is held
    (SSOHeld): an account of its own under a free name, disabled, for an operator to enable
    (``dispatch users enable``) once they know who it is; never signed in as the other."""
    ledger = s.ledger
    if not subject:
        raise SSORefused("no issuer and subject to know the person by")
    try:
        address = normalise(email)[0] if email else ""
    except AddressError:
        address = ""  # no usable address: the account works, only "a test to me" has nowhere to go
    user = ledger.user_by_sso_subject(subject)
    if user is None:
        user = _first_sso_sign_in(s, name, address, role, now, subject, remote)
    if user.disabled:
        sso_refused(s, user.name, Fact.of("audit_detail.disabled_in_console"), now, remote=remote)
        raise SSORefused(f"the account {user.name!r} is disabled")
    if Role.named(user.role) is not Role.named(role) or user.email != address:  # (role as given, str or Role)
        ledger.update_user(user.name, role=role, email=address)
        changes = [Fact.of("audit_detail.role_changed", old=role_named(user.role), new=role_named(role))
                   if what == "role" else Fact.of("audit_detail.email_changed", old=old or "-", new=new or "-")
                   for what, old, new in (("role", user.role, role), ("email", user.email, address)) if old != new]
        # The last change says where they all came from: "...; email - -> bo@x (from the identity provider)".
        last = changes[-1]
        changes[-1] = Fact(f"{last.code}_by_provider", last.params)
        ledger.record_audit(now, user.name, "user_updated", user.name, None, tuple(changes))
        user = ledger.user(user.name) or user
    ledger.record_audit(now, user.name, "sign_in", user.name, None, where(remote, Fact.of("audit_detail.single_sign_on")))
    return user


def _first_sso_sign_in(s: Session, name: str, address: str, role: Role, now: datetime, subject: str,
                       remote: str) -> User:
    """The account made for a subject the console has not seen, or SSORefused/SSOHeld."""
    ledger = s.ledger
    existing = ledger.user(name)
    if existing is not None and existing.password_hash is not None:
        sso_refused(s, name, Fact.of("audit_detail.name_of_local_account"), now, remote=remote)
        raise SSORefused(f"{name!r} is a local account; single sign-on does not sign in as it")
    held = existing is not None
    if held:
        name = next(f"{name[:64 - len(str(n)) - 1]}-{n}" for n in range(2, 10_000)
                    if ledger.user(f"{name[:64 - len(str(n)) - 1]}-{n}") is None)
    try:
        user = ledger.add_sso_user(name, address, role, subject, now, disabled=held)
    except LedgerError:  # the same person's first sign-in in another tab, a moment earlier
        again = ledger.user_by_sso_subject(subject)
        if again is None:
            raise
        return again
    if not held:
        added = (Fact.of("audit_detail.role_and_address", role=role_named(role), address=address) if address
                 else Fact.of("audit_detail.role_no_address", role=role_named(role)))
        ledger.record_audit(now, name, "user_added", name, None, (added, Fact.of("audit_detail.single_sign_on")))
        return user
    taken = existing.name if existing else ""
    held_as = (Fact.of("audit_detail.sso_held", taken=taken, name=name, role=role_named(role), address=address) if address
               else Fact.of("audit_detail.sso_held_no_address", taken=taken, name=name, role=role_named(role)))
    ledger.record_audit(now, name, "sso_held", name, None, where(remote, held_as))
    raise SSOHeld(f"the name {taken!r} belongs to another account; held as {name!r} for an operator", name)


def sso_no_role(s: Session, name: str, subject: str, detail: Fact | str, now: datetime, *, remote: str = "") -> str:
    """The provider signed someone in whose groups map to no role: refused, and if they have an
    account its stored role goes (their open sessions may do nothing more; a group given back at
    the provider gives the role back at the next sign-in). Returns the name in the audit log."""
    ledger = s.ledger
    user = ledger.user_by_sso_subject(subject) if subject else None
    if user is not None:
        name = user.name
        if Role.named(user.role) is not None:  # (an unknown stored value goes too)
            ledger.update_user(name, role=NO_ROLE)
            ledger.record_audit(now, name, "user_updated", name, None,
                                (Fact.of("audit_detail.role_taken_by_provider", old=role_named(user.role)),))
    sso_refused(s, name, detail, now, remote=remote)
    return name


def enable_user(s: Session, name: str, now: datetime, *, by: str) -> bool:
    """Enable a disabled account: most often one single sign-on held (SSOHeld), once an operator
    knows whose it is."""
    ledger = s.ledger
    user = ledger.user(name)
    if user is None:
        return False
    if user.disabled:
        ledger.update_user(name, disabled=False)
        ledger.record_audit(now, by, "user_enabled", name)
    return True


def sso_refused(s: Session, name: str, detail: Fact | str, now: datetime, *, remote: str = "") -> None:
    """The provider signed someone in whom the console does not let in (``detail``: why, as a
    fact, or in the provider's own words)."""
    fact = Fact.of("audit_detail.said", text=detail) if isinstance(detail, str) else detail
    s.ledger.record_audit(now, name, "sso_refused", name, None, where(remote, fact))


def sso_failed(s: Session, reason: str, now: datetime, *, remote: str = "") -> None:
    """A sign-in through the provider that did not complete (a wrong state, a reused code, an
    invalid token): nobody is known yet, so the entry is under '?'."""
    # The provider's or the token library's own words: shown as they were said.
    s.ledger.record_audit(now, "?", "sso_failed", "", None, where(remote, Fact.of("audit_detail.said", text=reason)))
