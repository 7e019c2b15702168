"""The intranet copy of an edition, the archive index, and the records export of a dispatch.

The web page is made from the same Edition as the email, with its own template
(templates/web): an ordinary responsive page, not the email's table markup.
Every file is written atomically (a temporary file in the same directory, fsync,
rename), so the intranet's web server never serves half a page, and an
interrupted publish leaves the previous version in place.

The archive is built from a small manifest (editions.json) rather than by
re-reading the pages; a lost manifest is rebuilt from the pages' meta tags.
The export half is pure: the caller reads the ledger and hands the rows in.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import os
import re
import stat
import tempfile
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from babel.dates import format_date
from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError

from dispatch.errors import DispatchError, display_path
from dispatch.models import Edition

PAGE_TEMPLATE = "edition.html"
INDEX_TEMPLATE = "index.html"
INDEX = "index.html"
MANIFEST = "editions.json"
MANIFEST_VERSION = 1
LOCK = ".publish.lock"
TEMP_PREFIX = ".publishing-"
PAGE_MODE = 0o644  # mkstemp creates 0600; the web server (another user) must read the page
EXPORT_MODE = 0o600  # an export holds a recipient list with names and addresses: its owner's only
_PAGE_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}\.html$")
_META = re.compile(r'<meta name="dispatch:(\w+)" content="([^"]*)">')

Replace = Callable[[str | os.PathLike[str], str | os.PathLike[str]], None]


class PublishError(DispatchError):
    """The web copy or the archive could not be written; the previous version is still in place."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(f"{display_path(path)}: {message}")


@dataclass(frozen=True)
class Entry:
    """One published edition, as the archive lists it (one line of the manifest)."""

    date: str  # YYYY-MM-DD, also the page's file name
    revision: int
    heading: str  # "Söndag 17 november 2024"
    compiled: str  # local ISO time, for <time datetime>
    compiled_label: str  # "Sammanställd: 2024-11-17 klockan 14:00"
    published_at: str

    @property
    def file(self) -> str:
        return page_name(date.fromisoformat(self.date))


@dataclass(frozen=True)
class Published:
    page: Path
    index: Path
    manifest: Path


def page_name(day: date) -> str:
    return f"{day.isoformat()}.html"


def web_templates_dir(email_templates_dir: Path) -> Path:
    """templates/web beside the configured email templates, else the shipped ones."""
    for candidate in (
        email_templates_dir.parent / "web",
        Path(__file__).parent / "_templates" / "web",
        Path(__file__).resolve().parents[2] / "templates" / "web",
    ):
        if (candidate / PAGE_TEMPLATE).is_file():
            return candidate
    raise PublishError(email_templates_dir.parent / "web", f"no {PAGE_TEMPLATE} template for the web copy")


@lru_cache(maxsize=4)
def _environment(templates_dir: Path) -> Environment:
    # Autoescape everything: the page is HTML throughout, and the edition's own HTML
    # (already escaped by markup.to_html) is marked safe explicitly in the template.
    return Environment(
        loader=FileSystemLoader(str(templates_dir)),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _heading(day: date) -> str:
    label = format_date(day, "EEEE d MMMM y", locale="sv_SE")
    return label[:1].upper() + label[1:]


def _time_label(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d} klockan {moment:%H:%M}"


def _render(templates_dir: Path, name: str, values: Mapping[str, Any]) -> str:
    try:
        return _environment(templates_dir).get_template(name).render(values)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None) or 1
        raise PublishError(templates_dir / name, f"line {line}: {exc}") from None


def render_page(edition: Edition, templates_dir: Path, now: datetime) -> str:
    """The edition as a web page. ``now`` (local time) is the publication time shown."""
    heading = edition.subject if edition.urgent else _heading(edition.date)
    return _render(templates_dir, PAGE_TEMPLATE, {
        "title": edition.title,
        "heading": heading,
        "date": edition.date.isoformat(),
        "date_label": edition.date_label,
        "preheader": edition.preheader,
        "compiled": edition.compiled.isoformat(timespec="minutes"),
        "compiled_label": edition.compiled_label,
        "revision": edition.revision,
        "urgent": edition.urgent,
        "correction": edition.correction,
        "lead_html": edition.lead_html,
        "sections": edition.sections,
        "standing": edition.standing,
        "index_href": INDEX,
        "published": now.isoformat(timespec="seconds"),
        "published_label": _time_label(now),
    })


def render_index(title: str, entries: Sequence[Entry], templates_dir: Path, now: datetime) -> str:
    return _render(templates_dir, INDEX_TEMPLATE, {
        "title": title,
        "editions": entries,
        "updated": now.isoformat(timespec="seconds"),
        "updated_label": _time_label(now),
    })


# -- atomic files -----------------------------------------------------------------


def write_atomic(path: Path, data: bytes, *, replace: Replace = os.replace, mode: int = PAGE_MODE) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old or the new file, never
    a mix. The temporary file is in the same directory (a rename across file systems is
    not atomic) and is fsynced before the rename, so a power cut cannot leave an empty
    page behind the new name. ``replace`` is injectable so tests can interrupt here.
    The file gets ``mode`` (PAGE_MODE, or EXPORT_MODE for exports); the rename replaces
    a symbolic link at ``path`` rather than writing through it."""
    descriptor, temp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            # Before the data: the file never holds it with other permissions than ``mode``.
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        replace(temp, path)
    except BaseException:
        # Also on KeyboardInterrupt: the previous file is untouched; drop the half-made one.
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems (e.g. some network mounts) refuse fsync on a directory
    finally:
        os.close(descriptor)


class _Locked:
    """An exclusive lock on the publish directory: the scheduler and a manual publish
    must not both read-modify-write the manifest."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK

    def __enter__(self) -> _Locked:
        # O_NOFOLLOW: a symbolic link planted as the lock must not make us create or open
        # a file elsewhere (O_CREAT would create its target). The mode honours the umask.
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            self.descriptor = os.open(self.path, flags, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise PublishError(self.path, _LINK_REFUSED.format(what="the lock file", target=_link_target(self.path))) from None
            raise
        try:
            if not stat.S_ISREG(os.fstat(self.descriptor).st_mode):
                raise PublishError(self.path, "the lock file is not a regular file; remove it")
            fcntl.flock(self.descriptor, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.descriptor)
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        fcntl.flock(self.descriptor, fcntl.LOCK_UN)
        os.close(self.descriptor)


_LINK_REFUSED = (
    "{what} is a symbolic link (to {target}); dispatch does not follow links in the publish "
    "directory; remove the link"
)


def _link_target(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "somewhere"


def _refuse_link(path: Path, what: str) -> None:
    """PublishError if ``path`` is a symbolic link: we neither write through one nor read one."""
    if path.is_symlink():
        raise PublishError(path, _LINK_REFUSED.format(what=what, target=_link_target(path)))


def _remove_stale_temps(directory: Path) -> None:
    # Only called under the lock, so no other publisher is writing one right now: any
    # temporary file present was left by a process that was killed mid-write.
    for stale in directory.glob(f"{TEMP_PREFIX}*.tmp"):
        try:
            stale.unlink()
        except OSError:
            pass


# -- the manifest -----------------------------------------------------------------


def read_manifest(directory: Path) -> dict[str, Entry]:
    """Published editions by date. Pages the manifest does not know (it was lost, or a
    page was copied in by hand) are recovered from the meta tags each page carries."""
    entries: dict[str, Entry] = {}
    try:
        if (directory / MANIFEST).is_symlink():
            raise ValueError("not ours")  # publish_edition refuses it; a reader ignores it
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        items = data.get("editions", []) if isinstance(data, dict) else []
    except (OSError, ValueError):
        items = []
    fields = set(Entry.__dataclass_fields__)
    for item in items:
        if isinstance(item, dict) and fields <= set(item):
            try:
                entry = Entry(**{k: item[k] for k in fields})
                date.fromisoformat(entry.date)
            except (TypeError, ValueError):
                continue
            if (directory / entry.file).exists():
                entries[entry.date] = entry
    for page in directory.glob("*.html"):
        if _PAGE_NAME.match(page.name) and page.stem not in entries:
            recovered = _recover(page)
            if recovered:
                entries[recovered.date] = recovered
    return entries


def _recover(page: Path) -> Entry | None:
    if page.is_symlink() or not page.is_file():
        return None  # a link or anything but a page we wrote: never read through it
    try:
        head = page.read_text(encoding="utf-8", errors="replace")[:4000]
    except OSError:
        return None
    meta = dict(_META.findall(head))
    if meta.get("date") != page.stem or "compiled" not in meta:
        return None  # not a page this program wrote
    try:
        compiled = datetime.fromisoformat(meta["compiled"])
        day = date.fromisoformat(page.stem)
    except ValueError:
        return None
    published = datetime.fromtimestamp(page.stat().st_mtime, timezone.utc)
    return Entry(
        date=page.stem, revision=int(meta.get("revision", "1") or 1), heading=_heading(day),
        compiled=meta["compiled"], compiled_label=f"Sammanställd: {_time_label(compiled)}",
        published_at=published.isoformat(timespec="seconds"),
    )


def _manifest_bytes(entries: Sequence[Entry]) -> bytes:
    document = {"version": MANIFEST_VERSION, "editions": [asdict(e) | {"file": e.file} for e in entries]}
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def newest_first(entries: Mapping[str, Entry]) -> list[Entry]:
    return sorted(entries.values(), key=lambda e: e.date, reverse=True)


# -- publishing ---------------------------------------------------------------------


def publish_edition(
    edition: Edition, directory: Path, email_templates_dir: Path, now: datetime, *,
    replace: Replace = os.replace,
) -> Published:
    """Write the edition's page, then the manifest, then the archive index.

    Page first: if anything later fails, the new page is in place and the old index
    still links to it by the same name. Re-publishing a date replaces its page and entry.
    ``now`` is local time (shown on the page as the publication time).
    """
    templates = web_templates_dir(email_templates_dir)
    page_html = render_page(edition, templates, now)
    if directory.is_symlink():
        raise PublishError(directory, (
            f"the publish directory is a symbolic link (to {_link_target(directory)}); dispatch does not "
            "follow links there; set publish.dir to the real directory"))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PublishError(directory, f"cannot create the publish directory: {exc.strerror}") from None
    page = directory / page_name(edition.date)
    try:
        with _Locked(directory):
            for path, what in ((page, "the page"), (directory / MANIFEST, "the manifest"), (directory / INDEX, "the archive index")):
                _refuse_link(path, what)
            _remove_stale_temps(directory)
            write_atomic(page, page_html.encode("utf-8"), replace=replace)
            entries = read_manifest(directory)
            entries[edition.date.isoformat()] = Entry(
                date=edition.date.isoformat(), revision=edition.revision, heading=_heading(edition.date),
                compiled=edition.compiled.isoformat(timespec="minutes"), compiled_label=edition.compiled_label,
                published_at=now.isoformat(timespec="seconds"),
            )
            ordered = newest_first(entries)
            write_atomic(directory / MANIFEST, _manifest_bytes(ordered), replace=replace)
            index_html = render_index(edition.title, ordered, templates, now)
            write_atomic(directory / INDEX, index_html.encode("utf-8"), replace=replace)
    except OSError as exc:
        raise PublishError(Path(exc.filename) if exc.filename else directory, exc.strerror or str(exc)) from None
    return Published(page=page, index=directory / INDEX, manifest=directory / MANIFEST)


# -- the records export ---------------------------------------------------------------

RECIPIENT_FIELDS = (
    "email", "name", "state", "attempts", "reply", "message_id", "node",
    "created_at", "first_attempt_at", "sent_at", "updated_at", "next_attempt_at",
)
CSV_FIELDS = ("dispatch", "edition", "revision", "kind", *RECIPIENT_FIELDS)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)  # SQLite hands back naive UTC
    return value.isoformat()


def recipient_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """One ledger row as the export shows it (timestamps as ISO 8601 with offset)."""
    record = {
        "email": row["address"], "name": row["name"], "state": row["state"], "attempts": row["attempts"],
        "reply": row["reply"], "message_id": row["message_id"], "node": row["node"],
    }
    for key in ("created_at", "first_attempt_at", "sent_at", "updated_at", "next_attempt_at"):
        record[key] = _iso(row.get(key))
    return record


def export_document(dispatch: Any, counts: Mapping[str, int], rows: Sequence[Mapping[str, Any]],
                    contents: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Everything the ledger holds about one dispatch, as one JSON-ready object.

    ``contents`` are the versions of the message as stored at send time (usually one;
    more if an interrupted dispatch was resumed after the edition file changed)."""
    return {
        "dispatch": dispatch.name,
        "edition": dispatch.edition_date,
        "revision": dispatch.revision,
        "kind": dispatch.kind,
        "subject": dispatch.subject,
        "source": dispatch.source,
        "content_hash": getattr(dispatch, "content_hash", None),
        "approved_by": getattr(dispatch, "approved_by", None),
        "approved_at": _iso(getattr(dispatch, "approved_at", None)),
        "created_by": dispatch.created_by,
        "created_at": _iso(dispatch.created_at),
        "finished_at": _iso(dispatch.finished_at),
        "counts": dict(counts),
        "contents": [
            {
                "recorded_at": _iso(c["recorded_at"]), "digest": c["digest"], "subject": c["subject"],
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
