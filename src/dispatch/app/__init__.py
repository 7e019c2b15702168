"""The composition root and the one way in: the CLI, the console, the scheduler service (and
the tests) call the functions here, and only these; each takes ``now`` or a Clock so that
nothing below reads the time by itself.

- ``application``: ``App(settings, clock)``, one per process (one engine for the ledger), and
  its units of work: ``with app.session() as s:``; the use cases that need the ledger take ``s``
- ``wiring``: the one place that names concrete classes (which transport, the ledger's limits)
- ``editions``: read, prepare (resolve, render, pre-flight), check, preview, list reports
- ``changes``, ``control``: change control: the facts about content, and the decisions
  (decide, approve, revoke, publish under change control)
- ``sending``: plan, send, the completion summary
- ``records``: find a dispatch, status, history, export
- ``directory``: directory lists: sync into snapshots (the shrink guard), diff, accept
- ``scheduled``: what the service's jobs do, decided from the ledger
- ``service``: the scheduler process (APScheduler) that runs them, for ``dispatch serve``
- ``accounts``, ``passwords``, ``drafting``, ``overview``: the console's people and audit
  log, signing in and out, editing an edition as a form with a live preview, and where
  things stand
- the settings (``Settings``, ``load_settings``), re-exported for the front doors, which reach
  the rest of the program only through this package

Nothing is imported until it is used (issue 34): a command reaches only the modules of the
names it asks for (``dispatch status`` never loads the renderer, the bounce reader or the
console), by ``__getattr__`` below (PEP 562). Type checkers read the imports under
``TYPE_CHECKING``; ``WHERE`` says the same for the running program (tests/test_startup.py
checks that the two agree).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dispatch.app.accounts import (
        NO_ROLE,
        SSOHeld,
        SSORefused,
        active_user,
        add_user,
        audit,
        audit_log,
        claim_values,
        disable_user,
        enable_user,
        list_users,
        sso_failed,
        sso_name,
        sso_no_role,
        sso_refused,
        sso_role,
        sso_user,
    )
    from dispatch.app.application import App, Session
    from dispatch.app.bounces import BounceRun, MailboxError, Repeat, process_bounces, repeat_bouncers
    from dispatch.app.changes import (
        Review,
        SentVersion,
        changed_after_send,
        identify,
        latest_sent_edition,
        review,
        review_now,
        sent_edition,
        sent_version,
    )
    from dispatch.app.control import (
        Decision,
        TooEarly,
        accessibility_statement,
        accessibility_warnings,
        approve,
        decide,
        decide_now,
        publish,
        publish_checked,
        revocation_notes,
        revoke,
        scheduled_edition,
        too_early,
    )
    from dispatch.app.directory import (
        ACCEPT_ACTION,
        Accepted,
        DirectoryCard,
        ListDiff,
        SyncOutcome,
        accept,
        directory_cards,
        list_diff,
        snapshot_notes,
        sync,
        waiting_lists,
    )
    from dispatch.app.drafting import (
        NEW_FILE,
        Draft,
        DraftPreview,
        Saved,
        SentDiff,
        compose,
        diff_texts,
        open_draft,
        preview_draft,
        save_draft,
        sent_diff,
        start_correction,
    )
    from dispatch.app.editions import (
        FOOTER,
        ListsReport,
        Prepared,
        all_lists,
        check_edition,
        choose_lists,
        first_message,
        lists_report,
        lists_sent_before,
        looks_urgent,
        prepare_edition,
        publishes_on_send,
        web_url,
        write_preview,
    )
    from dispatch.app.eventlog import configure as configure_log
    from dispatch.app.eventlog import event
    from dispatch.app.labels import label_from, label_of, labels_for
    from dispatch.app.overview import EditionState, ScheduleDay, approvals_of, edition_state, today
    from dispatch.app.passwords import (
        LOCK_AFTER,
        LOCK_FOR,
        LOCKED_CHECKS,
        UNKNOWN_PER_ADDRESS,
        AccountLocked,
        AddressLimits,
        LockedChecks,
        SignInRefused,
        change_password,
        checks_at_once,
        set_password,
        sign_in,
        sign_out,
    )
    from dispatch.app.readback import MAX_TO_LINE, LongSubject, long_subject
    from dispatch.app.reading import read_edition
    from dispatch.app.records import Status, approval_history, edition_note, export, find_dispatch, history, status
    from dispatch.app.runs import Confirmation, Recipe, Run, Runs, confirm, recipe_for, retry_waiting_now
    from dispatch.app.scheduled import Job, ServeClock, Service, schedule_jobs
    from dispatch.app.sending import duration, mail_notice, notify_summary, plan_for, plan_line, send, send_plan
    from dispatch.app.since import SinceApproval, SinceSent, since_approval, since_sent_to_lists
    from dispatch.app.timetable import Due, check_schedules
    from dispatch.app.urgent import urgent_fields, urgent_path, write_urgent
    from dispatch.app.wiring import (
        current_user,
        envelope,
        open_transport,
        phone_check_unavailable,
        read_oidc_secret,
        read_secret,
        secrets_ready,
        send_policy,
    )
    from dispatch.config import Settings, WebSettings, load_settings
    from dispatch.config.settings import OidcSettings
    from dispatch.control.content import short
    from dispatch.delivery.pipeline import Clock, Result, StoppableClock
    from dispatch.email.pasted import MAX_PASTE_BYTES, markdown_from_clipboard
    from dispatch.ledger import Ledger, dispatch_name, state_dir
    from dispatch.models import AuditEntry, KeptText, User
    from dispatch.publishing.export import export_csv, export_files
    from dispatch.recipients.snapshots import Change, Snapshot, SnapshotMember, SnapshotState
    from dispatch.values import PERMISSIONS, Permission, Role

# module -> the names it gives this package ("local:original" where the name is changed here).
WHERE: dict[str, tuple[str, ...]] = {
    "dispatch.app.accounts": (
        "NO_ROLE", "SSOHeld", "SSORefused", "active_user", "add_user", "audit", "audit_log", "claim_values", "disable_user",
        "enable_user", "list_users", "sso_failed", "sso_name", "sso_no_role", "sso_refused", "sso_role", "sso_user",
    ),
    "dispatch.app.application": ("App", "Session"),
    "dispatch.app.bounces": ("BounceRun", "MailboxError", "Repeat", "process_bounces", "repeat_bouncers"),
    "dispatch.app.changes": (
        "Review", "SentVersion", "changed_after_send", "identify", "latest_sent_edition", "review", "review_now",
        "sent_edition", "sent_version",
    ),
    "dispatch.app.control": (
        "Decision", "accessibility_statement", "accessibility_warnings", "approve", "decide", "decide_now", "publish",
        "publish_checked", "revocation_notes", "revoke", "scheduled_edition", "TooEarly", "too_early",
    ),
    "dispatch.app.directory": (
        "ACCEPT_ACTION", "Accepted", "DirectoryCard", "ListDiff", "SyncOutcome", "accept", "directory_cards", "list_diff",
        "snapshot_notes", "sync", "waiting_lists",
    ),
    "dispatch.app.drafting": (
        "NEW_FILE", "Draft", "DraftPreview", "Saved", "SentDiff", "compose", "diff_texts", "open_draft", "preview_draft",
        "save_draft", "sent_diff", "start_correction",
    ),
    "dispatch.app.editions": (
        "FOOTER", "ListsReport", "Prepared", "all_lists", "check_edition", "choose_lists", "first_message", "lists_report",
        "lists_sent_before", "looks_urgent", "prepare_edition", "publishes_on_send", "web_url",
        "write_preview",
    ),
    "dispatch.app.eventlog": ("configure_log:configure", "event"),
    "dispatch.app.labels": ("label_from", "label_of", "labels_for"),
    "dispatch.app.overview": ("EditionState", "ScheduleDay", "approvals_of", "edition_state", "today"),
    "dispatch.app.passwords": (
        "LOCK_AFTER", "LOCK_FOR", "LOCKED_CHECKS", "UNKNOWN_PER_ADDRESS", "AccountLocked", "AddressLimits", "LockedChecks",
        "SignInRefused", "change_password", "checks_at_once", "set_password", "sign_in", "sign_out",
    ),
    "dispatch.app.reading": ("read_edition",),
    "dispatch.app.readback": ("MAX_TO_LINE", "LongSubject", "long_subject"),
    "dispatch.app.records": ("Status", "approval_history", "edition_note", "export", "find_dispatch", "history", "status"),
    "dispatch.app.runs": ("Confirmation", "Recipe", "Run", "Runs", "confirm", "recipe_for", "retry_waiting_now"),
    "dispatch.app.scheduled": ("Job", "ServeClock", "Service", "schedule_jobs"),
    "dispatch.app.sending": ("duration", "mail_notice", "notify_summary", "plan_for", "plan_line", "send", "send_plan"),
    "dispatch.app.since": ("SinceApproval", "SinceSent", "since_approval", "since_sent_to_lists"),
    "dispatch.app.timetable": ("Due", "check_schedules"),
    "dispatch.app.urgent": ("urgent_fields", "urgent_path", "write_urgent"),
    "dispatch.app.wiring": (
        "current_user", "envelope", "open_transport", "phone_check_unavailable", "read_oidc_secret", "read_secret",
        "secrets_ready", "send_policy",
    ),
    "dispatch.config": ("Settings", "WebSettings", "load_settings"),
    "dispatch.config.settings": ("OidcSettings",),
    "dispatch.control.content": ("short",),
    "dispatch.delivery.pipeline": ("Clock", "Result", "StoppableClock"),
    "dispatch.email.pasted": ("MAX_PASTE_BYTES", "markdown_from_clipboard"),
    "dispatch.ledger": ("Ledger", "dispatch_name", "state_dir"),
    "dispatch.models": ("AuditEntry", "KeptText", "User"),
    "dispatch.publishing.export": ("export_csv", "export_files"),
    "dispatch.recipients.snapshots": ("Change", "Snapshot", "SnapshotMember", "SnapshotState"),
    "dispatch.values": ("PERMISSIONS", "Permission", "Role"),
}

_SOURCE_OF: dict[str, tuple[str, str]] = {
    entry.partition(":")[0]: (module, entry.partition(":")[2] or entry) for module, entries in WHERE.items() for entry in entries
}

if not TYPE_CHECKING:  # for mypy the names are the imports above, and a typo stays an error

    def __getattr__(name: str) -> object:
        """The first use of a name imports its module, and keeps the name here for the next."""
        try:
            module, original = _SOURCE_OF[name]
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), original)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})


__all__ = [
    "ACCEPT_ACTION",
    "FOOTER",
    "LOCKED_CHECKS",
    "LOCK_AFTER",
    "LOCK_FOR",
    "MAX_PASTE_BYTES",
    "MAX_TO_LINE",
    "NEW_FILE",
    "NO_ROLE",
    "PERMISSIONS",
    "UNKNOWN_PER_ADDRESS",
    "Accepted",
    "AccountLocked",
    "AddressLimits",
    "App",
    "AuditEntry",
    "BounceRun",
    "Change",
    "Clock",
    "Confirmation",
    "Decision",
    "DirectoryCard",
    "Draft",
    "DraftPreview",
    "Due",
    "EditionState",
    "Job",
    "KeptText",
    "Ledger",
    "ListDiff",
    "ListsReport",
    "LockedChecks",
    "LongSubject",
    "MailboxError",
    "OidcSettings",
    "Permission",
    "Prepared",
    "Recipe",
    "Repeat",
    "Result",
    "Review",
    "Role",
    "Run",
    "Runs",
    "SSOHeld",
    "SSORefused",
    "Saved",
    "ScheduleDay",
    "SentDiff",
    "SentVersion",
    "ServeClock",
    "Service",
    "Session",
    "Settings",
    "SignInRefused",
    "SinceApproval",
    "SinceSent",
    "Snapshot",
    "SnapshotMember",
    "SnapshotState",
    "Status",
    "StoppableClock",
    "SyncOutcome",
    "TooEarly",
    "User",
    "WebSettings",
    "accept",
    "accessibility_statement",
    "accessibility_warnings",
    "active_user",
    "add_user",
    "all_lists",
    "approval_history",
    "approvals_of",
    "approve",
    "audit",
    "audit_log",
    "change_password",
    "changed_after_send",
    "check_edition",
    "check_schedules",
    "checks_at_once",
    "choose_lists",
    "claim_values",
    "compose",
    "configure_log",
    "confirm",
    "current_user",
    "decide",
    "decide_now",
    "diff_texts",
    "directory_cards",
    "disable_user",
    "dispatch_name",
    "duration",
    "edition_note",
    "edition_state",
    "enable_user",
    "envelope",
    "event",
    "export",
    "export_csv",
    "export_files",
    "find_dispatch",
    "first_message",
    "history",
    "identify",
    "label_from",
    "label_of",
    "labels_for",
    "latest_sent_edition",
    "list_diff",
    "list_users",
    "lists_report",
    "lists_sent_before",
    "load_settings",
    "long_subject",
    "looks_urgent",
    "mail_notice",
    "markdown_from_clipboard",
    "notify_summary",
    "open_draft",
    "open_transport",
    "phone_check_unavailable",
    "plan_for",
    "plan_line",
    "prepare_edition",
    "preview_draft",
    "process_bounces",
    "publish",
    "publish_checked",
    "publishes_on_send",
    "read_edition",
    "read_oidc_secret",
    "read_secret",
    "recipe_for",
    "repeat_bouncers",
    "retry_waiting_now",
    "review",
    "review_now",
    "revocation_notes",
    "revoke",
    "save_draft",
    "schedule_jobs",
    "scheduled_edition",
    "secrets_ready",
    "send",
    "send_plan",
    "send_policy",
    "sent_diff",
    "sent_edition",
    "sent_version",
    "set_password",
    "short",
    "sign_in",
    "sign_out",
    "since_approval",
    "since_sent_to_lists",
    "snapshot_notes",
    "sso_failed",
    "sso_name",
    "sso_no_role",
    "sso_refused",
    "sso_role",
    "sso_user",
    "start_correction",
    "state_dir",
    "status",
    "sync",
    "today",
    "too_early",
    "urgent_fields",
    "urgent_path",
    "waiting_lists",
    "web_url",
    "write_preview",
    "write_urgent",
]
