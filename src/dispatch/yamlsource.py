"""YAML that remembers where each value came from, so errors can say ``file:line``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from dispatch.errors import InputError, Problem, display_path


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


class _LineLoader(yaml.SafeLoader):
    line_offset = 0

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:  # type: ignore[override]
        result = LineDict(super().construct_mapping(node, deep=True))
        result.line = node.start_mark.line + 1 + self.line_offset
        result.key_lines = {
            self.construct_object(key_node, deep=True): key_node.start_mark.line + 1 + self.line_offset
            for key_node, _ in node.value
        }
        return result

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> LineList:  # type: ignore[override]
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
    loader = _LineLoader(text)
    loader.line_offset = line_offset
    try:
        return loader.get_single_data()
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
        advice = hint or "check indentation, colons and quotes"
        raise InputError([Problem(display_path(path), line, f"invalid YAML: {what}; {advice}")]) from None
    except yaml.YAMLError as exc:
        raise InputError([Problem(display_path(path), 1 + line_offset, f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()


# 'key: value' (optionally a list item) whose plain value holds another ': ' or ends in
# ':'. YAML reads that colon as the start of a nested mapping; editors mean it as text
# ('subject: Ny information: SÄS öppnar').
_UNQUOTED_COLON = re.compile(
    r"^(?P<lead>\s*(?:-\s+)?)(?P<key>[^\s#'\"\[\]{},:&*!|>%@`-][^:#]*?):\s+"
    r"(?P<value>[^\s'\"\[{&*!|>%@`#].*?(?::\s|:$).*?)(?P<comment>\s+#.*)?$"
)


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
    return f"a value {what} must be quoted: {fixed}"


def load_yaml_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError([Problem(display_path(path), 1, "file not found")]) from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise InputError([Problem(display_path(path), line, "not valid UTF-8; save the file as UTF-8")]) from None
    return parse_yaml(text, path)
