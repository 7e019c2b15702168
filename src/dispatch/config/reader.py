"""Reading one config file: every problem collected with its line, values checked by kind."""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Sequence
from email.headerregistry import Address
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from dispatch.config.settings import CONTROL_CHARACTERS, FQDN
from dispatch.config.yamlsource import LineDict
from dispatch.errors import Problem, display_path


class Reader:
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
        if not (is_finite_number(value) and (low is None or value >= low) and (high is None or value <= high)
                and (above is None or value > above)):
            self.problem(parent.line_of(key), f"'{prefix}{key}' must be {rule}, not {shown_number(value)}")
            return default
        return value

    def text(self, parent: LineDict, key: str, default: str | None, prefix: str = "", multiline: bool = False) -> Any:
        """A string; line breaks (unless ``multiline``) and other control characters are problems,
        since these values end up in headers, logs and file names."""
        value = self.get(parent, key, str, default, prefix)
        if isinstance(value, str):
            if not multiline and ("\n" in value or "\r" in value):
                self.problem(parent.line_of(key), f"'{prefix}{key}' contains a line break; keep it on one line")
            elif CONTROL_CHARACTERS.search(value.replace("\n", "") if multiline else value):
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


def is_finite_number(value: Any) -> bool:
    """A real number (not a bool) that is neither infinite, NaN, nor too large for a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def shown_number(value: Any) -> str:
    """A number as YAML spells it, so '.inf' in the file is '.inf' in the message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    return repr(value)


def parse_address(reader: Reader, line: int, key: str, value: str) -> tuple[str, str] | None:
    if CONTROL_CHARACTERS.search(value):
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


def read_ledger_url(reader: Reader, value: str, line: int) -> str:
    if value.startswith("sqlite:"):
        _sqlite_options(reader, value, line)
    if value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
        relative = value[len("sqlite:///"):]
        if relative and relative != ":memory:":
            return "sqlite:///" + str(reader.relative(relative))
        return value
    if value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
        return value
    reader.problem(line, f"'ledger' must be sqlite:///PATH or postgresql://HOST/DB, not {value!r}")
    return "sqlite:///:memory:"


def _sqlite_options(reader: Reader, value: str, line: int) -> None:
    """A SQLite ledger takes one option, ``?timeout=SECONDS``: how long a write waits for a lock
    another program holds before the send stops (and says so)."""
    _, _, query = value.partition("?")
    for option in filter(None, query.split("&")):
        name, _, number = option.partition("=")
        if name != "timeout":
            reader.problem(line, f"'ledger': unknown SQLite option {name!r}; the one option is ?timeout=SECONDS")
            continue
        try:
            seconds = float(number)
        except ValueError:
            seconds = -1.0
        if not 0 < seconds <= 3600:
            reader.problem(line, f"'ledger': ?timeout= takes seconds between 0 and 3600, not {number!r}")


def sender_domain(raw: LineDict) -> str:
    """The domain of sender.from as written (the sender reader checks and reports it)."""
    sender = raw.get("sender")
    value = sender.get("from") if isinstance(sender, dict) else None
    address = parseaddr(value)[1] if isinstance(value, str) else ""
    domain = address.rpartition("@")[2].strip()
    return domain if FQDN.match(domain) else "example.org"
