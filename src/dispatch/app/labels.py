"""A dispatch as people name it: the facts of its label (values.DispatchLabel), from the ledger's
record. Each front door words it (the console "Rapporten tis 8 dec, version 2")."""

from __future__ import annotations

from collections.abc import Iterable

from dispatch.ledger import Ledger
from dispatch.models import DispatchRecord
from dispatch.values import DispatchLabel


def label_of(record: DispatchRecord) -> DispatchLabel:
    return DispatchLabel.of(record.name, record.kind, record.edition_date, record.revision, record.subject,
                            record.created_by)


def labels_for(ledger: Ledger, names: Iterable[str]) -> dict[str, DispatchLabel]:
    """The labels of those of ``names`` that are dispatches (an audit log's targets are also
    dates, people and lists)."""
    found = {}
    for name in set(names):
        record = ledger.find_dispatch(name) if name else None
        if record is not None and record.name == name:
            found[name] = label_of(record)
    return found
