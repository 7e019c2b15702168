"""Bounces and automatic replies: read the bounce mailbox, match what came back to the
ledger, record it, and say who keeps bouncing.

A run is idempotent: a returned message is recorded once per delivery (the ledger's unique
bounce event), and it moves to the processed folder only after it was recorded, so a crash
in between means it is read again and recorded nothing twice. Nobody is ever removed from a
list: `bounces --report` only names the addresses to fix, with their list file and line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime

from dispatch import verp
from dispatch.app.editions import lists_report
from dispatch.app.wiring import open_ledger
from dispatch.bounce_reading import AUTO_REPLY, HARD, HUMAN, Reading, read
from dispatch.config import Settings
from dispatch.errors import InputError, Problem, display_path
from dispatch.imapbox import MailboxError, open_mailbox
from dispatch.ledger import DeliveryRef, Ledger
from dispatch.recipients import AddressError, normalise

__all__ = ["BounceRun", "MailboxError", "Repeat", "process_bounces", "repeat_bouncers"]


@dataclass
class BounceRun:
    """What one reading of the mailbox did."""

    read: int = 0
    hard: int = 0  # rows newly marked bounced
    soft: int = 0  # soft bounces noted
    auto_replies: int = 0
    human: int = 0  # left unread, in place
    unmatched: int = 0  # bounces that match no row: left unread, in place
    already: int = 0  # seen before (recorded by an earlier run)
    moved: int = 0
    bounced: list[tuple[str, str, str]] = field(default_factory=list)  # (dispatch, address, reply)

    def document(self) -> dict[str, object]:
        return {"read": self.read, "hard": self.hard, "soft": self.soft, "auto_replies": self.auto_replies,
                "human_replies": self.human, "unmatched": self.unmatched, "already_recorded": self.already,
                "moved": self.moved,
                "bounced": [{"dispatch": d, "email": a, "reply": r} for d, a, r in self.bounced]}


def process_bounces(settings: Settings, now: datetime) -> BounceRun:
    """Read new messages, record bounces, move what was handled. MailboxError when the
    mailbox cannot be read (nothing is recorded or moved then)."""
    if settings.bounces is None or not settings.bounces.host:
        raise InputError([Problem(display_path(settings.path), 1, "no bounce mailbox: add a 'bounces:' section with "
                                                                   "host, username and password_env (see README)")])
    box = settings.bounces
    run = BounceRun()
    ledger = open_ledger(settings)
    try:
        with open_mailbox(box, lambda: _secret(settings)) as mailbox:
            handled = []
            for fetched in mailbox.unread():
                run.read += 1
                reading = read(fetched.data)
                if reading.kind == HUMAN:
                    run.human += 1
                    continue
                if reading.kind == AUTO_REPLY:
                    run.auto_replies += 1
                    handled.append(fetched.uid)
                    continue
                if _record(ledger, reading, run, now):
                    handled.append(fetched.uid)
                else:
                    run.unmatched += 1
            mailbox.move(handled)
            run.moved = len(handled)
    finally:
        ledger.close()
    return run


def _record(ledger: Ledger, reading: Reading, run: BounceRun, now: datetime) -> bool:
    """Record each failure the bounce reports; False when none matches a delivery."""
    matched = False
    by_token = _by_verp(ledger, reading)
    for failure in reading.failures:
        ref = by_token or _by_message_id(ledger, reading, failure.recipient)
        if ref is None:
            continue
        matched = True
        if not ledger.record_bounce(ref, failure.kind, failure.status, failure.diagnostic, reading.source, now):
            run.already += 1
        elif failure.kind == HARD:
            run.hard += 1
            run.bounced.append((ref.dispatch, ref.address, f"{failure.status} {failure.diagnostic}".strip()))
        else:
            run.soft += 1
    return matched


def _by_verp(ledger: Ledger, reading: Reading) -> DeliveryRef | None:
    for address in reading.envelope_to:
        decoded = verp.decode(address, ledger.identity)
        if decoded is not None:
            ref = ledger.delivery(decoded[1])
            if ref is not None and ref.dispatch_id == decoded[0]:
                return ref
    return None


def _by_message_id(ledger: Ledger, reading: Reading, recipient: str) -> DeliveryRef | None:
    """The row that got this Message-ID, or (a Bcc batch shares one) the row of this address
    in the dispatch the Message-ID names: ours are ``<DISPATCH.DIGEST@domain>``."""
    for message_id in reading.message_ids:
        ref = ledger.delivery_by_message_id(message_id)
        if ref is not None and (not recipient or _key(recipient) == ref.key):
            return ref
        dispatch = message_id.strip("<>").partition("@")[0].rpartition(".")[0]
        if dispatch and recipient:
            ref = ledger.delivery_by_key(dispatch, _key(recipient))
            if ref is not None:
                return ref
    return None


def _key(address: str) -> str:
    try:
        return normalise(address)[1]
    except AddressError:
        return address.lower()


def _secret(settings: Settings) -> str:
    """The mailbox's password (password_env, password_file) or an OAuth2 token (token_command);
    read at sign-in, never stored or shown."""
    from dispatch.oauth import CommandTokenSource

    box = settings.bounces
    assert box is not None
    where = f"{box.host}:{box.port}"
    if box.auth == "xoauth2" and box.token_command:
        return CommandTokenSource(box.token_command, where).token()
    if box.password_env:
        value = os.environ.get(box.password_env)
        if not value:
            raise MailboxError(f"bounce mailbox {where}: the environment variable {box.password_env} "
                               "(bounces.password_env) is not set")
        return value
    if box.password_file:
        try:
            return box.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise MailboxError(f"bounce mailbox {where}: cannot read bounces.password_file: {exc.strerror}") from None
    raise MailboxError(f"bounce mailbox {where}: no password: set bounces.password_env or bounces.password_file")


@dataclass(frozen=True)
class Repeat:
    address: str
    dispatches: list[str]
    where: list[str]  # list file:line entries that hold the address


def repeat_bouncers(settings: Settings, last: int) -> list[Repeat]:
    """Addresses that bounced hard in two or more of the last ``last`` dispatches, each with
    the list entries to fix. Nobody is removed: people decide."""
    ledger = open_ledger(settings)
    try:
        found = ledger.repeat_bouncers(last, 2)
    finally:
        ledger.close()
    if not found:
        return []
    from dispatch.app.editions import all_lists

    report = lists_report(settings, all_lists(settings))
    sources: dict[str, list[str]] = {}
    if report.resolution is not None:
        for recipient in report.resolution.recipients.values():
            sources.setdefault(recipient.key, []).append(recipient.source)
    return [Repeat(address, names, sources.get(key, [])) for key, address, names in found]
