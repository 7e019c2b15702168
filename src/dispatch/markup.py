"""Editors' Markdown -> safe HTML and readable plain text, from the same parse.

Raw HTML in the Markdown is escaped, never interpreted: a pasted ``<script>`` shows
as text and the edition still goes out.
"""

from __future__ import annotations

import textwrap
from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.token import Token

TEXT_WIDTH = 76


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # "commonmark" with html off: raw HTML becomes escaped text. Tables are not
    # enabled: they render badly in Outlook and editors have not needed them.
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


def to_html(markdown: str) -> str:
    return str(_parser().render(markdown))


def to_text(markdown: str) -> str:
    """Plain text for the text/plain part: bullets as '- ', links as 'label <url>'."""
    return _TextWriter().write(_parser().parse(markdown)).strip("\n")


def links(markdown: str) -> list[tuple[str, str]]:
    """(label, href) of every link, in order."""
    found: list[tuple[str, str]] = []
    for token in _parser().parse(markdown):
        children = token.children or []
        href: str | None = None
        label: list[str] = []
        for child in children:
            if child.type == "link_open":
                href, label = str(child.attrs.get("href", "")), []
            elif child.type == "link_close" and href is not None:
                found.append(("".join(label), href))
                href = None
            elif href is not None and child.type in ("text", "code_inline"):
                label.append(child.content)
    return found


def inline_text(token: Token) -> str:
    parts: list[str] = []
    href: str | None = None
    label_start = 0
    for child in token.children or []:
        if child.type in ("text", "code_inline", "html_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(str(child.attrs.get("alt", "")) or child.content)
        elif child.type == "link_open":
            href = str(child.attrs.get("href", ""))
            label_start = len(parts)
        elif child.type == "link_close" and href is not None:
            label = "".join(parts[label_start:]).strip()
            if href and href != label:
                parts.append(f" <{href}>")
            href = None
    return "".join(parts)


class _TextWriter:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.list_depth = 0
        self.ordered: list[int | None] = []
        self.prefix_next: str | None = None

    def write(self, tokens: list[Token]) -> str:
        for token in tokens:
            kind = token.type
            if kind in ("bullet_list_open", "ordered_list_open"):
                self.list_depth += 1
                self.ordered.append(int(token.attrs.get("start", 1) or 1) if kind == "ordered_list_open" else None)
            elif kind in ("bullet_list_close", "ordered_list_close"):
                self.list_depth -= 1
                self.ordered.pop()
                if self.list_depth == 0:
                    self.out.append("")
            elif kind == "list_item_open":
                number = self.ordered[-1]
                if number is None:
                    self.prefix_next = "- "
                else:
                    self.prefix_next = f"{number}. "
                    self.ordered[-1] = number + 1
            elif kind == "inline":
                self._paragraph(inline_text(token))
            elif kind == "heading_close" or (kind == "paragraph_close" and self.list_depth == 0):
                self.out.append("")
            elif kind in ("fence", "code_block"):
                self.out.extend(token.content.rstrip("\n").splitlines())
                self.out.append("")
            elif kind == "hr":
                self.out.extend(["-" * 20, ""])
        return "\n".join(self.out)

    def _paragraph(self, text: str) -> None:
        indent = "  " * max(self.list_depth - 1, 0)
        if self.prefix_next is not None:
            first = indent + self.prefix_next
            rest = indent + " " * len(self.prefix_next)
            self.prefix_next = None
        else:
            first = rest = indent + ("  " if self.list_depth else "")
        wrapped = textwrap.fill(
            text, width=TEXT_WIDTH, initial_indent=first, subsequent_indent=rest,
            break_long_words=False, break_on_hyphens=False,
        )
        self.out.append(wrapped)
