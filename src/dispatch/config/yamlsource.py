"""YAML that remembers where each value came from, so errors can say ``file:line``;
and the one way dispatch opens an input file (edition, config, recipient list), so that
every such file is bounded in size and is the regular file it claims to be."""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from dispatch.errors import InputError, Problem, display_path

MB = 1024 * 1024
# Input size limits, checked with stat() before a byte is read, so a wrong or hostile
# file costs neither memory nor time. Real files are far smaller: an edition ~10 KB,
# the config ~3 KB, a 100,000-row HR export as CSV ~4-6 MB.
EDITION_MAX_BYTES = 1 * MB  # also an urgent message file (send --urgent --file)
CONFIG_MAX_BYTES = 1 * MB
LIST_MAX_BYTES = 50 * MB  # a CSV list or suppressed.txt: streamed row by row
# A YAML list is parsed whole by PyYAML's pure-Python loader, ~3 s and ~70 MB of memory
# per MB of YAML: 50 MB would take minutes and gigabytes. 100,000 members are ~6.5 MB.
YAML_LIST_MAX_BYTES = 10 * MB
# No file of ours needs more than a few levels; PyYAML composes recursively, so a
# '[[[[...' thousands deep would end in a RecursionError instead of a path:line.
YAML_MAX_DEPTH = 50

ANCHORS_NOT_ALLOWED = "YAML anchors and aliases (& and *) are not allowed; write the value out"


class LineDict(dict):  # type: ignore[type-arg]
    """A mapping that knows the line of itself and of each of its keys (1-based)."""

    line: int = 1
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):  # type: ignore[type-arg]
    """A sequence that knows the line of itself and of each item (1-based)."""

    line: int = 1
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


class _Refused(Exception):
    """YAML that parses but that we do not accept (aliases, deep nesting), at ``mark``."""

    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


class _LineLoader(yaml.SafeLoader):
    line_offset = 0
    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # Refused while composing, event by event, before anything is built: an alias
        # bomb ("billion laughs") is stopped at its first '&', in microseconds. Anchors
        # are refused too, not only aliases, so the line named is where it starts.
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(event.start_mark, ANCHORS_NOT_ALLOWED)
        if not isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > YAML_MAX_DEPTH:
                raise _Refused(event.start_mark, (
                    f"the YAML is nested more than {YAML_MAX_DEPTH} levels deep; "
                    "check the brackets and indentation (no setting needs more than a few levels)"))
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:
        result = LineDict(super().construct_mapping(node, deep=True))
        result.line = node.start_mark.line + 1 + self.line_offset
        result.key_lines = {
            self.construct_object(key_node, deep=True): key_node.start_mark.line + 1 + self.line_offset
            for key_node, _ in node.value
        }
        return result

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> LineList:
        result = LineList(super().construct_sequence(node, deep=True))
        result.line = node.start_mark.line + 1 + self.line_offset
        result.item_lines = [item.start_mark.line + 1 + self.line_offset for item in node.value]
        return result


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _LineLoader.construct_sequence)


def parse_yaml(text: str, path: Path | str, line_offset: int = 0) -> Any:
    """Parse YAML text; a syntax error becomes an InputError at the offending line.

    ``line_offset`` is added to every line number, for YAML embedded in a larger file
    (an edition's front matter starts after its opening ``---``).
    """
    loader: _LineLoader | None = None
    try:
        # Inside the try: the loader checks the whole text for unprintable characters
        # (a NUL byte, other controls) when it is made.
        loader = _LineLoader(text)
        loader.line_offset = line_offset
        return loader.get_single_data()
    except _Refused as exc:
        raise InputError([Problem.of(display_path(path), exc.mark.line + 1 + line_offset, "yaml.refused",
                                     detail=exc.message)]) from None
    except yaml.reader.ReaderError as exc:
        position = exc.position if isinstance(exc.position, int) else 0
        line = text.count("\n", 0, position) + 1 + line_offset
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        code = exc.character if isinstance(exc.character, int) else 0
        if code == 0:
            raise InputError([Problem.of(display_path(path), line, "yaml.nul_byte", column=column)]) from None
        raise InputError([Problem.of(display_path(path), line, "yaml.control_character", character=f"U+{code:04X}",
                                     column=column)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        # An unclosed bracket or quote is found only at the end of the text; the
        # line where it was opened (the context) is the one to fix.
        if exc.context_mark is not None and "<stream end>" in (exc.problem or ""):
            mark = exc.context_mark
        line = (mark.line + 1 if mark else 1) + line_offset
        what = exc.problem or "invalid YAML"
        if exc.context:
            what = f"{what} ({exc.context})"
        hint = _quote_hint(text, mark.line) if mark and exc.problem == "mapping values are not allowed here" else None
        if hint:
            raise InputError([Problem.of(display_path(path), line, "yaml.invalid_with_hint", detail=what,
                                         hint=hint)]) from None
        raise InputError([Problem.of(display_path(path), line, "yaml.invalid", detail=what)]) from None
    except yaml.YAMLError as exc:
        raise InputError([Problem.of(display_path(path), 1 + line_offset, "yaml.error", detail=str(exc))]) from None
    finally:
        if loader is not None:
            loader.dispose()


# 'key: value' (optionally a list item) whose plain value holds another ': ' or ends in
# ':'. YAML reads that colon as the start of a nested mapping; editors mean it as text
# ('subject: Ny information: SÄS öppnar').
_UNQUOTED_COLON = re.compile(
    r"^(?P<lead>\s*(?:-\s+)?)(?P<key>[^\s#'\"\[\]{},:&*!|>%@`-][^:#]*?):\s+"
    r"(?P<value>[^\s'\"\[{&*!|>%@`#].*?(?::\s|:$).*?)(?P<comment>\s+#.*)?$"
)


_HINT_MAX_CHARS = 120


def _quote_hint(text: str, index: int) -> str | None:
    """How to fix the line ``index`` (0-based) if it is a value with an unquoted ': '."""
    lines = text.splitlines()
    if index >= len(lines):
        return None
    match = _UNQUOTED_COLON.match(lines[index].rstrip())
    if match is None:
        return None
    value = match.group("value").rstrip()
    quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    fixed = f"{match.group('lead').strip()} {match.group('key')}: {quoted}{match.group('comment') or ''}".strip()
    what = "ending with ':'" if value.endswith(":") and ": " not in value else "containing ': '"
    if len(fixed) > _HINT_MAX_CHARS:
        # The fix, not a copy of a long line: messages name the place, not the contents.
        return f"a value {what} must be quoted: put the whole value in double quotes"
    return f"a value {what} must be quoted: {fixed}"


def load_yaml_file(
    path: Path, *, limit: int = CONFIG_MAX_BYTES, what: str = "a config file",
    advice: str = "check that this is the right file", follow_links: bool = True,
) -> Any:
    """A YAML file, parsed. The defaults are the config file's; recipient lists pass
    their own limit and ``follow_links=False``."""
    try:
        text = read_input(path, limit=limit, what=what, advice=advice, follow_links=follow_links)
    except FileNotFoundError:
        raise InputError([Problem.of(display_path(path), 1, "file.not_found")]) from None
    return parse_yaml(text, path)


# -- input files --------------------------------------------------------------------

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def shorten(value: str, limit: int = 60) -> str:
    """At most ``limit`` characters of a value for an error message, control characters
    escaped: enough to find it, never a whole line of someone's file."""
    value = _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}", value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _shown(path: Path) -> str:
    """display_path() of the file itself: display_path() resolves, which would name a
    symbolic link's target instead of the link."""
    return str(Path(display_path(path.parent)) / path.name)


def _refuse_kind(path: Path, info: os.stat_result, advice_dir: str) -> None:
    """InputError unless ``info`` is a regular file. Says what the file is, never what it holds."""
    if stat.S_ISREG(info.st_mode):
        return
    if stat.S_ISLNK(info.st_mode):
        try:
            target = shorten(os.readlink(path), 120)
        except OSError:
            target = "somewhere"
        what = f"a symbolic link (to {target})"
        fix = "copy the file instead"
    else:
        what = next((name for test, name in _KINDS if test(info.st_mode)), "not a regular file")
        fix = "replace it with an ordinary file"
    raise InputError([Problem.of(_shown(path), 1, "file.not_regular", kind=what, advice=advice_dir, fix=fix)])


def _refuse_size(path: Path, size: int, limit: int, what: str, advice: str) -> None:
    if size > limit:
        # Just over the limit would round to it ("1.0 MB, over the 1 MB limit"): say bytes then.
        amount = f"{size / MB:.1f} MB" if round(size / MB, 1) > limit / MB else f"{size:,} bytes"
        raise InputError([Problem.of(_shown(path), 1, "file.too_large", size=amount, limit=limit // MB, what=what,
                                     advice=advice)])


def open_input(
    path: Path, *, limit: int, what: str, advice: str, follow_links: bool = False,
) -> BinaryIO:
    """Open an input file for reading, or raise InputError: it must be a regular file (not
    a symbolic link unless ``follow_links``, not a FIFO or device) of at most ``limit``
    bytes. Checked with stat() before opening, and again on the open file, so a file
    swapped in between is caught too. FileNotFoundError is left to the caller, who
    knows what to advise."""
    # Where the file is, for the message: "in recipients/", "in reports/".
    parent = path.absolute().parent.name
    advice_dir = f" in {parent}/" if parent else ""
    info = os.stat(path) if follow_links else os.lstat(path)
    _refuse_kind(path, info, advice_dir)
    _refuse_size(path, info.st_size, limit, what, advice)
    # O_NONBLOCK: should a FIFO be swapped in after the check, open() must not wait for a writer.
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (0 if follow_links else os.O_NOFOLLOW)
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_links:
            _refuse_kind(path, os.lstat(path), advice_dir)
        raise
    try:
        info = os.fstat(descriptor)
        _refuse_kind(path, info, advice_dir)
        _refuse_size(path, info.st_size, limit, what, advice)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_input(path: Path, *, limit: int, what: str, advice: str, follow_links: bool = False) -> str:
    """The text of an input file (UTF-8, an optional BOM dropped), checked as open_input()
    does; not UTF-8 or unreadable -> InputError at its line. FileNotFoundError is left
    to the caller."""
    try:
        with open_input(path, limit=limit, what=what, advice=advice, follow_links=follow_links) as handle:
            data = handle.read(limit + 1)
    except (FileNotFoundError, InputError):
        raise
    except OSError as exc:
        raise InputError([Problem.of(display_path(path), 1, "file.unreadable", detail=str(exc.strerror or exc))]) from None
    # A file that grew after the stat() is still held to the limit.
    _refuse_size(path, len(data), limit, what, advice)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError([Problem.of(display_path(path), line, "file.not_utf8")]) from None
