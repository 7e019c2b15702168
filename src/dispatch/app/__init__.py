"""The composition root and the one way in: the CLI, the scheduler service (and the tests)
call the functions here, and only these; each takes ``now`` or a Clock so that nothing
below reads the time by itself.

- ``wiring``: the one place that names concrete classes (which ledger, which transport)
- ``editions``: read, prepare (resolve, render, pre-flight), check, preview, list reports
- ``changes``, ``control``: change control: the facts about content, and the decisions
  (decide, approve, revoke, publish under change control)
- ``sending``: plan, send, the completion summary
- ``records``: find a dispatch, status, history, export
- ``scheduled``: what the service's jobs do, decided from the ledger
- ``service``: the scheduler process (APScheduler) that runs them, for ``dispatch serve``
- ``accounts``, ``drafting``, ``overview``: the console's people and audit log, editing an
  edition as a form with a live preview, and where things stand
"""

from dispatch.app.accounts import (
    LOCK_AFTER,
    LOCK_FOR,
    SignInRefused,
    active_user,
    add_user,
    audit,
    audit_log,
    disable_user,
    list_users,
    sign_in,
)
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
    approve,
    decide,
    decide_now,
    publish,
    publish_checked,
    revocation_notes,
    revoke,
    scheduled_edition,
)
from dispatch.app.drafting import (
    NEW_FILE,
    Draft,
    DraftPreview,
    Saved,
    SentDiff,
    compose,
    open_draft,
    preview_draft,
    save_draft,
    sent_diff,
    start_correction,
)
from dispatch.app.editions import (
    FOOTER,
    MAX_TO_LINE,
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
    read_edition,
    web_url,
    write_preview,
)
from dispatch.app.overview import EditionState, ScheduleDay, approvals_of, edition_state, today
from dispatch.app.records import Status, approval_history, edition_note, export, find_dispatch, history, status
from dispatch.app.runs import Confirmation, Recipe, Run, Runs, confirm, recipe_for, retry_deferred_now
from dispatch.app.scheduled import Job, ServeClock, Service, schedule_jobs
from dispatch.app.sending import duration, mail_notice, notify_summary, plan_for, plan_line, send
from dispatch.app.urgent import urgent_fields, urgent_path, write_urgent
from dispatch.app.wiring import (
    current_user,
    envelope,
    open_ledger,
    open_transport,
    read_secret,
    secrets_ready,
    send_policy,
    start_new_ledger,
)
from dispatch.content import short
from dispatch.eventlog import configure as configure_log
from dispatch.eventlog import event
from dispatch.export import export_csv, export_files
from dispatch.ledger import Ledger, dispatch_name, state_dir
from dispatch.models import ROLES, AuditEntry, KeptText, User
from dispatch.pipeline import Clock, Result, StoppableClock
from dispatch.timetable import Due, check_schedules

__all__ = [
    "FOOTER",
    "LOCK_AFTER",
    "LOCK_FOR",
    "MAX_TO_LINE",
    "NEW_FILE",
    "ROLES",
    "AuditEntry",
    "Clock",
    "Confirmation",
    "Decision",
    "Draft",
    "DraftPreview",
    "Due",
    "EditionState",
    "Job",
    "KeptText",
    "Ledger",
    "ListsReport",
    "Prepared",
    "Recipe",
    "Result",
    "Review",
    "Run",
    "Runs",
    "Saved",
    "ScheduleDay",
    "SentDiff",
    "SentVersion",
    "ServeClock",
    "Service",
    "SignInRefused",
    "Status",
    "StoppableClock",
    "User",
    "active_user",
    "add_user",
    "all_lists",
    "approval_history",
    "approvals_of",
    "approve",
    "audit",
    "audit_log",
    "changed_after_send",
    "check_edition",
    "check_schedules",
    "choose_lists",
    "compose",
    "configure_log",
    "confirm",
    "current_user",
    "decide",
    "decide_now",
    "disable_user",
    "dispatch_name",
    "duration",
    "edition_note",
    "edition_state",
    "envelope",
    "event",
    "export",
    "export_csv",
    "export_files",
    "find_dispatch",
    "first_message",
    "history",
    "identify",
    "latest_sent_edition",
    "list_users",
    "lists_report",
    "lists_sent_before",
    "looks_urgent",
    "mail_notice",
    "notify_summary",
    "open_draft",
    "open_ledger",
    "open_transport",
    "plan_for",
    "plan_line",
    "prepare_edition",
    "preview_draft",
    "publish",
    "publish_checked",
    "publishes_on_send",
    "read_edition",
    "read_secret",
    "recipe_for",
    "retry_deferred_now",
    "review",
    "review_now",
    "revocation_notes",
    "revoke",
    "save_draft",
    "schedule_jobs",
    "scheduled_edition",
    "secrets_ready",
    "send",
    "send_policy",
    "sent_diff",
    "sent_edition",
    "sent_version",
    "short",
    "sign_in",
    "start_correction",
    "start_new_ledger",
    "state_dir",
    "status",
    "today",
    "urgent_fields",
    "urgent_path",
    "web_url",
    "write_preview",
    "write_urgent",
]
