"""The intranet copy of an edition and the archive index.

The web page is made from the same Edition as the email, with its own template
(templates/web): an ordinary responsive page, not the email's table markup.
Every file is written atomically (a temporary file in the same directory, fsync,
rename), so the intranet's web server never serves half a page, and an
interrupted publish leaves the previous version in place.

The archive is built from a small manifest (editions.json) rather than by
re-reading the pages; a lost manifest is rebuilt from the pages' meta tags.
(The records export of a dispatch is in export.py.)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel.dates import format_date
from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError

from dispatch.errors import DispatchError, display_path
from dispatch.models import Edition
from dispatch.publishing.atomic import PAGE_MODE as PAGE_MODE  # the pages' mode, for those who check it
from dispatch.publishing.atomic import TEMP_PREFIX, Replace, write_atomic
from dispatch.values import Fact

PAGE_TEMPLATE = "edition.html"
INDEX_TEMPLATE = "index.html"
INDEX = "index.html"
MANIFEST = "editions.json"
MANIFEST_VERSION = 1
LOCK = ".publish.lock"
_PAGE_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}\.html$")
_META = re.compile(r'<meta name="dispatch:(\w+)" content="([^"]*)">')


class PublishError(DispatchError):
    """The web copy or the archive could not be written; the previous version is still in place."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        self.detail = message
        super().__init__(f"{display_path(path)}: {message}")

    @property
    def fact(self) -> Fact:
        return Fact.of("error.publish", path=display_path(self.path), detail=self.detail)


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
        Path(__file__).resolve().parents[1] / "_templates" / "web",
        Path(__file__).resolve().parents[3] / "templates" / "web",
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


def render_template(templates_dir: Path, name: str, values: Mapping[str, Any]) -> str:
    try:
        return _environment(templates_dir).get_template(name).render(values)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None) or 1
        raise PublishError(templates_dir / name, f"line {line}: {exc}") from None


def render_page(edition: Edition, templates_dir: Path, now: datetime) -> str:
    """The edition as a web page. ``now`` (local time) is the publication time shown."""
    heading = edition.subject if edition.urgent else _heading(edition.date)
    return render_template(templates_dir, PAGE_TEMPLATE, {
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
    return render_template(templates_dir, INDEX_TEMPLATE, {
        "title": title,
        "editions": entries,
        "updated": now.isoformat(timespec="seconds"),
        "updated_label": _time_label(now),
    })


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
        with contextlib.suppress(OSError):
            stale.unlink()


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
    published = datetime.fromtimestamp(page.stat().st_mtime, UTC)
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
    _make_directory(directory)
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
        raise _failed(exc, directory) from None
    return Published(page=page, index=directory / INDEX, manifest=directory / MANIFEST)


def publish_page(directory: Path, name: str, data: bytes, what: str, *, replace: Replace = os.replace) -> Path:
    """Write one more page (``what``, for messages) into the publish directory, under the
    same lock as the editions: another publisher clears the temporary files it finds there
    while it holds the lock, and would otherwise remove this page's before its rename."""
    _make_directory(directory)
    path = directory / name
    try:
        with _Locked(directory):
            _refuse_link(path, what)
            write_atomic(path, data, replace=replace)
    except OSError as exc:
        raise _failed(exc, directory) from None
    return path


def _failed(exc: OSError, directory: Path) -> PublishError:
    """A file system error while publishing, named by the file it concerned."""
    return PublishError(Path(exc.filename) if exc.filename else directory, exc.strerror or str(exc))


def _make_directory(directory: Path) -> None:
    if directory.is_symlink():
        raise PublishError(directory, (
            f"the publish directory is a symbolic link (to {_link_target(directory)}); dispatch does not "
            "follow links there; set publish.dir to the real directory"))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PublishError(directory, f"cannot create the publish directory: {exc.strerror}") from None
