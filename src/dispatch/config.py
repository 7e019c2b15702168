"""config.yaml (plus the environment, for secrets) -> validated, immutable settings.

Relative paths are resolved against the directory of the config file, so
``dispatch --config /elsewhere/config.yaml`` behaves the same from any directory.
Secrets are never read from this file: only the *name* of an environment
variable or file that holds them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dispatch.errors import InputError, Problem, display_path
from dispatch.yamlsource import LineDict, LineList, load_yaml_file

DEFAULT_RETRY_MINUTES = (1, 2, 5, 10, 30)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Sender:
    name: str
    address: str
    reply_to: str | None

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


@dataclass(frozen=True)
class TransportSettings:
    kind: str = "maildir"
    path: Path = Path("var/outbox")
    host: str = "127.0.0.1"
    port: int = 25
    security: str = "none"
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    auth: str = "password"
    token_command: str | None = None
    ca_file: Path | None = None
    connections: int = 1
    rate_per_minute: int = 0
    recipients_per_message: int = 1
    timeout_seconds: float = 60.0
    retry_minutes: tuple[float, ...] = DEFAULT_RETRY_MINUTES
    retry_window_hours: float = 24.0

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Schedule:
    name: str
    cron: str
    lists: tuple[str, ...]
    deadline: str | None = None
    approval_deadline: str | None = None


@dataclass(frozen=True)
class StandingSection:
    heading: str
    markdown: str
    # Urgent messages carry only the standing sections marked for them, optionally shortened.
    urgent_markdown: str | None = None


@dataclass(frozen=True)
class ReportSettings:
    title: str
    subject: str
    preheader: str
    list_id: str
    standing_sections: tuple[StandingSection, ...]


@dataclass(frozen=True)
class PublishSettings:
    dir: Path
    base_url: str | None
    on_send: bool = False


@dataclass(frozen=True)
class Settings:
    path: Path
    timezone: ZoneInfo
    reports_dir: Path
    recipients_dir: Path
    templates_dir: Path
    ledger_url: str
    sender: Sender
    transport: TransportSettings
    report: ReportSettings
    publish: PublishSettings
    notify: tuple[str, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    lease_seconds: float = 600.0  # claimed rows return to the queue this long after a node stops renewing
    approval: str = "front_matter"  # or "four_eyes": a recorded approval of the current content by another person
    line_of: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def scheduled_lists(self) -> tuple[str, ...]:
        """Every list named in any schedule, in first-seen order."""
        seen: dict[str, None] = {}
        for schedule in self.schedules:
            for name in schedule.lists:
                seen.setdefault(name)
        return tuple(seen)

    def where(self, dotted_key: str) -> str:
        """``config.yaml:LINE`` of a key, for messages about its value."""
        return f"{display_path(self.path)}:{self.line_of.get(dotted_key, 1)}"


def default_templates_dir() -> Path:
    """The templates shipped inside the wheel, or those of a source checkout."""
    packaged = Path(__file__).parent / "_templates" / "email"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates" / "email"


class _Reader:
    """Collects every problem in a config file before reporting, so one run shows them all."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.shown = display_path(path)
        self.problems: list[Problem] = []
        self.lines: dict[str, int] = {}

    def problem(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.shown, line, message))

    def section(self, parent: LineDict, key: str, prefix: str = "") -> LineDict:
        value = parent.get(key)
        if value is None:
            empty = LineDict()
            empty.line = parent.line_of(key)
            empty.key_lines = {}
            return empty
        if not isinstance(value, dict):
            self.problem(parent.line_of(key), f"'{prefix}{key}' must be a mapping of settings")
            empty = LineDict()
            empty.line, empty.key_lines = parent.line_of(key), {}
            return empty
        return value  # type: ignore[return-value]

    def get(self, parent: LineDict, key: str, kind: type | tuple[type, ...], default: Any, prefix: str = "") -> Any:
        self.lines[prefix + key] = parent.line_of(key)
        if key not in parent or parent[key] is None:
            return default
        value = parent[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.problem(parent.line_of(key), f"'{prefix}{key}' must be {_article(expected)}, not {value!r}")
            return default
        return value

    def text(self, parent: LineDict, key: str, default: str | None, prefix: str = "") -> Any:
        value = self.get(parent, key, str, default, prefix)
        if isinstance(value, str) and _CONTROL.search(value.replace("\n", "")):
            self.problem(parent.line_of(key), f"'{prefix}{key}' contains a control character; remove it")
        return value

    def relative(self, value: str | None) -> Path | None:
        if value is None:
            return None
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else (self.path.parent / candidate).resolve()


def _article(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def _parse_address(reader: _Reader, line: int, key: str, value: str) -> tuple[str, str] | None:
    if _CONTROL.search(value):
        reader.problem(line, f"'{key}' contains a control character; remove it")
        return None
    name, address = parseaddr(value)
    if "@" not in address or " " in address:
        reader.problem(line, f"'{key}' must be an address like 'Name <user@example.org>', not {value!r}")
        return None
    try:
        Address(display_name=name, addr_spec=address)
    except (ValueError, IndexError) as exc:
        reader.problem(line, f"'{key}' is not a valid address ({exc})")
        return None
    return name, address


def _ledger_url(reader: _Reader, value: str, line: int) -> str:
    if value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
        relative = value[len("sqlite:///"):]
        if relative and relative != ":memory:":
            return "sqlite:///" + str(reader.relative(relative))
        return value
    if value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
        return value
    reader.problem(line, f"'ledger' must be sqlite:///PATH or postgresql://HOST/DB, not {value!r}")
    return "sqlite:///:memory:"


def load_settings(path: Path) -> Settings:
    """Read and validate a config file; raise InputError listing every problem found."""
    path = path.resolve() if path.exists() else path
    raw = load_yaml_file(path)
    reader = _Reader(path)
    if raw is None:
        raw = LineDict()
        raw.line, raw.key_lines = 1, {}
    if not isinstance(raw, dict):
        raise InputError([Problem(reader.shown, 1, "the config must be a YAML mapping of settings")])

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
    ledger_url = _ledger_url(reader, reader.text(raw, "ledger", "sqlite:///var/ledger.db"), raw.line_of("ledger"))
    lease_seconds = reader.get(raw, "lease_seconds", float, 600.0)
    if lease_seconds < 3:
        reader.problem(raw.line_of("lease_seconds"), "'lease_seconds' must be at least 3 (default 600)")
        lease_seconds = 600.0

    approval = reader.text(raw, "approval", "front_matter")
    if approval not in ("front_matter", "four_eyes"):
        reader.problem(raw.line_of("approval"), f"'approval' must be front_matter or four_eyes, not {approval!r}")
        approval = "front_matter"

    sender = _read_sender(reader, raw)
    transport = _read_transport(reader, raw)
    report = _read_report(reader, raw)
    publish = _read_publish(reader, raw)
    notify = _read_notify(reader, raw)
    schedules = _read_schedules(reader, raw)

    if reader.problems:
        raise InputError(reader.problems)
    assert reports_dir and recipients_dir and templates_dir
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
        approval=approval,
        line_of=reader.lines,
    )


def _read_sender(reader: _Reader, raw: LineDict) -> Sender:
    section = reader.section(raw, "sender")
    from_value = reader.text(section, "from", "Regional rapport <rapport@example.org>", "sender.")
    parsed = _parse_address(reader, section.line_of("from"), "sender.from", from_value) or ("", "rapport@example.org")
    reply_value = reader.text(section, "reply_to", None, "sender.")
    reply_to = None
    if reply_value:
        reply = _parse_address(reader, section.line_of("reply_to"), "sender.reply_to", reply_value)
        reply_to = reply_value if reply else None
    return Sender(name=parsed[0], address=parsed[1], reply_to=reply_to)


def _read_transport(reader: _Reader, raw: LineDict) -> TransportSettings:
    section = reader.section(raw, "transport")
    p = "transport."
    if "password" in section:
        reader.problem(
            section.line_of("password"),
            "secrets do not belong in the config file: remove 'password' and set 'password_env' "
            "(the name of an environment variable) or 'password_file' instead",
        )
    kind = reader.text(section, "kind", "maildir", p)
    if kind not in ("maildir", "smtp"):
        reader.problem(section.line_of("kind"), f"transport.kind must be 'maildir' or 'smtp', not {kind!r}")
    security = reader.text(section, "security", "none", p)
    if security not in ("none", "starttls", "tls"):
        reader.problem(section.line_of("security"), f"transport.security must be none, starttls or tls, not {security!r}")
    auth = reader.text(section, "auth", "password", p)
    if auth not in ("password", "xoauth2"):
        reader.problem(section.line_of("auth"), f"transport.auth must be password or xoauth2, not {auth!r}")
    if auth == "xoauth2":
        for needed in ("username", "token_command"):
            if not section.get(needed):
                reader.problem(section.line_of("auth"), f"transport.auth xoauth2 needs transport.{needed}")
    default_port = {"tls": 465, "starttls": 587}.get(security, 25)
    port = reader.get(section, "port", int, default_port, p)
    connections = reader.get(section, "connections", int, 1, p)
    if connections < 1:
        reader.problem(section.line_of("connections"), "transport.connections must be at least 1")
        connections = 1
    per_message = reader.get(section, "recipients_per_message", int, 1, p)
    if per_message < 1:
        reader.problem(section.line_of("recipients_per_message"), "transport.recipients_per_message must be at least 1")
        per_message = 1
    rate = reader.get(section, "rate_per_minute", (int, float), 0, p)
    if rate < 0:
        reader.problem(section.line_of("rate_per_minute"), "transport.rate_per_minute must be 0 (no limit) or more")
        rate = 0
    retry = reader.get(section, "retry_minutes", list, list(DEFAULT_RETRY_MINUTES), p)
    if not all(isinstance(x, (int, float)) and x >= 0 for x in retry):
        reader.problem(section.line_of("retry_minutes"), "transport.retry_minutes must be a list of minutes, e.g. [1, 2, 5, 10, 30]")
        retry = list(DEFAULT_RETRY_MINUTES)
    return TransportSettings(
        kind=kind,
        path=reader.relative(reader.text(section, "path", "var/outbox", p)) or Path("var/outbox"),
        host=reader.text(section, "host", "127.0.0.1", p),
        port=port,
        security=security,
        username=reader.text(section, "username", None, p),
        password_env=reader.text(section, "password_env", None, p),
        password_file=reader.relative(reader.text(section, "password_file", None, p)),
        auth=auth,
        token_command=reader.text(section, "token_command", None, p),
        ca_file=reader.relative(reader.text(section, "ca_file", None, p)),
        connections=connections,
        rate_per_minute=rate,
        recipients_per_message=per_message,
        timeout_seconds=reader.get(section, "timeout_seconds", float, 60.0, p),
        retry_minutes=tuple(float(x) for x in retry),
        retry_window_hours=reader.get(section, "retry_window_hours", float, 24.0, p),
    )


def _read_report(reader: _Reader, raw: LineDict) -> ReportSettings:
    section = reader.section(raw, "report")
    p = "report."
    title = reader.text(section, "title", "Regional rapport", p)
    standing: list[StandingSection] = []
    items = section.get("standing_sections") or []
    if not isinstance(items, list):
        reader.problem(section.line_of("standing_sections"), "report.standing_sections must be a list of {heading, markdown}")
        items = []
    for index, item in enumerate(items):
        line = items.line_of(index) if isinstance(items, LineList) else section.line
        if not isinstance(item, dict) or not isinstance(item.get("heading"), str) or not isinstance(item.get("markdown"), str):
            reader.problem(line, "each standing section needs 'heading' (text) and 'markdown' (text)")
            continue
        urgent = item.get("urgent", False)
        if not isinstance(urgent, (bool, str)):
            reader.problem(line, "a standing section's 'urgent' must be true, false, or the Markdown to show in urgent messages")
            urgent = False
        urgent_markdown = urgent if isinstance(urgent, str) else (item["markdown"] if urgent else None)
        standing.append(StandingSection(heading=item["heading"].strip(), markdown=item["markdown"], urgent_markdown=urgent_markdown))
    return ReportSettings(
        title=title,
        subject=reader.text(section, "subject", "{{ title }} {{ date_label }}", p),
        preheader=reader.text(section, "preheader", "{{ compiled_label }}", p),
        list_id=reader.text(section, "list_id", "rapport", p),
        standing_sections=tuple(standing),
    )


def _read_publish(reader: _Reader, raw: LineDict) -> PublishSettings:
    section = reader.section(raw, "publish")
    return PublishSettings(
        dir=reader.relative(reader.text(section, "dir", "var/intranet", "publish.")) or Path("var/intranet"),
        base_url=reader.text(section, "base_url", None, "publish."),
        on_send=bool(reader.get(section, "on_send", bool, False, "publish.")),
    )


def _read_notify(reader: _Reader, raw: LineDict) -> tuple[str, ...]:
    value = reader.get(raw, "notify", (list, str), [])
    items = [value] if isinstance(value, str) else value
    result = []
    for item in items:
        if not isinstance(item, str) or "@" not in item or _CONTROL.search(item):
            reader.problem(raw.line_of("notify"), f"'notify' must list email addresses, not {item!r}")
            continue
        result.append(item.strip())
    return tuple(result)


def _read_schedules(reader: _Reader, raw: LineDict) -> tuple[Schedule, ...]:
    items = reader.get(raw, "schedules", list, [])
    schedules: list[Schedule] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        line = items.line_of(index) if isinstance(items, LineList) else raw.line_of("schedules")
        if not isinstance(item, dict):
            reader.problem(line, "each schedule must be a mapping like {name: daily, cron: '0 14 * * *', lists: [...]}")
            continue
        name = item.get("name")
        cron = item.get("cron")
        lists = item.get("lists") or []
        if not isinstance(name, str) or not name:
            reader.problem(line, "a schedule needs a 'name'")
            continue
        if name in seen:
            reader.problem(line, f"schedule name {name!r} is used twice; names must be unique")
        seen.add(name)
        if not isinstance(cron, str) or len(cron.split()) != 5:
            reader.problem(line, f"schedule {name!r}: 'cron' must have five fields, e.g. '0 14 * * *'")
            continue
        if not isinstance(lists, list) or not all(isinstance(x, str) for x in lists):
            reader.problem(line, f"schedule {name!r}: 'lists' must be a list of recipient list names")
            continue
        deadline = item.get("deadline")
        approval = item.get("approval_deadline")
        for key, value in (("deadline", deadline), ("approval_deadline", approval)):
            if value is not None and not (isinstance(value, str) and re.fullmatch(r"\d{1,2}:\d{2}", value)):
                reader.problem(line, f"schedule {name!r}: '{key}' must be a time like \"18:00\" (quoted)")
        schedules.append(Schedule(name=name, cron=cron, lists=tuple(lists), deadline=deadline, approval_deadline=approval))
    return tuple(schedules)
