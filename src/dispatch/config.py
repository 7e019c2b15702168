"""config.yaml (plus the environment, for secrets) -> validated, immutable settings.

Relative paths are resolved against the directory of the config file, so
``dispatch --config /elsewhere/config.yaml`` behaves the same from any directory.
Secrets are never read from this file: only the *name* of an environment
variable or file that holds them.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import shlex
import shutil
from collections.abc import Sequence
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

# The keys each mapping of the config may hold; any other key is reported with the
# nearest of these as a hint. bounces, web, sender.return_path and sender.verp are the
# design contract's (docs: ../shared/DESIGN.md), known here before their features exist.
_TOP_KEYS = (
    "timezone", "reports_dir", "recipients_dir", "templates_dir", "ledger", "lease_seconds", "approval",
    "sender", "transport", "notify", "publish", "schedules", "report", "bounces", "web",
)
_SENDER_KEYS = ("from", "reply_to", "return_path", "verp")
_TRANSPORT_KEYS = (
    "kind", "path", "host", "port", "security", "username", "password_env", "password_file", "auth",
    "token_command", "ca_file", "connections", "rate_per_minute", "recipients_per_message",
    "timeout_seconds", "retry_minutes", "retry_window_hours",
)
_REPORT_KEYS = ("title", "subject", "preheader", "list_id", "standing_sections")
_STANDING_KEYS = ("heading", "markdown", "urgent")
_PUBLISH_KEYS = ("dir", "base_url", "on_send")
_SCHEDULE_KEYS = ("name", "cron", "lists", "deadline", "approval_deadline")
_BOUNCES_KEYS = (
    "host", "port", "security", "username", "password_env", "password_file", "auth", "token_command",
    "ca_file", "folder", "processed_folder",
)
_WEB_KEYS = ("listen", "base_url")


@dataclass(frozen=True)
class Sender:
    name: str
    address: str
    reply_to: str | None
    return_path: str | None = None  # envelope sender for bounces (None: the From address)
    verp: bool = False

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
class BounceSettings:
    """The bounce mailbox (read over IMAP); parsed loosely until bounce reading exists."""

    host: str | None = None
    port: int = 993
    security: str = "tls"
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    auth: str = "password"
    token_command: str | None = None
    ca_file: Path | None = None
    folder: str = "INBOX"
    processed_folder: str | None = None


@dataclass(frozen=True)
class WebSettings:
    """The editor console; parsed loosely until the console exists."""

    listen: str = "127.0.0.1:8025"
    base_url: str | None = None


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
    bounces: BounceSettings | None = None  # None: no bounces: section
    web: WebSettings | None = None  # None: no web: section
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

    def section(self, parent: LineDict, key: str, known: Sequence[str], prefix: str = "",
                reported: Sequence[str] = ()) -> LineDict:
        """The mapping under ``key`` (empty when absent), its unknown keys reported."""
        value = parent.get(key)
        if isinstance(value, LineDict):
            self.check_keys(value, known, prefix + key, reported)
            return value
        if value is not None:
            self.problem(parent.line_of(key), f"'{prefix}{key}' must be a mapping of settings")
        empty = LineDict()
        empty.line, empty.key_lines = parent.line_of(key), {}
        return empty

    def check_keys(self, mapping: LineDict, known: Sequence[str], where: str = "", reported: Sequence[str] = ()) -> None:
        """A problem for each key of ``mapping`` outside ``known`` (``reported`` keys have their own message)."""
        for key in mapping:
            if key in known or key in reported:
                continue
            name = str(key)
            close = difflib.get_close_matches(name.lower(), known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "known keys: " + ", ".join(known)
            place = f" in {where}" if where else ""
            self.problem(mapping.line_of(key), f"unknown key {name!r}{place}; {hint}")

    def get(self, parent: LineDict, key: str, kind: type | tuple[type, ...], default: Any, prefix: str = "") -> Any:
        self.lines[prefix + key] = parent.line_of(key)
        if key not in parent or parent[key] is None:
            return default
        value = parent[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and int not in kinds and isinstance(value, int) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:
                return value  # too large for a float; the range check reports it
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in kinds):
            expected = " or ".join(k.__name__ for k in kinds)
            self.problem(parent.line_of(key), f"'{prefix}{key}' must be {_article(expected)}, not {value!r}")
            return default
        return value

    def number(self, parent: LineDict, key: str, kind: type | tuple[type, ...], default: Any, prefix: str = "", *,
               low: float | None = None, high: float | None = None, above: float | None = None, rule: str) -> Any:
        """A finite number within the bounds (``above`` excludes its bound); else a problem and ``default``."""
        value = self.get(parent, key, kind, default, prefix)
        if not (_finite(value) and (low is None or value >= low) and (high is None or value <= high)
                and (above is None or value > above)):
            self.problem(parent.line_of(key), f"'{prefix}{key}' must be {rule}, not {_shown_number(value)}")
            return default
        return value

    def text(self, parent: LineDict, key: str, default: str | None, prefix: str = "", multiline: bool = False) -> Any:
        """A string; line breaks (unless ``multiline``) and other control characters are problems,
        since these values end up in headers, logs and file names."""
        value = self.get(parent, key, str, default, prefix)
        if isinstance(value, str):
            if not multiline and ("\n" in value or "\r" in value):
                self.problem(parent.line_of(key), f"'{prefix}{key}' contains a line break; keep it on one line")
            elif _CONTROL.search(value.replace("\n", "") if multiline else value):
                self.problem(parent.line_of(key), f"'{prefix}{key}' contains a control character; remove it")
        return value

    def relative(self, value: str | None) -> Path | None:
        if value is None:
            return None
        candidate = Path(value).expanduser()
        # Normalised, not resolved: a symbolic link stays visible to the code that refuses
        # to follow one (the publish directory, the recipient lists).
        return candidate if candidate.is_absolute() else Path(os.path.normpath(self.path.parent / candidate))


def _article(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def _finite(value: Any) -> bool:
    """A real number (not a bool) that is neither infinite, NaN, nor too large for a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _shown_number(value: Any) -> str:
    """A number as YAML spells it, so '.inf' in the file is '.inf' in the message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    return repr(value)


def _parse_address(reader: _Reader, line: int, key: str, value: str) -> tuple[str, str] | None:
    if _CONTROL.search(value):
        return None  # reader.text, which read the value, has reported it
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
    if not isinstance(raw, LineDict):
        raise InputError([Problem(reader.shown, 1, "the config must be a YAML mapping of settings")])
    reader.check_keys(raw, _TOP_KEYS)

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
    lease_seconds = reader.number(raw, "lease_seconds", float, 600.0, low=3,
                                  rule="a number of seconds, at least 3 (default 600)")

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
    bounces = _read_bounces(reader, raw)
    web = _read_web(reader, raw)

    if reader.problems:
        raise InputError(sorted(reader.problems, key=lambda problem: problem.line))
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
        bounces=bounces,
        web=web,
        line_of=reader.lines,
    )


def _read_sender(reader: _Reader, raw: LineDict) -> Sender:
    section = reader.section(raw, "sender", _SENDER_KEYS)
    from_value = reader.text(section, "from", "Regional rapport <rapport@example.org>", "sender.")
    parsed = _parse_address(reader, section.line_of("from"), "sender.from", from_value) or ("", "rapport@example.org")
    reply_value = reader.text(section, "reply_to", None, "sender.")
    reply_to = None
    if reply_value:
        reply = _parse_address(reader, section.line_of("reply_to"), "sender.reply_to", reply_value)
        reply_to = reply_value if reply else None
    return_value = reader.text(section, "return_path", None, "sender.")
    return_path = None
    if return_value:
        bounce_to = _parse_address(reader, section.line_of("return_path"), "sender.return_path", return_value)
        return_path = bounce_to[1] if bounce_to else None
    verp = bool(reader.get(section, "verp", bool, False, "sender."))
    return Sender(name=parsed[0], address=parsed[1], reply_to=reply_to, return_path=return_path, verp=verp)


def _read_transport(reader: _Reader, raw: LineDict) -> TransportSettings:
    section = reader.section(raw, "transport", _TRANSPORT_KEYS, reported=("password",))
    p = "transport."
    _refuse_password(reader, section)
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
    port = reader.number(section, "port", int, default_port, p, low=1, high=65535, rule=_PORT_RULE)
    connections = reader.number(section, "connections", int, 1, p, low=1, high=100, rule="a whole number from 1 to 100")
    per_message = reader.number(section, "recipients_per_message", int, 1, p, low=1, high=1000,
                                rule="a whole number from 1 to 1000")
    rate = reader.number(section, "rate_per_minute", (int, float), 0, p, low=0, rule="0 (no limit) or a finite number above 0")
    retry = _retry_minutes(reader, section)
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
        timeout_seconds=reader.number(section, "timeout_seconds", float, 60.0, p, above=0,
                                      rule="a finite number of seconds above 0"),
        retry_minutes=retry,
        retry_window_hours=reader.number(section, "retry_window_hours", float, 24.0, p, above=0,
                                         rule="a finite number of hours above 0"),
    )


_PORT_RULE = "a port number from 1 to 65535"


def _retry_minutes(reader: _Reader, section: LineDict) -> tuple[float, ...]:
    """transport.retry_minutes: a non-empty list of finite waits, each 0 or more."""
    retry = reader.get(section, "retry_minutes", list, list(DEFAULT_RETRY_MINUTES), "transport.")
    rule = "'transport.retry_minutes' must list minutes to wait, each a finite number 0 or more, e.g. [1, 2, 5, 10, 30]"
    if not retry:
        reader.problem(section.line_of("retry_minutes"), f"{rule}; the list is empty")
        return DEFAULT_RETRY_MINUTES
    bad = False
    for index, minutes in enumerate(retry):
        if not (_finite(minutes) and minutes >= 0):
            line = retry.line_of(index) if isinstance(retry, LineList) else section.line_of("retry_minutes")
            reader.problem(line, f"{rule}, not {_shown_number(minutes)}")
            bad = True
    return DEFAULT_RETRY_MINUTES if bad else tuple(float(minutes) for minutes in retry)


def _read_report(reader: _Reader, raw: LineDict) -> ReportSettings:
    section = reader.section(raw, "report", _REPORT_KEYS)
    p = "report."
    title = reader.text(section, "title", "Regional rapport", p)
    standing: list[StandingSection] = []
    items = section.get("standing_sections") or []
    if not isinstance(items, list):
        reader.problem(section.line_of("standing_sections"), "report.standing_sections must be a list of {heading, markdown}")
        items = []
    for index, item in enumerate(items):
        line = items.line_of(index) if isinstance(items, LineList) else section.line
        if isinstance(item, LineDict):
            reader.check_keys(item, _STANDING_KEYS, "a standing section")
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
        preheader=reader.text(section, "preheader", "{{ compiled_label }}", p, multiline=True),  # whitespace is folded
        list_id=reader.text(section, "list_id", "rapport", p),
        standing_sections=tuple(standing),
    )


def _read_publish(reader: _Reader, raw: LineDict) -> PublishSettings:
    section = reader.section(raw, "publish", _PUBLISH_KEYS)
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
        if not isinstance(item, LineDict):
            reader.problem(line, "each schedule must be a mapping like {name: daily, cron: '0 14 * * *', lists: [...]}")
            continue
        name = item.get("name")
        cron = item.get("cron")
        lists = item.get("lists") or []
        reader.check_keys(item, _SCHEDULE_KEYS, f"schedule {name!r}" if isinstance(name, str) else "a schedule")
        if not isinstance(name, str) or not name:
            reader.problem(line, "a schedule needs a 'name'")
            continue
        texts = [("name", name), ("cron", cron)] + [("lists", x) for x in (lists if isinstance(lists, list) else [])]
        controlled = [key for key, value in texts if isinstance(value, str) and _CONTROL.search(value)]
        for key in dict.fromkeys(controlled):
            reader.problem(item.line_of(key), f"schedule {name!r}: '{key}' contains a line break or control character; remove it")
        if controlled:
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


def _refuse_password(reader: _Reader, section: LineDict) -> None:
    if "password" in section:
        reader.problem(
            section.line_of("password"),
            "secrets do not belong in the config file: remove 'password' and set 'password_env' "
            "(the name of an environment variable) or 'password_file' instead",
        )


def _read_bounces(reader: _Reader, raw: LineDict) -> BounceSettings | None:
    """The contract's bounce mailbox: known keys, strings and a port; the rest is for bounce reading."""
    section = reader.section(raw, "bounces", _BOUNCES_KEYS, reported=("password",))
    if not isinstance(raw.get("bounces"), LineDict):
        return None
    p = "bounces."
    _refuse_password(reader, section)
    security = reader.text(section, "security", "tls", p)
    return BounceSettings(
        host=reader.text(section, "host", None, p),
        port=reader.number(section, "port", int, 993 if security == "tls" else 143, p, low=1, high=65535, rule=_PORT_RULE),
        security=security,
        username=reader.text(section, "username", None, p),
        password_env=reader.text(section, "password_env", None, p),
        password_file=reader.relative(reader.text(section, "password_file", None, p)),
        auth=reader.text(section, "auth", "password", p),
        token_command=reader.text(section, "token_command", None, p),
        ca_file=reader.relative(reader.text(section, "ca_file", None, p)),
        folder=reader.text(section, "folder", "INBOX", p),
        processed_folder=reader.text(section, "processed_folder", None, p),
    )


def _read_web(reader: _Reader, raw: LineDict) -> WebSettings | None:
    """The contract's editor console: known keys, strings, and a listen address HOST:PORT."""
    section = reader.section(raw, "web", _WEB_KEYS)
    if not isinstance(raw.get("web"), LineDict):
        return None
    listen = reader.text(section, "listen", "127.0.0.1:8025", "web.")
    host, colon, port = listen.rpartition(":")
    if not (colon and host and port.isdigit() and 1 <= int(port) <= 65535):
        reader.problem(section.line_of("listen"), f"'web.listen' must be HOST:PORT with a port from 1 to 65535, not {listen!r}")
        listen = "127.0.0.1:8025"
    return WebSettings(listen=listen, base_url=reader.text(section, "base_url", None, "web."))


def secret_problems(settings: Settings) -> list[Problem]:
    """What the environment lacks for the secrets the config names: a password's environment
    variable or file, an OAuth2 token command. Checks that they can be had; never shows a value.

    Only for what a send would use: the SMTP transport's credentials (a maildir transport
    needs none) and the bounce mailbox's, when configured.
    """
    problems: list[Problem] = []
    if settings.transport.kind == "smtp":
        problems += _credential_problems(settings, "transport", settings.transport)
    if settings.bounces is not None:
        problems += _credential_problems(settings, "bounces", settings.bounces)
    return problems


def _credential_problems(settings: Settings, section: str, creds: TransportSettings | BounceSettings) -> list[Problem]:
    shown = display_path(settings.path)

    def at(key: str, message: str) -> Problem:
        return Problem(shown, settings.line_of.get(f"{section}.{key}", 1), f"{section}.{key} {message}")

    if creds.auth == "xoauth2":
        trouble = _command_problem(creds.token_command) if creds.token_command else None
        return [at("token_command", trouble)] if trouble else []
    if not creds.username:
        return []
    if creds.password_env:
        value = os.environ.get(creds.password_env)
        if value is None:
            return [at("password_env", f"names {creds.password_env}, which is not set in the environment; "
                                       "export it (or use password_file)")]
        if not value:
            return [at("password_env", f"names {creds.password_env}, which is set but empty; "
                                       "export the password in it (or use password_file)")]
        return []
    if creds.password_file:
        message = _file_problem(creds.password_file)
        return [at("password_file", message)] if message else []
    return [at("username", f"is set but no password is: set {section}.password_env (the name of an environment "
                           f"variable) or {section}.password_file")]


def _file_problem(path: Path) -> str | None:
    """Why a password file cannot serve (without revealing its content), or None."""
    shown = display_path(path)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return f"names {shown}, which does not exist; create it (or use password_env)"
    except IsADirectoryError:
        return f"names {shown}, which is a directory; name the file that holds the password"
    except OSError as exc:
        return f"names {shown}, which cannot be read ({exc.strerror}); let the user running dispatch read it (or use password_env)"
    if not content.strip():
        return f"names {shown}, which is empty; put the password in it"
    return None


def _command_problem(command: str) -> str | None:
    """Why a token command's program cannot be run, or None. Only the program is shown:
    the rest of the command line may carry a client secret."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return f"cannot be split into words ({exc}); check its quotes"
    if not argv:
        return "is empty; give the command that prints an access token"
    program = argv[0]
    if "/" in program or (os.altsep is not None and os.altsep in program):
        candidate = Path(program)
        if not candidate.is_file():
            return f"runs {program}, which does not exist; give the full path of the token program"
        if not os.access(candidate, os.X_OK):
            return f"runs {program}, which is not executable; chmod +x it"
        return None
    if shutil.which(program) is None:
        return f"runs {program!r}, which is not found on PATH; install it or give its full path"
    return None
