"""What the pre-flight adds once the message is serialised: the bytes read back as a
reader's program reads them, and a subject longer than an inbox shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dispatch.config import Settings
from dispatch.email import preflight
from dispatch.email.message import list_address, to_header
from dispatch.errors import Problem, display_path
from dispatch.models import Recipient
from dispatch.values import Fact

if TYPE_CHECKING:
    from dispatch.app.editions import Prepared
    from dispatch.recipients.lists import Resolution


def read_back_problems(settings: Settings, ready: Prepared, sample: bytes, longest: Recipient) -> list[Problem]:
    """The message parsed back as a reader's program parses it must say exactly what was
    rendered and approved: each header with text in it, and both parts. A difference is a
    fault in dispatch, not in the edition, and nothing is sent."""
    edition, rendered, sender = ready.edition, ready.rendered, settings.sender
    expected = preflight.Expected(
        subject=rendered.subject,
        sender=(" ".join(sender.name.split()), sender.address),
        to=(" ".join(longest.name.split()), longest.address),
        reply_to=("", sender.reply_to) if sender.reply_to else None,
        list_id=(" ".join(settings.report.title.split()), list_address(settings.report.list_id, sender.domain)),
        text=rendered.text,
        html=rendered.html,
        thread_topic=ready.thread.topic if ready.thread is not None else None,
    )
    where = {
        "Subject": (display_path(edition.source), edition.line_of.get("subject", 1)) if "subject" in edition.line_of
        else (display_path(settings.path), settings.line_of.get("report.subject", 1)),
        "From": (display_path(settings.path), settings.line_of.get("sender", 1)),
        "Reply-To": (display_path(settings.path), settings.line_of.get("sender", 1)),
        "List-Id": (display_path(settings.path), settings.line_of.get("report", 1)),
    }
    problems = []
    for header, difference in preflight.read_back(sample, expected):
        path, line = where.get(header, (display_path(edition.source), 1))
        if header == "To":
            source = _split_source(longest.source)
            path, line = source or (path, line)
        problems.append(Problem.of(path, line, "readback.header_differs", header=header, difference=difference))
    return problems


def _split_source(source: str) -> tuple[str, int] | None:
    path, _, line = source.rpartition(":")
    return (path, int(line)) if path and line.isdigit() else None


@dataclass(frozen=True)
class LongSubject:
    """A subject longer than an inbox shows (a fact for the faces to word): where it comes from."""

    path: str
    line: int
    subject: str
    length: int
    limit: int
    source: str  # where it comes from: "subject" or "headline" (front matter), "report.subject" or "report.headline_subject"


def long_subject(settings: Settings, ready: Prepared) -> LongSubject | None:
    """The subject as readers get it, when it is over SUBJECT_WARN_CHARS characters: a phone
    shows about 35, so the news belongs first. Not a problem: the edition still goes out."""
    from dispatch.email.edition import SUBJECT_WARN_CHARS

    subject, edition = ready.rendered.subject, ready.edition
    if len(subject) <= SUBJECT_WARN_CHARS:
        return None
    for key in ("subject", "headline"):
        if key in edition.line_of:
            return LongSubject(display_path(edition.source), edition.line_of[key], subject, len(subject), SUBJECT_WARN_CHARS, key)
    key = "report.headline_subject" if edition.headline else "report.subject"
    return LongSubject(display_path(settings.path), settings.line_of.get(key, settings.line_of.get("report", 1)), subject,
                       len(subject), SUBJECT_WARN_CHARS, key)




MAX_TO_LINE = 998 - len("To: ")  # RFC 5322's line limit, for the header lines we patch in


def reject_unwritable_to(resolution: Resolution) -> None:
    """A recipient whose To header cannot be written as their list says (a line over the
    998-octet limit, or a name that would not read back as written) fails that one
    recipient (a failed row, with the list's path:line), not the whole send. Only names
    that are encoded or quoted are parsed back: a plain ASCII name is written as it is."""
    from dispatch.email.headers import needs_encoding
    from dispatch.recipients.lists import Invalid

    for key, recipient in list(resolution.recipients.items()):
        value = to_header([recipient])
        name = " ".join(recipient.name.split())
        fact = None
        if max(len(line) for line in value.split("\r\n")) > MAX_TO_LINE:
            fact = Fact.of("readback.name_too_long", address=recipient.address)
        elif name and (needs_encoding(name) or '"' in value) and (
                why := preflight.mailbox_reads_back("To", value, (name, recipient.address))):
            fact = Fact.of("readback.name_differs", address=recipient.address, difference=why)
        if fact:
            path, _, line = recipient.source.rpartition(":")
            problem = Problem(path or "recipients", int(line) if line.isdigit() else 1, fact)
            del resolution.recipients[key]
            resolution.invalid.append(Invalid(email=recipient.address, name=recipient.name[:80], problem=problem))
            resolution.problems.append(problem)
