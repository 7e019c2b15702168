"""One log line per event for the long-running service: time, level, event, dispatch, counts.

Text by default (readable in ``journalctl``); one JSON object per line with ``--log-json``
for a log shipper. Records from libraries (APScheduler) get the same shape, with their
logger name as the event.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, TextIO

LOGGER = logging.getLogger("dispatch.serve")


class EventFormatter(logging.Formatter):
    """``zone``: the configured timezone. Every time in a line (the stamp and fields such as
    ``next=``) is in that zone with its offset, so a reader never mixes UTC and local time."""

    def __init__(self, as_json: bool = False, zone: tzinfo | None = None) -> None:
        super().__init__()
        self.as_json = as_json
        self.zone = zone

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, self.zone or UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "event": getattr(record, "event", record.name),
        }
        for key in ("dispatch", "counts"):
            value = getattr(record, key, None)
            if value is not None:
                fields[key] = value
        fields.update(getattr(record, "fields", {}))
        if not hasattr(record, "event"):
            fields["message"] = record.getMessage()
        if record.exc_info:
            # Keep one line per event: the exception's last line, not the whole traceback.
            error, trace = record.exc_info[1], record.exc_info[2]
            fields["error"] = f"{error.__class__.__name__}: {error}" if error else "unknown"
            while trace is not None and trace.tb_next is not None:
                trace = trace.tb_next
            if trace is not None:
                fields["at"] = f"{Path(trace.tb_frame.f_code.co_filename).name}:{trace.tb_lineno}"
        if self.as_json:
            return json.dumps(fields, ensure_ascii=False, default=str)
        head = f"{fields.pop('time')} {fields.pop('level'):<7} {fields.pop('event')}"
        parts = [head]
        for key, value in fields.items():
            if key == "counts" and isinstance(value, dict):
                value = ",".join(f"{state}:{count}" for state, count in value.items())
            parts.append(f"{key}={_text(value)}")
        return " ".join(parts)


def _text(value: Any) -> str:
    text = str(value)
    # Quote values that would break "key=value" splitting; newlines never reach the log.
    if not text or any(c in text for c in " \"=\n\t"):
        return json.dumps(text, ensure_ascii=False)
    return text


def configure(as_json: bool = False, stream: TextIO | None = None, zone: tzinfo | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(EventFormatter(as_json, zone))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # APScheduler logs every job start at INFO; our own events say more, so keep its warnings only.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def event(name: str, level: int = logging.INFO, *, dispatch: str | None = None,
          counts: dict[str, int] | None = None, exc_info: bool = False, **fields: Any) -> None:
    LOGGER.log(level, name, exc_info=exc_info,
               extra={"event": name, "dispatch": dispatch, "counts": counts, "fields": fields})
