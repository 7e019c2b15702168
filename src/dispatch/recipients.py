"""Recipient list files -> folded, validated recipients (pure apart from reading the files).

One person gets one message: addresses are folded (trimmed, Unicode NFC, local part
case-folded, domain lower-cased and IDNA-encoded) and the first display name seen is
kept. An invalid entry never blocks the report: it is reported with ``path:line`` and
the caller records it as failed while everyone valid still gets the report.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from email_validator import EmailNotValidError, validate_email

from dispatch.errors import InputError, Problem, display_path
from dispatch.models import Recipient
from dispatch.yamlsource import LineDict, LineList, load_yaml_file

SUPPRESSION_FILE = "suppressed.txt"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# The everyday case (ASCII dot-atom local part) is checked here; anything else goes
# to email-validator. Validating 100,000 HR rows one by one with it takes seconds.
_SIMPLE_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


@dataclass(frozen=True)
class Entry:
    """One row of a list file, before folding."""

    email: str
    name: str
    source: Problem  # path and line; message unused


@dataclass(frozen=True)
class Invalid:
    """An entry that cannot be sent to, with the reason."""

    email: str
    name: str
    problem: Problem


@dataclass
class ListView:
    name: str
    display_name: str
    path: str
    members: list[str] = field(default_factory=list)  # folded keys, in order
    suppressed: int = 0


@dataclass
class Resolution:
    """Recipients of one dispatch: everyone valid once, plus what was wrong."""

    recipients: dict[str, Recipient] = field(default_factory=dict)  # key -> recipient, first seen wins
    lists: dict[str, ListView] = field(default_factory=dict)
    invalid: list[Invalid] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    suppressed: set[str] = field(default_factory=set)

    def overlaps(self) -> dict[tuple[str, str], int]:
        """How many people each pair of lists shares."""
        names = list(self.lists)
        sets = {n: set(self.lists[n].members) for n in names}
        result = {}
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                shared = len(sets[a] & sets[b])
                if shared:
                    result[(a, b)] = shared
        return result


class AddressError(ValueError):
    pass


@lru_cache(maxsize=4096)
def _domain(domain: str) -> str:
    """The ASCII (IDNA) form of a domain, or AddressError."""
    try:
        return validate_email(f"x@{domain}", check_deliverability=False).ascii_domain  # type: ignore[no-any-return]
    except EmailNotValidError as exc:
        raise AddressError(str(exc)) from None


def normalise(raw: str) -> tuple[str, str]:
    """(address to send to, folded key) or AddressError."""
    address = unicodedata.normalize("NFC", raw.strip())
    if _CONTROL.search(address):
        raise AddressError("the address contains a control character or line break")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise AddressError("an address needs one '@' with text on both sides")
    if local.isascii() and len(local) <= 64 and _SIMPLE_LOCAL.fullmatch(local):
        ascii_domain = _domain(domain)
    else:
        try:
            checked = validate_email(address, check_deliverability=False)
        except EmailNotValidError as exc:
            raise AddressError(str(exc)) from None
        local, ascii_domain = checked.local_part, checked.ascii_domain
    sendable = f"{local}@{ascii_domain}"
    return sendable, f"{local.casefold()}@{ascii_domain.lower()}"


def available_lists(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.iterdir() if p.suffix in (".yaml", ".yml", ".csv"))


def list_path(directory: Path, name: str) -> Path | None:
    for suffix in (".yaml", ".yml", ".csv"):
        candidate = directory / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def load_suppressed(directory: Path) -> tuple[set[str], list[Problem]]:
    path = directory / SUPPRESSION_FILE
    keys: set[str] = set()
    problems: list[Problem] = []
    if not path.is_file():
        return keys, problems
    shown = display_path(path)
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                keys.add(normalise(text)[1])
            except AddressError as exc:
                problems.append(Problem(shown, number, f"suppressed address {text!r} is not valid: {exc}"))
    return keys, problems


def resolve(directory: Path, names: list[str] | tuple[str, ...], extra_problems_line: dict[str, Problem] | None = None) -> Resolution:
    """Load the named lists (and what they include), fold, suppress and validate.

    Raises InputError only for problems that make a list unusable (missing file,
    include cycle, unreadable file). Invalid entries are returned, not raised.
    """
    result = Resolution()
    result.suppressed, result.problems = load_suppressed(directory)
    fatal: list[Problem] = []
    for name in names:
        _load_list(directory, name, result, fatal, stack=[], referrer=(extra_problems_line or {}).get(name))
    if fatal:
        raise InputError(fatal)
    return result


def _load_list(directory: Path, name: str, result: Resolution, fatal: list[Problem], stack: list[tuple[str, str]], referrer: Problem | None) -> list[str]:
    """Load one list into ``result``; returns its folded member keys (includes expanded)."""
    if name in result.lists:
        return result.lists[name].members
    path = list_path(directory, name)
    if path is None:
        known = ", ".join(available_lists(directory)) or "none"
        where = referrer or Problem(display_path(directory), 1, "")
        fatal.append(Problem(where.path, where.line, f"unknown recipient list {name!r}; known lists: {known}"))
        return []
    shown = display_path(path)
    if any(n == name for n, _ in stack):
        cycle = [p for _, p in stack[[n for n, _ in stack].index(name):]] + [shown]
        where = referrer or Problem(shown, 1, "")
        fatal.append(Problem(where.path, where.line, f"include cycle: {' -> '.join(cycle)}; remove one of these includes"))
        return []
    view = ListView(name=name, display_name=name, path=shown)
    members: list[str] = []
    seen_here: set[str] = set()

    def add(entry: Entry) -> None:
        problem = _check_text(entry)
        if problem is not None:
            result.invalid.append(Invalid(entry.email, "", problem))
            result.problems.append(problem)
            return
        try:
            address, key = normalise(entry.email)
        except AddressError as exc:
            bad = Problem(entry.source.path, entry.source.line, f"invalid address {entry.email.strip()!r}: {exc}")
            result.invalid.append(Invalid(entry.email.strip(), entry.name, bad))
            result.problems.append(bad)
            return
        if key in result.suppressed:
            view.suppressed += 1
            return
        if key not in seen_here:
            seen_here.add(key)
            members.append(key)
        if key not in result.recipients:
            result.recipients[key] = Recipient(
                address=address, name=" ".join(entry.name.split()), key=key,
                source=f"{entry.source.path}:{entry.source.line}",
            )

    try:
        if path.suffix == ".csv":
            for entry in _csv_entries(path, shown, fatal):
                add(entry)
        else:
            includes = _yaml_entries(path, shown, fatal, add, view)
            for include_name, line in includes:
                for key in _load_list(directory, include_name, result, fatal, stack + [(name, shown)], Problem(shown, line, "")):
                    if key not in seen_here:
                        seen_here.add(key)
                        members.append(key)
    except InputError as exc:
        fatal.extend(exc.problems)
    except UnicodeDecodeError:
        fatal.append(Problem(shown, 1, "the file is not UTF-8; export it as 'CSV UTF-8'"))
    view.members = members
    result.lists[name] = view
    return members


def _check_text(entry: Entry) -> Problem | None:
    for what, value in (("address", entry.email), ("name", entry.name)):
        if _CONTROL.search(value):
            return Problem(entry.source.path, entry.source.line, f"the {what} contains a line break or control character; remove it (this could inject a header)")
    return None


def _csv_entries(path: Path, shown: str, fatal: list[Problem]) -> Iterator[Entry]:
    """Rows streamed from a CSV file; comma or semicolon separated, with or without BOM."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        header_line = handle.readline()
        delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
        header = [h.strip().lower() for h in next(csv.reader([header_line], delimiter=delimiter), [])]
        if "email" not in header:
            fatal.append(Problem(shown, 1, "the first row must be a header with an 'email' column (and optionally 'name')"))
            return
        email_at = header.index("email")
        name_at = header.index("name") if "name" in header else None
        reader = csv.reader(handle, delimiter=delimiter)
        for row in reader:
            line = reader.line_num + 1  # +1 for the header read separately
            if not row or not any(cell.strip() for cell in row):
                continue
            email = row[email_at] if email_at < len(row) else ""
            name = row[name_at] if name_at is not None and name_at < len(row) else ""
            yield Entry(email=email, name=name.strip(), source=Problem(shown, line, ""))


def _yaml_entries(path: Path, shown: str, fatal: list[Problem], add: object, view: ListView) -> list[tuple[str, int]]:
    data = load_yaml_file(path)
    if not isinstance(data, LineDict):
        fatal.append(Problem(shown, 1, "a YAML list needs 'name' and 'members' (and optionally 'include')"))
        return []
    if isinstance(data.get("name"), str):
        view.display_name = data["name"]
    members = data.get("members") or []
    if not isinstance(members, LineList):
        fatal.append(Problem(shown, data.line_of("members"), "'members' must be a list of {email, name}"))
        members = LineList()
        members.item_lines = []
    for index, item in enumerate(members):
        line = members.line_of(index)
        if isinstance(item, str):
            item = {"email": item}
        if not isinstance(item, dict) or not isinstance(item.get("email"), str):
            fatal.append(Problem(shown, line, "each member needs an 'email' (and optionally a 'name')"))
            continue
        name = item.get("name") or ""
        add(Entry(email=item["email"], name=str(name), source=Problem(shown, line, "")))  # type: ignore[operator]
    includes = data.get("include") or []
    if isinstance(includes, str):
        includes = [includes]
    result = []
    for index, include in enumerate(includes):
        line = includes.line_of(index) if isinstance(includes, LineList) else data.line_of("include")
        if not isinstance(include, str):
            fatal.append(Problem(shown, line, "'include' must list other recipient list names"))
            continue
        result.append((include, line))
    return result
