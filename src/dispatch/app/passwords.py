"""Console passwords: signing in (with a lock after repeated failures and a limit on unknown
names per client address), changing a password, and signing out. A new password and signing
out (like disabling the account) end its sessions by moving its session generation on.

Passwords are kept only as argon2id hashes, made with the profile `web.password_hashing`
names (PROFILES). A hash carries its own parameters, so every hash verifies whatever the
profile is now, and a changed profile reaches each account at its next sign-in. A failed
sign-in says the same whatever was wrong (unknown name, wrong password, disabled or locked
account, too many attempts), so the page gives nothing away; the audit log, which only
operators read, says which.

A failed attempt is counted *before* its password is checked (``Ledger.take_sign_in_attempt``,
one statement): parallel attempts cannot all read a count below the limit and all be
checked. Only a right password clears the count, so a sixth attempt, even one made while the
first five are still being checked, is refused unchecked until the lock ends (or a right
password among the five clears the count).

One exception, so that a person who knows the password learns why they cannot sign in and
until when (and does not keep trying, or call for a new password that does not help): the
first LOCKED_CHECKS attempts during a lock have their password checked (``LockedChecks``), and a
right one is refused with ``AccountLocked``, which carries the lock's end. A wrong one gets the
same refusal as always, so a guesser learns nothing new and gets LOCKED_CHECKS more guesses per
lock at most; a check takes as long as the stand-in check it replaces, so the time tells nothing.
"""

from __future__ import annotations

import functools
import os
import re  # not wording: checks the form of an account name
import threading
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from dispatch.app.application import Session
from dispatch.errors import DispatchError, InputError, Problem
from dispatch.ledger import Ledger
from dispatch.models import User
from dispatch.values import Fact

if TYPE_CHECKING:
    from argon2 import PasswordHasher

LOCK_AFTER = 5  # failed sign-ins in a row
LOCK_FOR = timedelta(minutes=15)
UNKNOWN_PER_ADDRESS = 10  # failed sign-ins with unknown names from one client address per LOCK_FOR
LOCKED_CHECKS = 3  # attempts per lock whose password is still checked, to tell its owner the lock's end
MIN_PASSWORD = 12
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$")
# "standard" (the default): RFC 9106's second recommended profile, 3 passes over 64 MiB in 4
# lanes (argon2-cffi's defaults), about 0.2 s of CPU per sign-in. "light": OWASP's minimum for
# argon2id, 2 passes over 19 MiB in 1 lane, about a fifth of that, for a small host where many
# people sign in at once (64 MiB each) and for throw-away accounts such as the tests'.
# As argon2-cffi's parameters (time_cost, memory_cost in KiB, parallelism); the hashers are
# made at the first hash or check (hasher), not at import: argon2-cffi loads its C library
# through cffi, which a command that signs nobody in never needs (issue 34).
PROFILES: dict[str, tuple[int, int, int]] = {
    "standard": (3, 64 * 1024, 4),
    "light": (2, 19 * 1024, 1),
}
# What one password check may take: the largest profile's memory, since a stored hash made
# with another profile than today's is checked with its own parameters.
CHECK_MIB = max(memory for _, memory, _ in PROFILES.values()) // 1024


@functools.cache
def hasher(profile: str) -> PasswordHasher:
    """The argon2id hasher of a profile (one per process)."""
    from argon2 import PasswordHasher

    time_cost, memory_cost, parallelism = PROFILES[profile]
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)


class SignInRefused(DispatchError):
    """Wrong name or password, or the account is disabled or locked: one message for all."""


class AccountLocked(SignInRefused):
    """The right password for an account that is locked: refused, and ``until`` says when the
    lock ends (only ever raised to someone who gave the right password)."""

    def __init__(self, until: datetime) -> None:
        super().__init__(f"the account is locked until {until.isoformat(timespec='minutes')}")
        self.until = until


class LockedChecks:
    """How many attempts during each lock have had their password checked, per account (at
    most LOCKED_CHECKS). Kept in the process, like AddressLimits: each console node counts its
    own. A lock is known by its end, so a new lock starts a new count."""

    def __init__(self, limit: int = LOCKED_CHECKS, accounts: int = 4096) -> None:
        self.limit, self.accounts = limit, accounts
        self._lock = threading.Lock()
        self._taken: OrderedDict[tuple[str, datetime], int] = OrderedDict()

    def take(self, name: str, locked_until: datetime) -> bool:
        """Count one checked attempt during the lock ending ``locked_until``; False (not
        counted, not to be checked) once LOCKED_CHECKS are counted."""
        with self._lock:
            key = (name, locked_until)
            taken = self._taken.get(key, 0)
            if taken >= self.limit:
                return False
            self._taken[key] = taken + 1
            self._taken.move_to_end(key)
            while len(self._taken) > self.accounts:
                self._taken.popitem(last=False)
            return True


def checks_at_once(memory_mb: int) -> int:
    """How many password checks may run at once in ``memory_mb`` of memory (at least one,
    and no more than there are processors: more would only wait for a processor, holding
    their memory)."""
    return max(1, min(os.cpu_count() or 1, memory_mb // CHECK_MIB))


@functools.cache
def _dummy_hash(profile: str) -> str:
    """Verified against when the name is unknown, so that an unknown name takes as long as
    a wrong password (the time would otherwise tell which names exist). Made on first use:
    hashing takes a tenth of a second, which every command would pay at import."""
    return hasher(profile).hash("not a password anyone has")


class AddressLimits:
    """Failed sign-ins with unknown names, per client address (the reverse proxy's
    X-Forwarded-For when `web.forwarded_allow_ips` trusts it): past UNKNOWN_PER_ADDRESS in
    LOCK_FOR, every sign-in from that address is refused unchecked until the oldest is LOCK_FOR
    old. No account's lock covers a name that does not exist; this stops trying many names
    (and hashing for each) from one place. Kept in the process: each console node counts its own."""

    def __init__(self, limit: int = UNKNOWN_PER_ADDRESS, window: timedelta = LOCK_FOR, addresses: int = 4096) -> None:
        self.limit, self.window, self.addresses = limit, window, addresses
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, list[datetime]] = OrderedDict()

    def _recent(self, address: str, now: datetime) -> list[datetime]:
        times = [moment for moment in self._failures.get(address, ()) if now - moment < self.window]
        if times:
            self._failures[address] = times
        else:
            self._failures.pop(address, None)
        return times

    def blocked(self, address: str, now: datetime) -> bool:
        with self._lock:
            return len(self._recent(address, now)) >= self.limit

    def take(self, address: str, now: datetime) -> bool:
        """Count one unknown name from ``address`` before it is checked; False (not counted)
        when the address is at its limit already."""
        with self._lock:
            times = self._recent(address, now)
            if len(times) >= self.limit:
                return False
            self._failures[address] = [*times, now]
            self._failures.move_to_end(address)
            while len(self._failures) > self.addresses:  # the memory it takes is bounded too
                self._failures.popitem(last=False)
            return True


def sign_in(s: Session, name: str, password: str, now: datetime, *, remote: str = "",
            hashing: str = "standard", limits: AddressLimits | None = None,
            locked: LockedChecks | None = None) -> User:
    """The account, if the name and password are right and it is neither disabled nor locked;
    every attempt is in the audit log. Raises SignInRefused, or AccountLocked (a SignInRefused)
    for the right password of a locked account when ``locked`` allows its check. A hash made
    with another profile than ``hashing`` is made again with it. ``limits``: unknown names per
    client address."""
    ledger = s.ledger
    shown = name[:64] or "?"
    if limits is not None and limits.blocked(remote, now):
        ledger.record_audit(now, shown, "sign_in_failed", name[:64], None,
                            where(remote, Fact.of("audit_detail.too_many_unknown_names")))
        raise SignInRefused("wrong user name or password")
    user = ledger.user(name) if NAME.match(name) else None
    if user is None or user.password_hash is None:
        if limits is None or limits.take(remote, now):
            _verify(_dummy_hash(hashing), password)
            detail = Fact.of("audit_detail.unknown_user")
        else:
            detail = Fact.of("audit_detail.too_many_unknown_names")
        ledger.record_audit(now, shown, "sign_in_failed", name[:64], None, where(remote, detail))
        raise SignInRefused("wrong user name or password")
    try:
        right = _check(ledger, user, user.password_hash, password, now, remote=remote, hashing=hashing, locked=locked)
    except AccountLocked:
        if user.disabled:  # a disabled account says nothing more than any refusal
            raise SignInRefused("wrong user name or password") from None
        raise
    if not right:
        raise SignInRefused("wrong user name or password")
    if user.disabled:
        ledger.record_audit(now, user.name, "sign_in_failed", user.name, None, where(remote, Fact.of("audit_detail.account_disabled")))
        raise SignInRefused("wrong user name or password")
    if hasher(hashing).check_needs_rehash(user.password_hash):
        ledger.update_user(user.name, password_hash=hasher(hashing).hash(password))
    ledger.record_audit(now, user.name, "sign_in", user.name, None, where(remote))
    return user


def change_password(s: Session, name: str, current: str, new: str, now: datetime, *, remote: str = "",
                    hashing: str = "standard") -> None:
    """The signed-in person's own new password ("Byt lösenord"): the current one is checked
    as a sign-in is (a wrong one counts towards the lock, so a session left open cannot be
    used to guess it); every session of the account ends, this one included. Raises
    SignInRefused (the current password) or InputError (the new one)."""
    ledger = s.ledger
    user = ledger.user(name)
    if user is None or user.password_hash is None:
        raise SignInRefused(f"{name!r} has no password of the console's own")
    _check_new(new)  # a form mistake first: it must not cost an attempt at the current password
    if not _check(ledger, user, user.password_hash, current, now, remote=remote, hashing=hashing):
        raise SignInRefused("wrong password")
    _check_new(new, current)  # "the same as the current one" only once the current one is known right
    ledger.update_user(name, password_hash=hasher(hashing).hash(new))
    ledger.end_sessions(name)
    ledger.record_audit(now, name, "password_changed", name, None, where(remote, Fact.of("audit_detail.by_owner")))


def set_password(s: Session, name: str, password: str, now: datetime, *, by: str, hashing: str = "standard") -> bool:
    """``users passwd``: a new password for account NAME, set by an operator; every session of
    the account ends. False when there is no such account; InputError for a password too
    short, or an account that signs in only through single sign-on (it has none to change)."""
    ledger = s.ledger
    user = ledger.user(name)
    if user is None:
        return False
    if user.password_hash is None:
        raise InputError([Problem.of("users passwd", 0, "password.single_sign_on", name=repr(name))])
    _check_new(password)
    # An operator's new password is how a locked-out person gets back in before the lock ends
    # (an approver near the deadline): it clears the failed attempts and the lock.
    ledger.update_user(name, password_hash=hasher(hashing).hash(password), failed_sign_ins=0, locked_until=None)
    ledger.end_sessions(name)
    unlocked = (Fact.of("audit_detail.lock_cleared"),) if user.locked_until is not None and user.locked_until > now else ()
    ledger.record_audit(now, by, "password_changed", name, None, (Fact.of("audit_detail.sessions_ended"), *unlocked))
    return True


def sign_out(s: Session, name: str, now: datetime, *, remote: str = "") -> None:
    """Every session of the account ends, wherever its cookie has been copied to (and the
    person's other browsers with it: one generation per account)."""
    ledger = s.ledger
    ledger.end_sessions(name)
    ledger.record_audit(now, name, "sign_out", name, None, where(remote))


def _check(ledger: Ledger, user: User, stored: str, password: str, now: datetime, *, remote: str, hashing: str,
           locked: LockedChecks | None = None) -> bool:
    """Is ``password`` the account's (``stored``: its hash)? The attempt is counted as failed
    before the check and cleared only by a right password; past the limit there is no check at
    all, except for the first attempts during a lock that ``locked`` allows: a right one raises
    AccountLocked."""
    attempt = ledger.take_sign_in_attempt(user.name, LOCK_AFTER, now)
    if attempt is None:
        found = ledger.user(user.name)
        until = found.locked_until if found is not None else None
        if until is not None and until > now and locked is not None and locked.take(user.name, until):
            # As long as the stand-in check below: the time tells nothing either way.
            right = _verify(stored, password)
            outcome = Fact.of("audit_detail.right_password_during_lock" if right else "audit_detail.wrong_password_during_lock")
            ledger.record_audit(now, user.name, "sign_in_failed", user.name, None,
                                where(remote, Fact.of("audit_detail.locked_until", until=until.isoformat(timespec="minutes")),
                                      outcome))
            if right:
                raise AccountLocked(until)
            return False
        _verify(_dummy_hash(hashing), password)  # as long as a check: the time tells nothing
        detail = (Fact.of("audit_detail.locked_until", until=until.isoformat(timespec="minutes"))
                  if until is not None and until > now else Fact.of("audit_detail.attempts_counted", attempts=LOCK_AFTER))
        ledger.record_audit(now, user.name, "sign_in_failed", user.name, None, where(remote, detail))
        return False
    if not _verify(stored, password):
        ledger.record_audit(now, user.name, "sign_in_failed", user.name, None,
                            where(remote, Fact.of("audit_detail.wrong_password", attempt=attempt)))
        if ledger.lock_if_at_limit(user.name, LOCK_AFTER, now + LOCK_FOR):
            ledger.record_audit(now, user.name, "locked", user.name, None, (Fact.of(
                "audit_detail.locked_for", attempts=LOCK_AFTER, minutes=int(LOCK_FOR.total_seconds() // 60)),))
        return False
    ledger.update_user(user.name, failed_sign_ins=0, locked_until=None)
    return True


def _check_new(password: str, current: str | None = None) -> None:
    if len(password) < MIN_PASSWORD:
        raise InputError([Problem.of("password", 0, "password.too_short", minimum=MIN_PASSWORD)])
    if current is not None and password == current:
        raise InputError([Problem.of("password", 0, "password.unchanged")])


def _verify(password_hash: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return hasher("standard").verify(password_hash, password)  # the parameters are the hash's own
    except (VerificationError, InvalidHashError):
        return False


def where(remote: str, *detail: Fact) -> tuple[Fact, ...]:
    """An audit entry's detail: the address the request came from (when known), then the rest."""
    return ((Fact.of("audit_detail.from", remote=remote),) if remote else ()) + detail
