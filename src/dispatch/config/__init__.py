"""config.yaml (plus the environment, for secrets) -> validated, immutable settings.

Relative paths are resolved against the directory of the config file, so
``dispatch --config /elsewhere/config.yaml`` behaves the same from any directory.
Secrets are never read from this file: only the *name* of an environment
variable or file that holds them.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dispatch.config.credentials import secret_problems
from dispatch.config.directories import read_directories, read_sync_minutes
from dispatch.config.dkim import read_dkim
from dispatch.config.reader import Reader, read_ledger_url
from dispatch.config.sections import (
    read_bounces,
    read_notify,
    read_publish,
    read_report,
    read_schedules,
    read_sender,
    read_transport,
)
from dispatch.config.settings import (
    DEFAULT_RETRY_MINUTES,
    LEDGER_TIMEOUT_KEYS,
    TOP_KEYS,
    AccessibilitySettings,
    BounceSettings,
    DkimSettings,
    GraphDirectory,
    LdapDirectory,
    LedgerTimeouts,
    PublishSettings,
    ReportSettings,
    Schedule,
    Sender,
    Settings,
    StandingSection,
    TransportSettings,
    WebSettings,
    default_templates_dir,
)
from dispatch.config.web import read_accessibility, read_web
from dispatch.config.yamlsource import LineDict, load_yaml_file
from dispatch.errors import InputError, Problem, display_path


def load_settings(path: Path) -> Settings:
    """Read and validate a config file; raise InputError listing every problem found."""
    path = path.resolve() if path.exists() else path
    raw = load_yaml_file(path)
    reader = Reader(path)
    if raw is None:
        raw = LineDict()
        raw.line, raw.key_lines = 1, {}
    if not isinstance(raw, LineDict):
        raise InputError([Problem(reader.shown, 1, "the config must be a YAML mapping of settings")])
    reader.check_keys(raw, TOP_KEYS)

    zone_name = reader.text(raw, "timezone", "Europe/Stockholm")
    try:
        timezone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        reader.problem(raw.line_of("timezone"), f"unknown timezone {zone_name!r}; use an IANA name like Europe/Stockholm")
        timezone = ZoneInfo("Europe/Stockholm")

    reports_dir = reader.relative(reader.text(raw, "reports_dir", "reports"))
    recipients_dir = reader.relative(reader.text(raw, "recipients_dir", "recipients"))
    templates_value = reader.text(raw, "templates_dir", None)
    templates_dir = reader.relative(templates_value) if templates_value else default_templates_dir()
    if templates_value and templates_dir is not None and not templates_dir.is_dir():
        reader.problem(raw.line_of("templates_dir"), f"templates_dir {templates_value!r} is not a directory")
    ledger_url = read_ledger_url(reader, reader.text(raw, "ledger", "sqlite:///var/ledger.db"), raw.line_of("ledger"))
    lease_seconds = reader.number(raw, "lease_seconds", float, 600.0, low=3,
                                  rule="a number of seconds, at least 3 (default 600)")

    ledger_timeouts = _read_ledger_timeouts(reader, raw)

    approval = reader.text(raw, "approval", "front_matter")
    if approval not in ("front_matter", "four_eyes"):
        reader.problem(raw.line_of("approval"), f"'approval' must be front_matter or four_eyes, not {approval!r}")
        approval = "front_matter"

    sender = read_sender(reader, raw)
    transport = read_transport(reader, raw)
    report = read_report(reader, raw)
    publish = read_publish(reader, raw)
    notify = read_notify(reader, raw)
    schedules = read_schedules(reader, raw)
    bounces = read_bounces(reader, raw)
    web = read_web(reader, raw)
    accessibility = read_accessibility(reader, raw)
    dkim = read_dkim(reader, raw)
    directories = read_directories(reader, raw)
    sync_minutes = read_sync_minutes(reader, raw)
    if sender.verp and transport.recipients_per_message > 1:
        # One envelope sender per message: a Bcc batch cannot carry one token per person.
        reader.problem(reader.lines.get("sender.verp", 1), "'sender.verp' needs one message per recipient: set "
                       "transport.recipients_per_message to 1, or turn verp off (bounces then match by Message-ID)")

    if reader.problems:
        raise InputError(sorted(reader.problems, key=lambda problem: problem.line))
    if reports_dir is None or recipients_dir is None or templates_dir is None:  # (a wrong value is a problem above)
        raise InputError([Problem(display_path(path), 1, "reports_dir, recipients_dir and templates_dir must be paths")])
    return Settings(
        path=path,
        timezone=timezone,
        reports_dir=reports_dir,
        recipients_dir=recipients_dir,
        templates_dir=templates_dir,
        ledger_url=ledger_url,
        sender=sender,
        transport=transport,
        report=report,
        publish=publish,
        notify=notify,
        schedules=schedules,
        lease_seconds=lease_seconds,
        ledger_timeouts=ledger_timeouts,
        approval=approval,
        bounces=bounces,
        web=web,
        accessibility=accessibility,
        dkim=dkim,
        directories=directories,
        sync_minutes=sync_minutes,
        line_of=reader.lines,
    )


def _read_ledger_timeouts(reader: Reader, raw: LineDict) -> LedgerTimeouts:
    section = reader.section(raw, "ledger_timeouts", LEDGER_TIMEOUT_KEYS)
    defaults = LedgerTimeouts()
    values = {key: reader.number(section, key, float, getattr(defaults, key), "ledger_timeouts.", low=0, high=86400,
                                 rule=f"a number of seconds from 0 (none) to 86400 (default {getattr(defaults, key):g})")
              for key in LEDGER_TIMEOUT_KEYS}
    return LedgerTimeouts(**values)


# The settings types live in settings.py; the config module is where callers find them
# beside load_settings (and the architecture allows cli/serve to import only this).
__all__ = [
    "DEFAULT_RETRY_MINUTES", "AccessibilitySettings", "BounceSettings", "DkimSettings", "GraphDirectory", "LdapDirectory",
    "LedgerTimeouts", "PublishSettings",
    "ReportSettings", "Schedule",
    "Sender", "Settings",
    "StandingSection", "TransportSettings", "WebSettings", "default_templates_dir", "load_settings", "secret_problems",
]
