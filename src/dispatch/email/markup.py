"""Editors' Markdown -> safe HTML and readable plain text, from the same parse.

Raw HTML in the Markdown is escaped, never interpreted: a pasted ``<script>`` shows
as text and the edition still goes out. Bare addresses (``https://…``, ``www.…``, an
e-mail address) become links; a long one is shown shortened in the HTML (the text part
keeps it whole, since there it is what the reader copies). A list item may carry
markers ("Nytt", "Ändrat", "Rättat"), given by its index in document order (see ``bullets``).
"""

from __future__ import annotations

import itertools
import re
import textwrap
from collections.abc import Sequence, Set
from functools import lru_cache
from typing import TypeAlias

from markdown_it import MarkdownIt
from markdown_it.token import Token

TEXT_WIDTH = 76
LINK_LABEL_MAX = 40  # characters of a bare address shown in the HTML; about 320 px at 16 px Arial
MARKS = {"new": "Nytt", "changed": "Ändrat", "corrected": "Rättat"}
# A bullet's markers: none, one ("new"), or several (("changed", "corrected"): changed since
# the day before, and changed again by this correction).
Mark: TypeAlias = str | tuple[str, ...] | None


@lru_cache(maxsize=1)
def markdown_parser() -> MarkdownIt:
    """What the editor wrote, without linkify: the editorial checks read the source through
    this one, so a bare address inside a broken link does not split the text they quote."""
    # "commonmark" with html off: raw HTML becomes escaped text. Tables are not
    # enabled: they render badly in Outlook and editors have not needed them.
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


@lru_cache(maxsize=1)
def _renderer() -> MarkdownIt:
    """What the reader gets: the same, with bare addresses made into links (linkify-it-py)."""
    md = MarkdownIt("commonmark", {"html": False, "linkify": True, "typographer": False}).enable("linkify")
    md.core.ruler.push("https_for_www", _https_for_www)
    return md


def _https_for_www(state: object) -> None:
    """linkify turns 'www.1177.se' (an address written without its scheme) into http://; the
    region's sites are https, and an http link in a report is a redirect slower and looks careless."""
    for block in getattr(state, "tokens", []):
        children = block.children or []
        for child, label in itertools.pairwise(children):
            href = str(child.attrs.get("href", ""))
            if (child.type == "link_open" and child.markup == "linkify" and href.startswith("http://")
                    and not label.content.lower().startswith("http://")):
                child.attrs["href"] = "https://" + href[len("http://"):]


def _parse(markdown: str) -> list[Token]:
    return _renderer().parse(markdown)


def to_html(markdown: str, marks: Sequence[Mark] = ()) -> str:
    """HTML for the email and the intranet page; ``marks[i]`` ("new", "changed", "corrected",
    or several) marks the i-th list item (``bullets`` order)."""
    tokens = _parse(markdown)
    _mark_items(tokens, marks, html=True)
    for token in tokens:
        _shorten_bare_links(token)
    md = _renderer()
    return str(md.renderer.render(tokens, md.options, {}))


def to_text(markdown: str, marks: Sequence[Mark] = (), *, emphasis: bool = True) -> str:
    """Plain text for the text/plain part: bullets as '- ', links as 'label <url>',
    quotes as '> ', strong emphasis as '*text*' (``emphasis``), a marker as '[Nytt] '."""
    tokens = _parse(markdown)
    _mark_items(tokens, marks, html=False)
    return _TextWriter(emphasis).write(tokens).strip("\n")


def bullets(markdown: str, *, addresses: bool = True) -> list[str]:
    """The text of each list item's own first paragraph, in document order (nested items
    included): what the markers compare between editions, and what ``marks`` index.
    Without ``addresses`` a link is its label alone (what the "what is new" box quotes)."""
    found: list[str] = []
    tokens = _parse(markdown)
    for index, token in enumerate(tokens):
        if token.type == "list_item_open":
            inline = _item_inline(tokens, index)
            # Without emphasis marks: making a word bold is not news.
            text = inline_text(inline, emphasis=False, addresses=addresses) if inline is not None else ""
            found.append(" ".join(text.split()))
    return found


def mark_words(mark: Mark) -> tuple[str, ...]:
    """The markers' kinds of one bullet, known ones only, in the order given."""
    kinds = (mark,) if isinstance(mark, str) else mark or ()
    return tuple(kind for kind in kinds if kind in MARKS)


def unique_ids(names: Sequence[str], reserved: Set[str] = frozenset()) -> list[str]:
    """The names as ids unique in one document, none of them reserved: a repeated one gets
    '-2', '-3' ('lagesbild', 'lagesbild-2'), so that a link to it lands on its own element."""
    taken = set(reserved)
    ids = []
    for name in names:
        found, number = name, 1
        while found in taken:
            number += 1
            found = f"{name}-{number}"
        taken.add(found)
        ids.append(found)
    return ids


def short_link_label(url: str, limit: int = LINK_LABEL_MAX) -> str:
    """'https://example.org/a/very/long/path?x=1' -> 'example.org/a/very…path?x=1' within ``limit``."""
    shown = re.sub(r"^(https?://|mailto:)", "", url)
    if len(shown) <= limit:
        return shown
    tail = max(limit // 3, 8)
    return shown[: limit - tail - 1] + "…" + shown[-tail:]


def _item_inline(tokens: list[Token], start: int) -> Token | None:
    """The inline token of the list item opening at ``start`` (None for an item that opens
    straight into a nested list)."""
    for token in tokens[start + 1:]:
        if token.type == "inline":
            return token
        if token.type in ("list_item_open", "list_item_close"):
            return None
    return None


def _mark_items(tokens: list[Token], marks: Sequence[Mark], *, html: bool) -> None:
    if not any(marks):
        return
    number = 0
    for index, token in enumerate(tokens):
        if token.type != "list_item_open":
            continue
        kinds = mark_words(marks[number]) if number < len(marks) else ()
        number += 1
        inline = _item_inline(tokens, index) if kinds else None
        if inline is None:
            continue
        if html:
            # The whole bullet is tinted (by its weightiest marker: a correction over a change
            # over a new point) and the words are bold at body size, so that a skim finds it;
            # <strong>: bold even where the stylesheet is lost.
            tint = max(kinds, key=_WEIGHT.index)
            token.attrs["class"] = f"marked marked-{tint}"
            words = " ".join(f'<strong class="mark mark-{kind}">{MARKS[kind]}</strong>' for kind in kinds)
            marker = Token("html_inline", "", 0, content=words + " ")
        else:
            marker = Token("text", "", 0, content="".join(f"[{MARKS[kind]}] " for kind in kinds))
        inline.children = [marker, *(inline.children or [])]


_WEIGHT = ("new", "changed", "corrected")


def _shorten_bare_links(token: Token) -> None:
    """A bare address is its own label: shorten a long one, so that it does not dominate
    the bullet on a phone (the href stays whole)."""
    children = token.children or []
    for index, child in enumerate(children[:-1]):
        label = children[index + 1]
        if child.type == "link_open" and child.info == "auto" and label.type == "text" and len(label.content) > LINK_LABEL_MAX:
            label.content = short_link_label(label.content)


def inline_text(token: Token, *, emphasis: bool = True, addresses: bool = True) -> str:
    parts: list[str] = []
    href: str | None = None
    auto = False
    label_start = 0
    for child in token.children or []:
        if child.type in ("text", "code_inline", "html_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(str(child.attrs.get("alt", "")) or child.content)
        elif child.type in ("strong_open", "strong_close") and emphasis:
            parts.append("*")  # the plain-text convention for bold: the editor's emphasis survives
        elif child.type == "link_open":
            href = str(child.attrs.get("href", ""))
            auto = child.info == "auto"  # a bare address: its label is the address
            label_start = len(parts)
        elif child.type == "link_close" and href is not None:
            label = "".join(parts[label_start:]).strip()
            if href and href != label and not auto and addresses:
                parts.append(f" <{href}>")
            href = None
    return "".join(parts)


class _TextWriter:
    """Blocks as plain text. ``containers`` is the nesting ("list" or "quote", outermost
    first): each adds its indent, '  ' or '> ', to the lines inside it."""

    def __init__(self, emphasis: bool = True) -> None:
        self.emphasis = emphasis
        self.out: list[str] = []
        self.containers: list[str] = []
        self.ordered: list[int | None] = []
        self.prefix_next: str | None = None

    @property
    def list_depth(self) -> int:
        return self.containers.count("list")

    def write(self, tokens: list[Token]) -> str:
        for token in tokens:
            kind = token.type
            if kind in ("bullet_list_open", "ordered_list_open"):
                self.containers.append("list")
                self.ordered.append(int(token.attrs.get("start", 1) or 1) if kind == "ordered_list_open" else None)
            elif kind in ("bullet_list_close", "ordered_list_close"):
                self.containers.pop()
                self.ordered.pop()
                if self.list_depth == 0:
                    self._blank()
            elif kind == "blockquote_open":
                self.containers.append("quote")
            elif kind == "blockquote_close":
                if self.out and self.out[-1] == self._prefix().rstrip():
                    self.out.pop()  # the quote's own trailing '>' line: the quote ends here
                self.containers.pop()
                self._blank()
            elif kind == "list_item_open":
                number = self.ordered[-1]
                if number is None:
                    self.prefix_next = "- "
                else:
                    self.prefix_next = f"{number}. "
                    self.ordered[-1] = number + 1
            elif kind == "inline":
                self._paragraph(inline_text(token, emphasis=self.emphasis))
            elif kind == "heading_close" or (kind == "paragraph_close" and self.list_depth == 0):
                self._blank()
            elif kind in ("fence", "code_block"):
                self.out.extend(self._prefix() + line for line in token.content.rstrip("\n").splitlines())
                self._blank()
            elif kind == "hr":
                self.out.append(self._prefix() + "-" * 20)
                self._blank()
        return "\n".join(self.out)

    def _prefix(self, item: str | None = None) -> str:
        """The indent of a line here; ``item`` takes the place of the innermost list's indent
        (the first line of an item, '- ' or '2. ', and the lines that follow it)."""
        parts = ["> " if kind == "quote" else "  " for kind in self.containers]
        if item is not None and "list" in self.containers:
            parts[len(parts) - 1 - self.containers[::-1].index("list")] = item
        return "".join(parts)

    def _blank(self) -> None:
        # Inside a quote a blank line keeps its '>', so the quote reads as one block.
        self.out.append(self._prefix().rstrip())

    def _paragraph(self, text: str) -> None:
        if self.prefix_next is not None:
            first = self._prefix(self.prefix_next)
            rest = self._prefix(" " * len(self.prefix_next))
            self.prefix_next = None
        else:
            first = rest = self._prefix()
        wrapped = textwrap.fill(
            text, width=TEXT_WIDTH, initial_indent=first, subsequent_indent=rest,
            break_long_words=False, break_on_hyphens=False,
        )
        self.out.append(wrapped)
