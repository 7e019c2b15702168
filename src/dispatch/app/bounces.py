"""Bounces and automatic replies: read the bounce mailbox, match what came back to the
ledger, record it, and say who keeps bouncing.

Only proof changes a recipient. With VERP on, that is a valid token (its MAC is keyed by the
ledger's identity): a bounce without one, however well it quotes a dispatch and an address,
is recorded as ``unverified`` on the row it names and changes nobody. Without VERP there is
no proof to be had (our Message-IDs are derived from the dispatch and the address, which
anyone can know), so a bounce is believed only when the Message-ID it quotes is that
recipient's and its DSN names that recipient, and it never turns ``unknown`` (did the relay
take it?) into ``bounced``.

A run is idempotent: a returned message is recorded once per delivery (the ledger's unique
bounce event), and it moves to the processed folder only after it was recorded, so a crash
in between means it is read again and records nothing twice. What stays for people (their
replies, bounces nothing proves) is flagged, so later runs read past it; what cannot be read
(too large, nested too deep) moves to the quarantine folder. Nobody is ever removed from a
list: `bounces --report` only names the addresses to fix, with their list file and line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime

from dispatch.app.application import Session
from dispatch.app.editions import lists_report
from dispatch.bounces.mailbox import Mailbox, MailboxError, open_mailbox
from dispatch.bounces.reading import AUTO_REPLY, HARD, HUMAN, UNREADABLE, Failure, Reading, read
from dispatch.config.settings import BounceSettings
from dispatch.delivery import verp
from dispatch.errors import InputError, Problem, display_path
from dispatch.ledger import DeliveryRef, Ledger
from dispatch.recipients.lists import AddressError, normalise

__all__ = ["BounceRun", "MailboxError", "Repeat", "process_bounces", "record_reading", "repeat_bouncers"]

PER_RUN = 500  # messages read per run, newest first; the rest wait for the next run

# What a run does with a message it read: move it to the processed folder, leave it unread
# and flagged for people, or move it to the quarantine folder.
HANDLED, FOR_PEOPLE = "handled", "for people"


@dataclass
class BounceRun:
    """What one reading of the mailbox did."""

    read: int = 0
    hard: int = 0  # rows newly marked bounced
    soft: int = 0  # soft bounces noted
    auto_replies: int = 0
    human: int = 0  # left unread and flagged, in place
    unverified: int = 0  # bounces no proof ties to the row they name: noted, changing nobody, left flagged
    unmatched: int = 0  # bounces that match no row: left unread and flagged, in place
    already: int = 0  # seen before (recorded by an earlier run)
    moved: int = 0
    quarantined: list[tuple[int, str]] = field(default_factory=list)  # (UID, why it was not read)
    bounced: list[tuple[str, str, str]] = field(default_factory=list)  # (dispatch, address, reply)

    def document(self) -> dict[str, object]:
        return {"read": self.read, "hard": self.hard, "soft": self.soft, "auto_replies": self.auto_replies,
                "human_replies": self.human, "unverified": self.unverified, "unmatched": self.unmatched,
                "already_recorded": self.already, "moved": self.moved,
                "quarantined": [{"uid": uid, "reason": reason} for uid, reason in self.quarantined],
                "bounced": [{"dispatch": d, "email": a, "reply": r} for d, a, r in self.bounced]}


def process_bounces(s: Session, now: datetime) -> BounceRun:
    """Read new messages (newest first), record bounces, move or flag what was read.
    MailboxError when the mailbox cannot be read (what was recorded by then stays, and its
    message is read again next time and recorded nothing twice)."""
    settings, ledger = s.settings, s.ledger
    if settings.bounces is None or not settings.bounces.host:
        raise InputError([Problem.of(display_path(settings.path), 1, "bounces.no_mailbox")])
    box = settings.bounces
    run = BounceRun()
    with open_mailbox(box, lambda: _secret(box)) as mailbox:
        listed = mailbox.unread(PER_RUN)
        run.read = len(listed)
        too_large = [item for item in listed if item.size > box.max_message_bytes]
        for item in too_large:
            run.quarantined.append((item.uid, _too_large(item.size, box.max_message_bytes)))
        wanted = [item for item in listed if item.size <= box.max_message_bytes]
        for_people: list[int] = []
        handled: list[int] = []
        for fetched in mailbox.bodies(wanted, box.max_message_bytes):
            if len(fetched.data) > box.max_message_bytes:  # the server understated its size
                run.quarantined.append((fetched.uid, _too_large(len(fetched.data), box.max_message_bytes)))
                continue
            reading = read(fetched.data)
            if reading.kind == UNREADABLE:
                run.quarantined.append((fetched.uid, reading.reason))
                continue
            verdict = record_reading(ledger, reading, run, now, verp_on=settings.sender.verp,
                                     batched=settings.transport.recipients_per_message > 1)
            (handled if verdict == HANDLED else for_people).append(fetched.uid)
        _put_away(mailbox, handled, for_people, run, box.processed_folder or "Processed", box.quarantine_folder)
    return run


def _put_away(mailbox: Mailbox, handled: list[int], for_people: list[int], run: BounceRun, processed: str,
              quarantine: str) -> None:
    mailbox.flag(for_people)
    mailbox.move([uid for uid, _ in run.quarantined], quarantine)
    mailbox.move(handled, processed)
    run.moved = len(handled)


def _too_large(size: int, limit: int) -> str:
    return f"{size} bytes, over bounces.max_message_bytes ({limit})"


def record_reading(ledger: Ledger, reading: Reading, run: BounceRun, now: datetime, *, verp_on: bool,
                   batched: bool = False) -> str:
    """Record what a read message says; HANDLED (it can go to the processed folder) or
    FOR_PEOPLE (it stays, flagged: a person's reply, or a bounce that proves nothing)."""
    if reading.kind == HUMAN:
        run.human += 1
        return FOR_PEOPLE
    if reading.kind == AUTO_REPLY:
        run.auto_replies += 1
        return HANDLED
    if verp_on:
        proven = _by_verp(ledger, reading)
        if proven is not None:
            # The token names one row (one recipient per message): the bounce's worst word about it.
            failure = next((f for f in reading.failures if f.kind == HARD), reading.failures[0])
            _note(ledger, proven, failure, reading, run, now, failure.kind, unknown_too=True)
            return HANDLED
    named = [(failure, ref) for failure in reading.failures
             if (ref := _by_message_id(ledger, reading, failure, batched=batched and not verp_on)) is not None]
    if not named:
        run.unmatched += 1
        return FOR_PEOPLE
    for failure, ref in named:
        _note(ledger, ref, failure, reading, run, now, "unverified" if verp_on else failure.kind, unknown_too=False)
    return FOR_PEOPLE if verp_on else HANDLED


def _note(ledger: Ledger, ref: DeliveryRef, failure: Failure, reading: Reading, run: BounceRun, now: datetime, kind: str,
          *, unknown_too: bool) -> None:
    if not ledger.record_bounce(ref, kind, failure.status, failure.diagnostic, reading.source, now, unknown_too=unknown_too):
        run.already += 1
    elif kind == HARD:
        run.hard += 1
        run.bounced.append((ref.dispatch, ref.address, f"{failure.status} {failure.diagnostic}".strip()))
    elif kind == "unverified":
        run.unverified += 1
    else:
        run.soft += 1


def _by_verp(ledger: Ledger, reading: Reading) -> DeliveryRef | None:
    for address in reading.envelope_to:
        decoded = verp.decode(address, ledger.identity)
        if decoded is not None:
            ref = ledger.delivery(decoded[1])
            if ref is not None and ref.dispatch_id == decoded[0]:
                return ref
    return None


def _by_message_id(ledger: Ledger, reading: Reading, failure: Failure, *, batched: bool) -> DeliveryRef | None:
    """The row whose Message-ID the bounce quotes, when the DSN's Final-Recipient (or
    Original-Recipient) is that row's address. With Bcc batches (one Message-ID for many,
    stored on no row) the row of that address in the dispatch the Message-ID names: ours are
    ``<DISPATCH.DIGEST@domain>``."""
    keys = {_key(address) for address in (failure.recipient, failure.original) if address}
    if not keys:
        return None
    for message_id in reading.message_ids:
        ref = ledger.delivery_by_message_id(message_id)
        if ref is not None and ref.key in keys:
            return ref
        dispatch = message_id.strip("<>").partition("@")[0].rpartition(".")[0]
        if batched and dispatch:
            for key in sorted(keys):
                ref = ledger.delivery_by_key(dispatch, key)
                if ref is not None:
                    return ref
    return None


def _key(address: str) -> str:
    try:
        return normalise(address)[1]
    except AddressError:
        return address.lower()


def _secret(box: BounceSettings) -> str:
    """The mailbox's password (password_env, password_file) or an OAuth2 token (token_command);
    read at sign-in, never stored or shown."""
    from dispatch.delivery.oauth import CommandTokenSource

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


def repeat_bouncers(s: Session, last: int) -> list[Repeat]:
    """Addresses that bounced hard in two or more of the last ``last`` dispatches, each with
    the list entries to fix. Nobody is removed: people decide."""
    settings, ledger = s.settings, s.ledger
    found = ledger.repeat_bouncers(last, 2)
    if not found:
        return []
    from dispatch.app.editions import all_lists

    report = lists_report(settings, all_lists(settings), s)  # directory lists: their accepted snapshots
    sources: dict[str, list[str]] = {}
    if report.resolution is not None:
        for recipient in report.resolution.recipients.values():
            sources.setdefault(recipient.key, []).append(recipient.source)
    return [Repeat(address, names, sources.get(key, [])) for key, address, names in found]
