"""Recipient list files -> folded, validated recipients (pure apart from reading the files).

One person gets one message: addresses are folded (trimmed, Unicode NFC, local part
compared case-insensitively, domain lower-cased and IDNA-encoded) and the first display
name seen is kept. An invalid entry never blocks the report: it is reported with
``path:line`` and the caller records it as failed while everyone valid still gets it.

CSV files are streamed row by row, so a 100,000-row HR export costs memory for the
folded address set only, not for the file (see bench/recipients.py).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dispatch.config.yamlsource import (
    LIST_MAX_BYTES,
    MB,
    YAML_LIST_MAX_BYTES,
    LineDict,
    LineList,
    load_yaml_file,
    open_input,
    shorten,
)
from dispatch.errors import InputError, Problem, display_path
from dispatch.models import Recipient

# AddressError and normalise are re-exported: callers resolve lists and single addresses here.
from dispatch.recipients.addresses import CONTROL_CHARACTERS, escape_controls, fold_trimmed
from dispatch.recipients.addresses import AddressError as AddressError
from dispatch.recipients.addresses import normalise as normalise
from dispatch.recipients.directory import DEFAULT_ATTRIBUTES, DirectoryListSpec, DirectoryPerson

SUPPRESSION_FILE = "suppressed.txt"
LIST_SUFFIXES = (".yaml", ".yml", ".csv")
# '#' is legal inside an address, so only a '#' at the start or after whitespace is a comment.
_COMMENT = re.compile(r"(?:^|\s)#.*")
_LIST_NAME = re.compile(r"[^/\\\x00]+")
# The keys of a directory list file (recipients/NAME.yaml with source: DIRECTORY).
DIRECTORY_LIST_KEYS = ("source", "name", "group", "filter", "attributes", "max_shrink", "include")
DIRECTORY_FIELDS = ("mail", "name")  # what `attributes` maps to the directory's attribute names


@dataclass(frozen=True)
class Invalid:
    """An entry that cannot be sent to, with the reason (recorded as a failed ledger row)."""

    email: str  # as written, control characters escaped so it is safe to store and show
    name: str
    problem: Problem


@dataclass
class ListView:
    """One list as resolved: what ``dispatch recipients`` shows."""

    name: str
    display_name: str
    path: str
    members: list[str] = field(default_factory=list)  # folded keys, includes expanded, in order
    suppressed: set[str] = field(default_factory=set)  # folded keys removed by suppressed.txt
    includes: list[str] = field(default_factory=list)
    invalid: int = 0  # invalid entries in this file itself
    source: str | None = None  # a directory list: the directory's name under directories: in config


@dataclass
class Resolution:
    """Recipients of one dispatch: everyone valid once, plus what was wrong."""

    recipients: dict[str, Recipient] = field(default_factory=dict)  # key -> recipient, first seen wins
    lists: dict[str, ListView] = field(default_factory=dict)
    invalid: list[Invalid] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    suppressed: set[str] = field(default_factory=set)
    specs: dict[str, DirectoryListSpec] = field(default_factory=dict)  # the directory lists met, by list name

    def overlaps(self, names: list[str] | tuple[str, ...] | None = None) -> dict[tuple[str, str], int]:
        """How many people each pair of lists shares (only pairs that share someone)."""
        names = [n for n in (names if names is not None else self.lists) if n in self.lists]
        sets = {n: set(self.lists[n].members) for n in names}
        result = {}
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                shared = len(sets[a] & sets[b])
                if shared:
                    result[(a, b)] = shared
        return result


Where = tuple[str, int]  # (path as shown, line): where a list's name was written


def unknown_list(path: str, line: int, name: str, known: list[str] | tuple[str, ...]) -> Problem:
    """A list name that names no list file, and the lists there are."""
    if not known:
        return Problem.of(path, line, "recipients.unknown_list_none_known", name=repr(name))
    return Problem.of(path, line, "recipients.unknown_list", name=repr(name), known=", ".join(known))


def available_lists(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted({p.stem for p in directory.iterdir() if p.suffix in LIST_SUFFIXES})


def list_path(directory: Path, name: str) -> Path | None:
    if not _LIST_NAME.fullmatch(name) or name.startswith("."):
        return None  # a list name is a file name in the directory, never a path out of it
    for suffix in LIST_SUFFIXES:
        candidate = directory / f"{name}{suffix}"
        # lexists, not is_file: a symbolic link, FIFO or device under a list's name is
        # found here and refused by name when it is read, not taken for a missing list.
        if os.path.lexists(candidate):
            return candidate
    return None


def load_suppressed(directory: Path) -> tuple[set[str], list[Problem]]:
    """Folded keys from ``suppressed.txt`` (one address a line, ``#`` comments).

    Raises InputError if the file is there but cannot be used (a symbolic link, FIFO or
    device, too large, unreadable): sending without the suppressions it holds would
    mail people who asked not to be mailed."""
    path = directory / SUPPRESSION_FILE
    keys: set[str] = set()
    problems: list[Problem] = []
    if not os.path.lexists(path):
        return keys, problems
    shown = display_path(path)
    try:
        with _open_list(path, LIST_MAX_BYTES, "the suppression list",
                        "check that this is the right file (50 MB is about a million addresses)") as handle:
            for number, line in enumerate(handle, start=1):
                text = _COMMENT.sub("", line.rstrip("\r\n")).strip()
                if not text:
                    continue
                try:
                    keys.add(normalise(text)[1])
                except AddressError as exc:
                    problems.append(Problem.of(shown, number, "recipients.bad_suppressed_address",
                                               address=repr(shorten(text)), detail=exc.fact))
    except UnicodeDecodeError:
        problems.append(Problem.of(shown, 1, "recipients.suppressed_not_utf8"))
    except FileNotFoundError:
        pass  # removed since lexists(): nothing is suppressed, as if it had never been there
    except OSError as exc:
        raise InputError([Problem.of(shown, 1, "file.unreadable", detail=str(exc.strerror or exc))]) from None
    return keys, problems


def _open_list(path: Path, limit: int, what: str, advice: str) -> io.TextIOWrapper:
    """A list file opened as text, if it is a regular file within ``limit`` (else InputError)."""
    return io.TextIOWrapper(
        open_input(path, limit=limit, what=what, advice=advice, follow_links=False),
        encoding="utf-8-sig", newline="",
    )


@dataclass(frozen=True)
class Directories:
    """What the caller knows of directory lists: the directories config.yaml names (name -> kind,
    ``ldap`` or ``graph``), and the people of each directory list as its accepted snapshot has
    them (list name -> people). A directory list without people here has no snapshot yet.
    ``people`` None: the caller did not look at snapshots (a check that the list files can be
    read, as a reload does): directory lists are read as files, without members or that problem."""

    kinds: Mapping[str, str] = field(default_factory=dict)
    people: Mapping[str, Sequence[DirectoryPerson]] | None = field(default_factory=dict)


def resolve(directory: Path, names: list[str] | tuple[str, ...], referrers: dict[str, Where] | None = None,
            directories: Directories | None = None) -> Resolution:
    """Load the named lists (and what they include), fold, suppress and validate.

    Raises InputError only for problems that make a list unusable (missing file,
    include cycle, unreadable file, a directory list without a snapshot). Invalid entries
    are returned, not raised. ``referrers`` says where a requested name was written, for
    'unknown list' messages. A directory list (``source: DIRECTORY``) takes its people from
    ``directories.people`` and is folded, validated and suppressed like any list.
    """
    result = Resolution()
    result.suppressed, result.problems = load_suppressed(directory)
    fatal: list[Problem] = []
    known = directories or Directories()
    for name in names:
        _load_list(directory, name, result, fatal, stack=[], referrer=(referrers or {}).get(name), directories=known)
    if fatal:
        raise InputError(fatal)
    return result


def _load_list(directory: Path, name: str, result: Resolution, fatal: list[Problem],
               stack: list[tuple[str, str]], referrer: Where | None, directories: Directories) -> ListView | None:
    """Load one list into ``result`` (once, however often it is included)."""
    if name in result.lists:
        return result.lists[name]
    path = list_path(directory, name)
    if path is None:
        path_shown, line = referrer or (display_path(directory), 0)
        fatal.append(unknown_list(path_shown, line, name, available_lists(directory)))
        return None
    shown = display_path(path)
    names_on_stack = [n for n, _ in stack]
    if name in names_on_stack:
        cycle = [p for _, p in stack[names_on_stack.index(name):]] + [shown]
        path_shown, line = referrer or (shown, 1)
        fatal.append(Problem.of(path_shown, line, "recipients.include_cycle", cycle=" -> ".join(cycle)))
        return None
    view = ListView(name=name, display_name=name, path=shown)
    members = view.members
    seen_here: set[str] = set()
    recipients = result.recipients
    suppressed = result.suppressed
    control = CONTROL_CHARACTERS.search

    def add(email: str, name: str, line: int, origin: str = "") -> None:
        # Hot loop for large CSV files: no per-row objects unless the row is kept.
        # Surrounding whitespace is trimmed first; a line break left inside is rejected.
        email, name = email.strip(), name.strip()
        if control(email) or control(name):
            what = "recipients.control_character_in_address" if control(email) else "recipients.control_character_in_name"
            _invalid(result, view, email, "", Problem.of(shown, line, what))
            return
        try:
            address, key = fold_trimmed(email)
        except AddressError as exc:
            _invalid(result, view, email, name, Problem.of(shown, line, "recipients.invalid_address",
                                                          address=repr(shorten(email)), detail=exc.fact))
            return
        if key in suppressed:
            view.suppressed.add(key)
            return
        if key not in seen_here:
            seen_here.add(key)
            members.append(key)
        known = recipients.get(key)
        if known is None:
            where = f"{shown}:{line} {origin}" if origin else f"{shown}:{line}"  # origin: a directory entry's DN
            recipients[key] = Recipient(address=address, name=" ".join(name.split()), key=key, source=where)
        elif not known.name and name:
            # The first display name seen wins; an entry without one has not shown one yet.
            recipients[key] = Recipient(address=known.address, name=" ".join(name.split()), key=key, source=known.source)

    try:
        if path.suffix == ".csv":
            for email, member_name, line in _csv_rows(path, shown, fatal):
                add(email, member_name, line, "")
        else:
            for include_name, line in _yaml_entries(path, shown, fatal, add, view, result, directories):
                view.includes.append(include_name)
                included = _load_list(directory, include_name, result, fatal, [*stack, (name, shown)], (shown, line),
                                      directories)
                if included is None:
                    continue
                view.suppressed |= included.suppressed
                for key in included.members:
                    if key not in seen_here:
                        seen_here.add(key)
                        members.append(key)
    except InputError as exc:
        fatal.extend(exc.problems)
    except UnicodeDecodeError:
        fatal.append(Problem.of(shown, 1, "recipients.not_utf8"))
    except FileNotFoundError:
        fatal.append(Problem.of(shown, 1, "recipients.removed_while_read"))
    except OSError as exc:
        fatal.append(Problem.of(shown, 1, "file.unreadable", detail=str(exc.strerror or exc)))
    result.lists[name] = view
    return view


def _invalid(result: Resolution, view: ListView, email: str, name: str, problem: Problem) -> None:
    result.invalid.append(Invalid(escape_controls(email)[:320], escape_controls(name), problem))
    result.problems.append(problem)
    view.invalid += 1


def _pick_delimiter(header_line: str) -> tuple[str, list[str]]:
    """Comma or semicolon (Swedish Excel): the one whose header has an 'email' column."""
    parsed = {}
    for delimiter in (";", ","):
        row = next(csv.reader([header_line], delimiter=delimiter), [])
        parsed[delimiter] = [cell.strip().lower() for cell in row]
        if "email" in parsed[delimiter]:
            return delimiter, parsed[delimiter]
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    return delimiter, parsed[delimiter]


def _csv_rows(path: Path, shown: str, fatal: list[Problem]) -> Iterator[tuple[str, str, int]]:
    """(email, name, line) streamed from a CSV file; comma or semicolon, with or without BOM.

    ``line`` is where the record starts, also when a quoted field spans lines."""
    advice = "split it into several lists (a YAML list can include them all)"
    with _open_list(path, LIST_MAX_BYTES, "a recipient list", advice) as handle:
        header_line = handle.readline()
        delimiter, header = _pick_delimiter(header_line)
        if "email" not in header:
            found = shorten(header_line.strip())
            fatal.append(Problem.of(shown, 1, "recipients.no_email_column", found=repr(found)))
            return
        email_at = header.index("email")
        name_at = header.index("name") if "name" in header else -1
        reader = csv.reader(handle, delimiter=delimiter)
        consumed = 0  # physical lines after the header read so far
        try:
            for row in reader:
                line = consumed + 2  # 1-based, plus the header line
                consumed = reader.line_num
                if not row:
                    continue
                email = row[email_at] if email_at < len(row) else ""
                name = row[name_at] if 0 <= name_at < len(row) else ""
                if not email.strip() and not name.strip() and not any(cell.strip() for cell in row):
                    continue  # Excel's trailing ';;;' rows
                yield email, name, line
        except csv.Error as exc:
            fatal.append(Problem.of(shown, consumed + 2, "recipients.bad_csv_row", detail=str(exc)))


def _yaml_entries(path: Path, shown: str, fatal: list[Problem], add: Callable[[str, str, int, str], None],
                  view: ListView, result: Resolution, directories: Directories) -> list[tuple[str, int]]:
    """Feed the members to ``add``; return the includes as (list name, line)."""
    data = load_yaml_file(
        path, limit=YAML_LIST_MAX_BYTES, what="a YAML recipient list", follow_links=False,
        advice=f"save a list this large as CSV (read row by row, up to {LIST_MAX_BYTES // MB} MB)",
    )
    if not isinstance(data, LineDict):
        fatal.append(Problem.of(shown, 1, "recipients.yaml_not_a_list"))
        return []
    title = data.get("name")
    if isinstance(title, str) and title.strip():
        if CONTROL_CHARACTERS.search(title):
            # The list name can become the To header of a Bcc batch.
            result.problems.append(Problem.of(shown, data.line_of("name"), "recipients.control_character_in_list_name"))
        else:
            view.display_name = " ".join(title.split())
    if "source" in data:
        _directory_members(data, shown, fatal, add, view, result, directories)
    members = data.get("members")
    if members is None:
        members = LineList()
        members.item_lines = []
    if not isinstance(members, LineList):
        fatal.append(Problem.of(shown, data.line_of("members"), "recipients.bad_members"))
        members = LineList()
        members.item_lines = []
    for index, item in enumerate(members):
        line = members.line_of(index)
        if isinstance(item, str):
            item = {"email": item}
        if not isinstance(item, dict):
            _invalid(result, view, str(item), "", Problem.of(shown, line, "recipients.member_not_a_mapping"))
            continue
        email, name = item.get("email"), item.get("name")
        if not isinstance(email, str):
            # One bad member is an invalid entry like any other: it must not stop the report.
            _invalid(result, view, "" if email is None else str(email), "", Problem.of(shown, line, "recipients.member_without_email"))
            continue
        add(email, "" if name is None else str(name), line, "")
    includes = data.get("include") or []
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list):
        fatal.append(Problem.of(shown, data.line_of("include"), "recipients.bad_include"))
        return []
    found = []
    for index, include in enumerate(includes):
        line = includes.line_of(index) if isinstance(includes, LineList) else data.line_of("include")
        if not isinstance(include, str):
            fatal.append(Problem.of(shown, line, "recipients.bad_include"))
            continue
        found.append((include, line))
    return found


def _directory_members(data: LineDict, shown: str, fatal: list[Problem], add: Callable[[str, str, int, str], None],
                       view: ListView, result: Resolution, directories: Directories) -> None:
    """A directory list's people, from its snapshot as the caller gave it, fed to ``add`` like
    any list's members (each with the entry it came from)."""
    spec, problems = directory_list_spec(data, view.name, shown, directories.kinds)
    fatal.extend(problems)
    if spec is None:
        return
    result.specs[view.name] = spec
    view.source = spec.directory
    if directories.people is None:
        return
    people = directories.people.get(view.name)
    line = data.line_of("source")
    if people is None:
        fatal.append(Problem.of(shown, line, "recipients.directory_not_synced", list=view.name, directory=spec.directory))
        return
    for person in people:
        add(person.mail, person.name, line, person.source)


def read_directory_list(directory: Path, name: str, kinds: Mapping[str, str]) -> DirectoryListSpec | None:
    """The directory list NAME as its file asks for it (None: a list kept by hand, or no such
    list). Raises InputError (file:line) when the file cannot be read or its settings are wrong."""
    path = list_path(directory, name)
    if path is None or path.suffix == ".csv":
        return None
    shown = display_path(path)
    try:
        data = load_yaml_file(path, limit=YAML_LIST_MAX_BYTES, what="a YAML recipient list", follow_links=False,
                              advice=f"save a list this large as CSV (read row by row, up to {LIST_MAX_BYTES // MB} MB)")
    except UnicodeDecodeError:
        raise InputError([Problem.of(shown, 1, "recipients.not_utf8")]) from None
    except OSError as exc:
        raise InputError([Problem.of(shown, 1, "file.unreadable", detail=str(exc.strerror or exc))]) from None
    if not isinstance(data, LineDict) or "source" not in data:
        return None
    spec, problems = directory_list_spec(data, name, shown, kinds)
    if problems or spec is None:
        raise InputError(problems)
    return spec


def directory_list_spec(data: LineDict, name: str, shown: str,
                        kinds: Mapping[str, str]) -> tuple[DirectoryListSpec | None, list[Problem]]:
    """A list file with ``source:`` checked: a known directory, ``group`` or ``filter`` (one),
    ``attributes``, ``max_shrink`` and ``include``; every problem with its line."""
    problems: list[Problem] = []

    def problem(at: str, code: str, **params: str | int | float) -> None:
        problems.append(Problem.of(shown, data.line_of(at), code, **params))

    for key in data:
        if key == "members":
            problem(key, "recipients.directory_members_too")
        elif key not in DIRECTORY_LIST_KEYS:
            problem(key, "recipients.directory_unknown_key", key=repr(str(key)), known=", ".join(DIRECTORY_LIST_KEYS))
    source = data.get("source")
    kind = None
    if not isinstance(source, str) or not source.strip():
        problem("source", "recipients.directory_source_not_text")
    elif source not in kinds:
        if kinds:
            problem("source", "recipients.directory_unknown", directory=repr(source), known=", ".join(sorted(kinds)))
        else:
            problem("source", "recipients.directory_none_configured", directory=repr(source))
    else:
        kind = kinds[source]
    texts: dict[str, str] = {}
    for key in ("group", "filter"):
        value = data.get(key)
        if key not in data:
            continue
        if not isinstance(value, str) or not value.strip() or CONTROL_CHARACTERS.search(value):
            problem(key, "recipients.directory_not_text", key=key)
        else:
            texts[key] = value.strip()
    if "group" in data and "filter" in data:
        problem("filter", "recipients.directory_group_and_filter")
    elif "group" not in data and "filter" not in data:
        problem("source", "recipients.directory_needs_group")
    query = texts.get("filter")
    if query is not None:
        if kind == "graph":
            problem("filter", "recipients.directory_filter_needs_ldap", directory=str(source))
        elif not _balanced(query):
            problem("filter", "recipients.directory_bad_filter", filter=repr(shorten(query)))
    attributes = _attributes(data, problem)
    max_shrink = data.get("max_shrink", 0.1)
    if isinstance(max_shrink, bool) or not isinstance(max_shrink, (int, float)) or not math.isfinite(max_shrink) \
            or not 0 <= max_shrink <= 1:
        problem("max_shrink", "recipients.directory_bad_max_shrink", value=repr(max_shrink))
        max_shrink = 0.1
    includes = data.get("include") or []
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(item, str) for item in includes):
        problem("include", "recipients.bad_include")
        includes = []
    title = data.get("name")
    display_name = " ".join(title.split()) if isinstance(title, str) and title.strip() else name
    if problems or not isinstance(source, str):
        return None, problems
    return DirectoryListSpec(name=name, display_name=display_name, path=shown, directory=source,
                             group=texts.get("group"), query=query, attributes=attributes,
                             max_shrink=float(max_shrink), include=tuple(includes)), problems


def _attributes(data: LineDict, problem: Callable[..., None]) -> Mapping[str, str]:
    """``attributes``: our fields (mail, name) -> the directory's attribute names, over the defaults."""
    value = data.get("attributes")
    if value is None:
        return DEFAULT_ATTRIBUTES
    if not isinstance(value, dict):
        problem("attributes", "recipients.directory_bad_attributes")
        return DEFAULT_ATTRIBUTES
    mapping = dict(DEFAULT_ATTRIBUTES)
    for field_name, attribute in value.items():
        if field_name not in DIRECTORY_FIELDS or not isinstance(attribute, str) \
                or not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*(;[A-Za-z0-9-]+)*", attribute.strip()):
            problem("attributes", "recipients.directory_bad_attributes")
            return DEFAULT_ATTRIBUTES
        mapping[field_name] = attribute.strip()
    return mapping


def _balanced(query: str) -> bool:
    """An LDAP filter's parentheses pair up (escaped ones are written \\28 and \\29, so any
    parenthesis counts), and a filter in parentheses is one whole term."""
    depth = 0
    for character in query:
        depth += {"(": 1, ")": -1}.get(character, 0)
        if depth < 0:
            return False
    return depth == 0 and "=" in query
