"""Urgent messages written in the console: where the file goes, and writing it.

An urgent message from the console is a file like one an operator would write for
``send --urgent --file``: kept under ``reports/urgent/`` with the time and the subject in its
name, so the records show what was sent, and the same identity rules apply (a message is
its content)."""

from __future__ import annotations

import re  # not wording: makes a file name from an urgent message's subject
import unicodedata
from datetime import datetime
from pathlib import Path

from dispatch.app.drafting import compose
from dispatch.config import Settings
from dispatch.publishing.atomic import write_atomic


def urgent_path(settings: Settings, subject: str, now: datetime) -> Path:
    """``reports/urgent/2024-11-18-0912-sas-akutmottagning.md`` (local time, the subject as ASCII)."""
    ascii_subject = unicodedata.normalize("NFKD", subject).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_subject).strip("-")[:40] or "meddelande"
    return Path(settings.reports_dir) / "urgent" / f"{now.astimezone(settings.timezone):%Y-%m-%d-%H%M%S}-{slug}.md"


def urgent_fields(subject: str, lists: tuple[str, ...], by: str) -> dict[str, str]:
    return {"subject": subject, "lists": ", ".join(lists), "by": by}


def write_urgent(path: Path, subject: str, lists: tuple[str, ...], body: str, by: str) -> None:
    text, _ = compose(urgent_fields(subject, lists, by), body)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.encode("utf-8"), mode=0o644)
