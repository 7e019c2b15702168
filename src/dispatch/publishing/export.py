"""The records export of one dispatch: everything the ledger holds about it, as JSON or CSV.

Pure: the caller reads the ledger and hands the rows in; ``export_files`` writes the
result (owner-only files, replaced atomically).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dispatch.publishing.atomic import EXPORT_MODE, write_atomic
from dispatch.values import Fact
from dispatch.wording import english

RECIPIENT_FIELDS = (
    "email", "name", "state", "attempts", "reply", "message_id", "node",
    "created_at", "first_attempt_at", "sent_at", "updated_at", "next_attempt_at",
)
CSV_FIELDS = ("dispatch", "edition", "revision", "kind", *RECIPIENT_FIELDS)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # SQLite hands back naive UTC
    return value.isoformat()


def approved_by(dispatch: Any) -> str | None:
    """Who let the dispatch go, as the exports (and the command line's JSON) have always said it:
    the approver's name, or the front matter's approval worded from the English catalogue."""
    if getattr(dispatch, "by_front_matter", False):
        return english(Fact.of("approval.by_front_matter"))
    return getattr(dispatch, "approved_by", None)


def recipient_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """One ledger row as the export shows it (timestamps as ISO 8601 with offset)."""
    record = {
        "email": row["address"], "name": row["name"], "state": row["state"], "attempts": row["attempts"],
        "reply": row["reply"], "message_id": row["message_id"], "node": row["node"],
    }
    for key in ("created_at", "first_attempt_at", "sent_at", "updated_at", "next_attempt_at"):
        record[key] = iso(row.get(key))
    return record


def export_document(dispatch: Any, counts: Mapping[str, int], rows: Sequence[Mapping[str, Any]],
                    contents: Sequence[Mapping[str, Any]], snapshots: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Everything the ledger holds about one dispatch, as one JSON-ready object.

    ``contents`` are the versions of the message as stored at send time (usually one;
    more if an interrupted dispatch was resumed after the edition file changed).
    ``snapshots``: per directory list the snapshot it went to ({} when it used none)."""
    return {
        "dispatch": dispatch.name,
        "edition": dispatch.edition_date.isoformat(),
        "revision": dispatch.revision,
        "kind": dispatch.kind,
        "subject": dispatch.subject,
        "source": dispatch.source,
        "content_hash": getattr(dispatch, "content_hash", None),
        "approved_by": approved_by(dispatch),
        "approved_at": iso(getattr(dispatch, "approved_at", None)),
        "created_by": dispatch.created_by,
        "created_at": iso(dispatch.created_at),
        "finished_at": iso(dispatch.finished_at),
        "counts": dict(counts),
        "snapshots": dict(snapshots or {}),
        "contents": [
            {
                "recorded_at": iso(c["recorded_at"]), "digest": c["digest"], "subject": c["subject"],
                "source": c["source"], "source_text": c["source_text"], "html": c["html"], "text": c["text"],
            }
            for c in contents
        ],
        "recipients": [recipient_record(row) for row in rows],
    }


def export_csv(document: Mapping[str, Any]) -> str:
    """One row per recipient, with the dispatch's key columns repeated on each row so a
    file still says what it is about when it is opened on its own."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for recipient in document["recipients"]:
        writer.writerow({
            "dispatch": document["dispatch"], "edition": document["edition"],
            "revision": document["revision"], "kind": document["kind"],
            **{k: "" if v is None else v for k, v in recipient.items()},
        })
    return buffer.getvalue()


def export_files(document: Mapping[str, Any], fmt: str, out: Path) -> list[Path]:
    """Write the export into ``out``: the recipient records (.json or .csv), and per stored
    content version the edition source (.md), the HTML and the text that were sent."""
    out.mkdir(parents=True, exist_ok=True)
    stem = document["dispatch"]
    paths: list[Path] = []

    def write(name: str, text: str) -> None:
        path = out / name
        write_atomic(path, text.encode("utf-8"), mode=EXPORT_MODE)
        paths.append(path)

    if fmt == "csv":
        write(f"{stem}.csv", export_csv(document))
    else:
        write(f"{stem}.json", json.dumps(document, ensure_ascii=False, indent=2) + "\n")
    for number, content in _numbered(document["contents"]):
        write(f"{stem}{number}.source.md", content["source_text"])
        write(f"{stem}{number}.html", content["html"])
        write(f"{stem}{number}.txt", content["text"])
    return paths


def _numbered(contents: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """No suffix for the usual single version; .v1, .v2 ... when there are several."""
    for position, content in enumerate(contents, start=1):
        yield ("" if len(contents) == 1 else f".v{position}"), content
