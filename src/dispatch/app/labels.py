"""A dispatch as people name it: the facts of its label (values.DispatchLabel), from the ledger's
record. Each front door words it (the console "Rapporten tis 8 dec, version 2")."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import date

from dispatch.email.render import URGENT_PREFIX
from dispatch.ledger import Ledger
from dispatch.models import DispatchRecord
from dispatch.values import DispatchKind, DispatchLabel


def label_of(record: DispatchRecord) -> DispatchLabel:
    return label_from(record.name, record.kind, record.edition_date, record.revision, record.subject, record.created_by)


def label_from(name: str, kind: str, edition_date: date | str, revision: int, subject: str, created_by: str) -> DispatchLabel:
    """A label from a dispatch's recorded facts (a record, or an entry of ``history``)."""
    label = DispatchLabel.of(name, kind, edition_date, revision, subject, created_by)
    if label.kind is DispatchKind.URGENT:
        # The ledger keeps the subject as sent; the label says "urgent" itself, so it names the
        # message by the subject its author wrote (the renderer put exactly this prefix before it).
        return dataclasses.replace(label, subject=subject.removeprefix(URGENT_PREFIX))
    return label


def labels_for(ledger: Ledger, names: Iterable[str]) -> dict[str, DispatchLabel]:
    """The labels of those of ``names`` that are dispatches (an audit log's targets are also
    dates, people and lists)."""
    found = {}
    for name in set(names):
        record = ledger.find_dispatch(name) if name else None
        if record is not None and record.name == name:
            found[name] = label_of(record)
    return found
