"""What a dispatch sends, identified: a canonical form of the content and its SHA-256 (pure).

The hash is what approvals are bound to and what "already sent" is compared against,
so it must change with anything a recipient reads and with nothing else. It is taken
over the assembled edition, not over the bytes of one message:

- the kind (edition or urgent), and for editions the date, the revision, the
  compiled time and the correction;
- the subject and preheader as resolved (before the prefixes derived from the kind and
  revision), the report title and the edition's own ``lists``;
- the Markdown of the lead and of each section, as HTML fragments (the same parse
  gives the text part), with their "Nytt"/"Ändrat" markers, and the line that counts
  them: what is new is decided against the ledger at approval time, and an approval binds
  it like any other part of what the reader sees;
- the standing sections as they are added (heading and HTML), and those on the intranet
  page only (``in_email: false``) with their place among them: the published copy of a sent
  edition is rebuilt from this form;
- the version of the email templates: a SHA-256 over their files.

Left out on purpose: the time of sending (Date), Message-IDs, To lines, the ``[TEST]``
mark, the front matter's ``status`` and ``by`` (who says it is ready, and who wrote it,
are facts about the content, not part of it), and for urgent messages their date and
compiled time (an urgent file without ``compiled`` is stamped with the current time; the
same message sent again a minute later is still the same message).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dispatch.models import Edition

CONTENT_FORMAT = 1
SHORT = 12  # characters of the hash shown in text output
TEMPLATE_SUFFIXES = (".html", ".txt", ".css")

# The parts of the canonical form as an operator would name them when they differ.
PART_NAMES = {
    "kind": "the kind of message",
    "date": "the edition date",
    "revision": "the revision",
    "compiled": "the compiled time",
    "correction": "the correction",
    "subject": "the subject (report.subject in the config, or the front matter)",
    "preheader": "the preheader",
    "title": "the report title (report.title in the config)",
    "lists": "the front matter's lists",
    "lead": "the text before the first section",
    "news": "what is marked new since the previous edition sent (its line at the top)",
    "sections": "the sections",
    "standing": "the standing sections (report.standing_sections in the config)",
    "page_only": "the standing sections on the intranet page only (in_email: false in the config)",
    "templates": "the email templates",
    "format": "the content format of this program",
}


@dataclass(frozen=True)
class Content:
    """The identity of one content: the hash, and the document it was computed from."""

    hash: str
    canonical: dict[str, Any]

    @property
    def short(self) -> str:
        return short(self.hash)

    def document(self) -> str:
        return _serialise(self.canonical)


def short(value: str | None) -> str:
    return value[:SHORT] if value else "-"


def template_digest(files: list[tuple[str, bytes]]) -> str:
    """SHA-256 over (name, bytes) of the template files, in name order."""
    digest = hashlib.sha256()
    for name, data in sorted(files):
        digest.update(name.encode("utf-8") + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


def read_templates(directory: Path) -> list[tuple[str, bytes]]:
    """The template files that shape a message (the caller's I/O, kept beside the digest)."""
    return [(path.name, path.read_bytes()) for path in sorted(directory.iterdir())
            if path.is_file() and path.suffix in TEMPLATE_SUFFIXES]


def canonical(edition: Edition, templates: str) -> dict[str, Any]:
    """The canonical form of what an edition's recipients read (see the module docstring)."""
    document: dict[str, Any] = {
        "format": CONTENT_FORMAT,
        "kind": edition.kind,
        "subject": edition.subject,
        "preheader": edition.preheader,
        "title": edition.title,
        "lists": list(edition.lists) if edition.lists is not None else None,
        "lead": edition.lead_html,
        "sections": [[s.heading, s.html] for s in edition.sections],
        "standing": [[s.heading, s.html] for s in edition.email_standing],
        "templates": templates,
    }
    page_only = [[index, s.heading, s.html] for index, s in enumerate(edition.standing) if not s.in_email]
    if page_only:  # only when configured: a config without in_email keeps its content's identity
        document["page_only"] = page_only
    if edition.news:  # only when something is marked: an edition with nothing new keeps its identity
        document["news"] = edition.news
    if not edition.urgent:
        document |= {
            "date": edition.date.isoformat(),
            "revision": edition.revision,
            "compiled": edition.compiled.strftime("%Y-%m-%d %H:%M"),
            "correction": edition.correction,
        }
    return document


def identify(edition: Edition, templates: str) -> Content:
    document = canonical(edition, templates)
    return Content(hashlib.sha256(_serialise(document).encode("utf-8")).hexdigest(), document)


def _serialise(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def changed_parts(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    """The parts of the content that differ, named for an operator."""
    if before is None:
        return []
    keys = sorted(set(before) | set(after))
    return [PART_NAMES.get(key, key) for key in keys if before.get(key) != after.get(key)]


def source_diff(sent: str, current: str, sent_name: str, current_name: str) -> str:
    """A unified diff of the edition source as sent and as it is now."""
    lines = difflib.unified_diff(
        sent.replace("\r\n", "\n").splitlines(keepends=True),
        current.replace("\r\n", "\n").splitlines(keepends=True),
        fromfile=sent_name, tofile=current_name,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
