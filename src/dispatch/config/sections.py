"""The config's sections, one reader each (sender, transport, report, publish, notify,
schedules, bounces; the console's in config_web): each checks its keys, kinds and ranges, with line numbers."""

from __future__ import annotations

import re
from pathlib import Path

from dispatch.config.reader import Reader, is_finite_number, parse_address, sender_domain, shown_number
from dispatch.config.settings import (
    BOUNCES_KEYS,
    CONTROL_CHARACTERS,
    DEFAULT_RETRY_MINUTES,
    FQDN,
    PUBLISH_KEYS,
    REPORT_KEYS,
    SCHEDULE_KEYS,
    SENDER_KEYS,
    STANDING_KEYS,
    TRANSPORT_KEYS,
    BounceSettings,
    PublishSettings,
    ReportSettings,
    Schedule,
    Sender,
    StandingSection,
    TransportSettings,
)
from dispatch.config.yamlsource import LineDict, LineList


def read_sender(reader: Reader, raw: LineDict) -> Sender:
    section = reader.section(raw, "sender", SENDER_KEYS)
    from_value = reader.text(section, "from", "Regional rapport <rapport@example.org>", "sender.")
    parsed = parse_address(reader, section.line_of("from"), "sender.from", from_value) or ("", "rapport@example.org")
    reply_value = reader.text(section, "reply_to", None, "sender.")
    reply_to = None
    if reply_value:
        reply = parse_address(reader, section.line_of("reply_to"), "sender.reply_to", reply_value)
        reply_to = reply_value if reply else None
    return_value = reader.text(section, "return_path", None, "sender.")
    return_path = None
    if return_value:
        bounce_to = parse_address(reader, section.line_of("return_path"), "sender.return_path", return_value)
        return_path = bounce_to[1] if bounce_to else None
    verp = bool(reader.get(section, "verp", bool, False, "sender."))
    return Sender(name=parsed[0], address=parsed[1], reply_to=reply_to, return_path=return_path, verp=verp)


def read_transport(reader: Reader, raw: LineDict) -> TransportSettings:
    section = reader.section(raw, "transport", TRANSPORT_KEYS, reported=("password",))
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
    ehlo = reader.text(section, "ehlo_name", None, p)
    if ehlo is not None and not FQDN.match(ehlo):
        reader.problem(section.line_of("ehlo_name"), "'transport.ehlo_name' must be a fully qualified domain name like "
                       f"mail.example.org, or an address literal like [192.0.2.1], not {ehlo!r}")
        ehlo = None
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
        ehlo_name=ehlo or "",
        ehlo_fallback=sender_domain(raw) if kind == "smtp" else "",
    )


_PORT_RULE = "a port number from 1 to 65535"


def _retry_minutes(reader: Reader, section: LineDict) -> tuple[float, ...]:
    """transport.retry_minutes: a non-empty list of finite waits, each 0 or more."""
    retry = reader.get(section, "retry_minutes", list, list(DEFAULT_RETRY_MINUTES), "transport.")
    rule = "'transport.retry_minutes' must list minutes to wait, each a finite number 0 or more, e.g. [1, 2, 5, 10, 30]"
    if not retry:
        reader.problem(section.line_of("retry_minutes"), f"{rule}; the list is empty")
        return DEFAULT_RETRY_MINUTES
    bad = False
    for index, minutes in enumerate(retry):
        if not (is_finite_number(minutes) and minutes >= 0):
            line = retry.line_of(index) if isinstance(retry, LineList) else section.line_of("retry_minutes")
            reader.problem(line, f"{rule}, not {shown_number(minutes)}")
            bad = True
    return DEFAULT_RETRY_MINUTES if bad else tuple(float(minutes) for minutes in retry)


def read_report(reader: Reader, raw: LineDict) -> ReportSettings:
    section = reader.section(raw, "report", REPORT_KEYS)
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
            reader.check_keys(item, STANDING_KEYS, "a standing section")
        if not isinstance(item, dict) or not isinstance(item.get("heading"), str) or not isinstance(item.get("markdown"), str):
            reader.problem(line, "each standing section needs 'heading' (text) and 'markdown' (text)")
            continue
        urgent = item.get("urgent", False)
        if not isinstance(urgent, (bool, str)):
            reader.problem(line, "a standing section's 'urgent' must be true, false, or the Markdown to show in urgent messages")
            urgent = False
        urgent_markdown = urgent if isinstance(urgent, str) else (item["markdown"] if urgent else None)
        standing.append(StandingSection(heading=item["heading"].strip(), markdown=item["markdown"],
                                        urgent_markdown=urgent_markdown, in_email=_in_email(reader, item, line)))
    return ReportSettings(
        title=title,
        # What changes every day first: an inbox list on a phone cuts the subject after about 35 characters.
        subject=reader.text(section, "subject", "{{ date_short }}: {{ title }}", p),
        # An edition with a 'headline' puts the news in the subject; the sender's name already says "Regional rapport".
        headline_subject=reader.text(section, "headline_subject", "{{ date_short }}: {{ headline }}", p),
        preheader=reader.text(section, "preheader", "{{ compiled_label }}", p, multiline=True),  # whitespace is folded
        list_id=reader.text(section, "list_id", "rapport", p),
        standing_sections=tuple(standing),
    )


def _in_email(reader: Reader, item: dict[str, object], line: int) -> bool:
    """A standing section's ``in_email``: true (the default) or false (on the intranet page only,
    not in the edition's email). Urgent messages go by their own key, ``urgent``: what they carry
    of a section is said there, whatever the daily email does."""
    value = item.get("in_email", True)
    at = item.line_of("in_email") if isinstance(item, LineDict) else line
    if not isinstance(value, bool):
        reader.problem(at, "a standing section's 'in_email' must be true or false (false: on the intranet page only, "
                           f"not in the email), not {value!r}")
        return True
    return value


def read_publish(reader: Reader, raw: LineDict) -> PublishSettings:
    section = reader.section(raw, "publish", PUBLISH_KEYS)
    return PublishSettings(
        dir=reader.relative(reader.text(section, "dir", "var/intranet", "publish.")) or Path("var/intranet"),
        base_url=reader.text(section, "base_url", None, "publish."),
        on_send=bool(reader.get(section, "on_send", bool, False, "publish.")),
    )


def read_notify(reader: Reader, raw: LineDict) -> tuple[str, ...]:
    value = reader.get(raw, "notify", (list, str), [])
    items = [value] if isinstance(value, str) else value
    result = []
    for item in items:
        if not isinstance(item, str) or "@" not in item or CONTROL_CHARACTERS.search(item):
            reader.problem(raw.line_of("notify"), f"'notify' must list email addresses, not {item!r}")
            continue
        result.append(item.strip())
    return tuple(result)


def read_schedules(reader: Reader, raw: LineDict) -> tuple[Schedule, ...]:
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
        reader.check_keys(item, SCHEDULE_KEYS, f"schedule {name!r}" if isinstance(name, str) else "a schedule")
        if not isinstance(name, str) or not name:
            reader.problem(line, "a schedule needs a 'name'")
            continue
        texts = [("name", name), ("cron", cron)] + [("lists", x) for x in (lists if isinstance(lists, list) else [])]
        controlled = [key for key, value in texts if isinstance(value, str) and CONTROL_CHARACTERS.search(value)]
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


def _refuse_password(reader: Reader, section: LineDict) -> None:
    if "password" in section:
        reader.problem(
            section.line_of("password"),
            "secrets do not belong in the config file: remove 'password' and set 'password_env' "
            "(the name of an environment variable) or 'password_file' instead",
        )


def read_bounces(reader: Reader, raw: LineDict) -> BounceSettings | None:
    """The contract's bounce mailbox: known keys, strings and a port; the rest is for bounce reading."""
    section = reader.section(raw, "bounces", BOUNCES_KEYS, reported=("password",))
    if not isinstance(raw.get("bounces"), LineDict):
        return None
    p = "bounces."
    _refuse_password(reader, section)
    security = reader.text(section, "security", "tls", p)
    if security not in ("tls", "starttls"):
        reader.problem(section.line_of("security"), f"'bounces.security' must be tls or starttls, not {security!r}: "
                                                    "the mailbox password must not cross the network unencrypted")
    auth = reader.text(section, "auth", "password", p)
    if auth not in ("password", "xoauth2"):
        reader.problem(section.line_of("auth"), f"'bounces.auth' must be password or xoauth2, not {auth!r}")
    if "host" not in section:
        reader.problem(section.line or 1, "'bounces' needs 'host' (the IMAP server of the bounce mailbox)")
    folder = reader.text(section, "folder", "INBOX", p)
    quarantine = reader.text(section, "quarantine_folder", "Quarantine", p)
    if quarantine.strip().upper() == folder.strip().upper() and "quarantine_folder" in section:
        reader.problem(section.line_of("quarantine_folder"), f"'bounces.quarantine_folder' must differ from 'bounces.folder' "
                                                             f"({folder!r}): what is quarantined would be read again")
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
        folder=folder,
        processed_folder=reader.text(section, "processed_folder", None, p),
        quarantine_folder=quarantine,
        max_message_bytes=reader.number(section, "max_message_bytes", int, 1_000_000, p, low=10_000, high=50_000_000,
                                        rule="a whole number of bytes from 10000 to 50000000"),
        interval_minutes=float(reader.number(section, "interval_minutes", (int, float), 15.0, p, low=1, high=1440,
                                             rule="minutes from 1 to 1440")),
    )
