"""Checks on the rendered message before anything is sent (pure).

Each finds something a recipient would suffer from: a clipped report in Gmail, a
broken line in transit, a dead link, an unreadable image, a notification title that
differs from the subject, or a text part that leaves out what the HTML says.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from dispatch.errors import Problem

MAX_HTML_BYTES = 90 * 1024  # Gmail clips at 102 KB; keep a margin
MAX_LINE_OCTETS = 998  # RFC 5322 2.1.1
_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)


class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: list[str] = []
        self.in_title = False
        self.links: list[str] = []
        self.images_without_alt: list[str] = []
        self.text: list[str] = []
        self.hidden_depth = 0
        self.skip: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "title":
            self.in_title = True
        elif tag in ("style", "script"):
            self.skip.append(tag)
        elif tag == "a":
            self.links.append((values.get("href") or "").strip())
        elif tag == "img" and "alt" not in values:
            self.images_without_alt.append(values.get("src") or "")
        if tag == "div" and "display:none" in (values.get("style") or "").replace(" ", ""):
            self.hidden_depth += 1
        elif self.hidden_depth and tag == "div":
            self.hidden_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif self.skip and tag == self.skip[-1]:
            self.skip.pop()
        elif tag == "div" and self.hidden_depth:
            self.hidden_depth -= 1

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        elif not self.skip and not self.hidden_depth:
            self.text.append(data)


def bad_link(href: str) -> str | None:
    lowered = href.strip().lower()
    if not lowered:
        return "an empty link"
    if lowered.startswith("#"):
        return f"a placeholder link {href!r}"
    if lowered.replace(" ", "").startswith(("javascript:", "vbscript:", "data:")):
        return f"a script link {href[:40]!r}"
    return None


def check(subject: str, html: str, text: str, message: bytes, where: str) -> list[Problem]:
    """Problems with the message as it would be sent; ``where`` is 'path:line' of the edition."""
    path, _, line = where.rpartition(":")
    at = int(line) if line.isdigit() else 1
    problems: list[Problem] = []

    def problem(message_text: str) -> None:
        problems.append(Problem(path or where, at, message_text))

    size = len(html.encode("utf-8"))
    if size > MAX_HTML_BYTES:
        problem(f"the HTML part is {size / 1024:.0f} KB, over the {MAX_HTML_BYTES // 1024} KB limit (Gmail clips at 102 KB and hides the rest); shorten the edition")

    for number, raw in enumerate(message.split(b"\r\n"), start=1):
        if len(raw) > MAX_LINE_OCTETS:
            problem(f"line {number} of the message is {len(raw)} octets, over the {MAX_LINE_OCTETS} allowed (RFC 5322); relays may break it")
            break

    scan = _Scan()
    scan.feed(html)
    for href in scan.links:
        reason = bad_link(href)
        if reason:
            problem(f"{reason} in the HTML; give every link a real https:// address")
    for src in scan.images_without_alt:
        problem(f"image {src[:60]!r} has no alt text; add alt=\"\" if it is decorative")
    title = " ".join("".join(scan.title).split())
    if title != " ".join(subject.split()):
        problem(f"the HTML <title> {title!r} differs from the Subject {subject!r}; they must be the same")

    html_words = {w.casefold() for w in _WORD.findall(" ".join(scan.text))}
    text_words = {w.casefold() for w in _WORD.findall(text)}
    missing = sorted(html_words - text_words)
    if missing:
        problem(f"the text part lacks words the HTML has ({', '.join(missing[:8])}); render both from the same content")
    return problems
