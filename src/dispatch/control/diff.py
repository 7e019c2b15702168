"""What changed between two versions of an edition, word by word (pure: texts in, a value out).

An approver who comes back to an edition changed after he approved it should read what
changed, not the whole text again; the correction page shows the same against what was
sent. The body is compared on word tokens (words, single punctuation marks, and the white
space between them, so that the runs put together give back each text exactly); the front
matter is compared field by field, so that the screen can name a field by its label and
show no YAML.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

# A word (letters and digits, with inner hyphens and apostrophes), one other visible
# character, or a stretch of white space: the units a reader sees change.
_TOKEN = re.compile(r"\w+(?:[-'\u2019]\w+)*|\s+|[^\w\s]", re.UNICODE)

# Fields that say who wrote the text and whether someone says it is ready; they are not
# what a reader reads (the content hash leaves them out too).
NOT_CONTENT = ("by", "status")


class Change(Enum):
    KEPT = "kept"
    REMOVED = "removed"
    ADDED = "added"


@dataclass(frozen=True)
class Run:
    """A stretch of text that stayed, went or came; ``elided``: lines of a kept stretch left out
    between its beginning and its end (``around_changes``)."""

    change: Change
    text: str
    elided: int = 0


@dataclass(frozen=True)
class FieldChange:
    """A front-matter field whose value changed ("" where it was, or is, not set)."""

    key: str
    old: str
    new: str


@dataclass(frozen=True)
class TextDiff:
    runs: tuple[Run, ...]
    fields: tuple[FieldChange, ...]

    @property
    def changed(self) -> bool:
        return bool(self.fields) or any(run.change is not Change.KEPT for run in self.runs)

    @property
    def body_changed(self) -> bool:
        return any(run.change is not Change.KEPT for run in self.runs)

    @property
    def excerpt(self) -> tuple[Run, ...]:
        """The body's runs as a screen shows them: the changes with a few lines around each."""
        return around_changes(self.runs)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def word_runs(old: str, new: str) -> tuple[Run, ...]:
    """``old`` turned into ``new`` as runs; the kept and removed runs give ``old``, the kept
    and added ones ``new``. Adjacent runs of one kind are joined."""
    before, after = tokens(old), tokens(new)
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    runs: list[Run] = []

    def add(change: Change, parts: list[str]) -> None:
        text = "".join(parts)
        if not text:
            return
        if runs and runs[-1].change is change:
            runs[-1] = Run(change, runs[-1].text + text)
        else:
            runs.append(Run(change, text))

    for kept, a1, a2, b1, b2 in _spans(matcher.get_opcodes(), before):
        if kept:
            add(Change.KEPT, before[a1:a2])
        else:  # what went first, then what came
            add(Change.REMOVED, before[a1:a2])
            add(Change.ADDED, after[b1:b2])
    return tuple(runs)


def _spans(opcodes: Sequence[tuple[str, int, int, int, int]], before: list[str]) -> list[tuple[bool, int, int, int, int]]:
    """The opcodes as kept and changed spans, a change of several words read as one: the white
    space alone between two changes is part of the change ("går enligt plan" -> "är försenad
    till onsdag" is one struck phrase and one new one, not three of each)."""
    spans: list[tuple[bool, int, int, int, int]] = []
    for index, (op, a1, a2, b1, b2) in enumerate(opcodes):
        between_changes = 0 < index < len(opcodes) - 1 and all(not t.strip() for t in before[a1:a2])
        kept = op == "equal" and not between_changes
        if spans and not kept and not spans[-1][0]:
            _, p1, _, q1, _ = spans[-1]
            spans[-1] = (False, p1, a2, q1, b2)
        else:
            spans.append((kept, a1, a2, b1, b2))
    return spans


def around_changes(runs: tuple[Run, ...], context: int = 2) -> tuple[Run, ...]:
    """The runs with each long unchanged stretch cut to ``context`` lines on either side of a
    change (none before the first change, none after the last): what changed, in its place,
    without reading the whole text again. Each cut says how many lines it left out."""
    shown: list[Run] = []
    for index, run in enumerate(runs):
        if run.change is not Change.KEPT:
            shown.append(run)
            continue
        lines = run.text.split("\n")
        keep_head = context + 1 if index > 0 else 0  # the rest of the changed line, and the lines after it
        keep_tail = context + 1 if index < len(runs) - 1 else 0  # the lines before the next change, and its own start
        if len(lines) <= keep_head + keep_tail + 1:
            shown.append(run)
            continue
        head = "\n".join(lines[:keep_head]) + "\n" if keep_head else ""
        tail = "\n".join(lines[len(lines) - keep_tail:]) if keep_tail else ""
        ends_with_newline = not keep_tail and lines[-1] == ""  # the text's last line break starts no line
        shown.append(Run(Change.KEPT, head, len(lines) - keep_head - keep_tail - ends_with_newline))
        if tail:
            shown.append(Run(Change.KEPT, tail))
    return tuple(shown)


def field_changes(old: Mapping[str, str], new: Mapping[str, str], order: tuple[str, ...] = ()) -> tuple[FieldChange, ...]:
    """Every content field whose value differs, in ``order`` first, then by name."""
    keys = [k for k in order if k in old or k in new]
    keys += sorted((set(old) | set(new)) - set(keys))
    return tuple(FieldChange(key, old.get(key, ""), new.get(key, ""))
                 for key in keys if key not in NOT_CONTENT and old.get(key, "").strip() != new.get(key, "").strip())


def diff_edition(old_fields: Mapping[str, str], old_body: str, new_fields: Mapping[str, str], new_body: str,
                 order: tuple[str, ...] = ()) -> TextDiff:
    """The edition's changes: its fields (by key, in ``order``) and its body, word by word."""
    return TextDiff(word_runs(old_body, new_body), field_changes(old_fields, new_fields, order))
