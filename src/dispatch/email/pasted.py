"""Formatted text pasted from Word, Outlook or Teams -> an edition's Markdown.

The browser hands over the clipboard's ``text/html``; this turns it into the Markdown an
editor would have typed: headings as ``##``, bullets as ``- `` (Word's list paragraphs,
which are ``<p class="MsoListParagraph">`` with a typed bullet rather than ``<li>``,
included), bold as ``**…**``, links as ``[…](https://…)``.

Sanitised first, converted second: only an allowlist of elements survives (everything else
is unwrapped to its text, or dropped with its content where the content is code or
styling: ``<script>``, ``<style>``, Word's conditional comments), no attribute but a link's
address survives, and only http(s) and mailto addresses stay links. markdownify then writes
the Markdown and escapes what in the text would read as Markdown, so pasted text stays text.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from bs4 import BeautifulSoup, Tag
from bs4.element import Comment, Declaration, Doctype, NavigableString, ProcessingInstruction
from markdownify import MarkdownConverter

# Word's HTML for a few pages with its styles is a few hundred kB; a long report with tables a
# few MB. The console refuses more (and the browser then pastes the plain text).
MAX_PASTE_BYTES = 8_000_000
# Dropped with everything inside them: code, styling, metadata and embedded documents.
DROPPED = {"script", "style", "head", "title", "meta", "link", "template", "noscript", "iframe", "frame", "frameset",
           "object", "embed", "applet", "svg", "math", "canvas", "audio", "video", "img", "picture", "source", "input",
           "button", "select", "textarea", "xml"}
# Office's own elements dropped likewise: VML drawings (v:), Word's (w:) and its equations (m:).
# Others (a smart tag such as <st1:City>) hold the text and are unwrapped.
DROPPED_PREFIXES = ("v:", "w:", "m:")
# Kept as elements (without attributes, except a link's href); anything else becomes its text.
KEPT = {"h1", "h2", "h3", "h4", "h5", "h6", "p", "br", "ul", "ol", "li", "strong", "b", "em", "i", "a", "blockquote",
        "code", "pre"}
KEPT_BLOCKS = {"h1", "h2", "h3", "h4", "h5", "h6", "p", "ul", "ol", "li", "blockquote", "pre"}
BLOCKS = {"div", "section", "article", "header", "footer", "main", "aside", "nav", "tr", "table", "dl", "dt", "dd",
          "figure", "figcaption", "address", "center"}
LINK_SCHEMES = ("http://", "https://", "mailto:")
_ADDRESS_SAFE = ":/?#@!$&'*+,;=%~-._"  # an address's own punctuation; "()[]<> \"\\`" are encoded
_WORD_LIST_LEVEL = re.compile(r"mso-list:\s*\S+\s+level(\d+)", re.IGNORECASE)
_WORD_ORDERED_BULLET = re.compile(r"^\s*(\d+|[a-zA-Z]|[ivxlcdmIVXLCDM]+)[.)]\s*$")
_BOLD_STYLE = re.compile(r"font-weight:\s*(bold|[6-9]00)", re.IGNORECASE)
_NOT_BOLD_STYLE = re.compile(r"font-weight:\s*(normal|[1-4]00)", re.IGNORECASE)
_ITALIC_STYLE = re.compile(r"font-style:\s*italic", re.IGNORECASE)
_BLANK_LINES = re.compile(r"\n{3,}")
_DANGLING_BREAK = re.compile(r"(?<!\\)((?:\\\\)*)\\\n(?=\s*(?:\n|$))")


# Escaping pasted text, as little as keeps it text: what would read as Markdown anywhere in a
# line (escape_text, each piece of text), and what would at the start of one (escape_line_starts,
# each paragraph and list item once it is put together).
# (An address starts where a run of its characters starts, and is read without going back, so
# that a long run of letters without "@" costs one pass, not one per letter.)
_URL = re.compile(r"(?:https?://|mailto:|www\.)[^\s<>\[\]`*]++"
                  r"|(?<![\w.+-])[A-Za-z0-9][\w.+-]*+@[A-Za-z0-9-]++(?:\.[A-Za-z0-9-]++)+", re.IGNORECASE)
# Every backslash is doubled: one before punctuation, a line's end or a moved bold mark would escape it.
# An underscore stays bare only between two letters or digits ("namn_efternamn"), where it cannot emphasise.
_INLINE = re.compile(r"[*`\[\]<\\]|&(?=#?\w+;)|(?<![^\W_])_|_(?![^\W_])")
# At a line's start (a block's first line, or after a hard line break): a heading, a bullet, a
# quote, a setext underline, a fence, or a number and "." or ")" (a numbered item).
_LINE_START = re.compile(r"(\A|\\\n)(\s*)(#{1,6}(?=\s|$)|[-+=~](?=[\s\-+=~]|$)|>|\d{1,9}(?=[.)](?:\s|$)))")


def escape_text(text: str) -> str:
    """Pasted text as Markdown that reads as exactly that text. Addresses are left whole so
    that the edition still makes them links (an escape inside one would cut it short)."""
    parts: list[str] = []
    end = 0
    for found in _URL.finditer(text):
        parts.append(_INLINE.sub(_escaped, text[end:found.start()]))
        parts.append(found.group(0))
        end = found.end()
    parts.append(_INLINE.sub(_escaped, text[end:]))
    return "".join(parts)


def escape_line_starts(block: str) -> str:
    """A block's text (its pieces escaped already) with what would start a heading, a list or
    a quote at the start of one of its lines escaped too; a number keeps its digits first."""
    def escaped(found: re.Match[str]) -> str:
        start, space, construct = found.groups()
        return start + space + (construct + "\\" if construct[0].isdigit() else "\\" + construct)

    return _LINE_START.sub(escaped, block)


def _escaped(found: re.Match[str]) -> str:
    return "\\" + found.group(0)


_EDGES = re.compile(r"^([\W_]*)([^\W_](?:.*[^\W_])?|)([\W_]*)$", re.DOTALL)  # around the first and last letter or digit


class PastedMarkdown(MarkdownConverter):
    """markdownify, set for an edition: ATX headings, ``-`` bullets, ``**`` bold; the pasted
    HTML's line breaks are spaces (Word breaks its HTML's lines anywhere), and the text is
    escaped by ``escape_text``."""

    def __init__(self) -> None:
        super().__init__(heading_style="atx", bullets="-", strong_em_symbol="*", autolinks=False,
                         newline_style="backslash", wrap=True, wrap_width=None)

    def escape(self, text: str, parent_tags: set[str]) -> str:
        return escape_text(text) if text else ""

    def convert_p(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return self._markdownify("convert_p", el, escape_line_starts(text.strip(" \t\r\n")), parent_tags)

    def convert_li(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return self._markdownify("convert_li", el, escape_line_starts((text or "").strip()), parent_tags)

    def convert_b(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return self._emphasis(el, text, parent_tags, "**")

    convert_strong = convert_b

    def convert_em(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return self._emphasis(el, text, parent_tags, "*")

    convert_i = convert_em

    def _emphasis(self, el: Tag, text: str, parent_tags: set[str], marker: str) -> str:
        """``**bold**`` with its marks against letters or digits: punctuation and spaces at the
        edges go outside (Markdown does not open "**" between a letter and a colon, so
        "0**:x**" would show its stars), and nothing but punctuation stays plain text."""
        if "_noformat" in parent_tags:
            return text
        if el.find(["a", "b", "strong", "i", "em"]) is not None:  # nested markup: as markdownify writes it
            return self._markdownify("convert_b" if marker == "**" else "convert_em", el, text, parent_tags)
        found = _EDGES.match(text)
        lead, core, trail = found.groups() if found else ("", text, "")
        return f"{lead}{marker}{core}{marker}{trail}" if core else text

    def _markdownify(self, conversion: str, el: Tag, text: str, parent_tags: set[str]) -> str:
        """markdownify's own conversion of an element (its stubs do not name them)."""
        return str(getattr(MarkdownConverter, conversion)(self, el, text, parent_tags))


def markdown_from_clipboard(html: str) -> str:
    """The Markdown for pasted HTML (sanitised here: the caller need not; the caller bounds
    its size, as the console does with MAX_PASTE_BYTES)."""
    soup = BeautifulSoup(html, "html.parser")
    body = soup.body or soup
    _drop_code_and_comments(body)
    _word_lists(body)
    _styled_emphasis(body)
    _keep_only_allowed(body)
    _paragraphs_for_loose_text(body)
    for heading in body.find_all(["h1", "h2", "h3", "h4", "h5", "h6"]):
        # An edition's sections are "##"; a smaller heading inside one is "###".
        heading.name = "h2" if heading.name in ("h1", "h2") else "h3"
    markdown = PastedMarkdown().convert_soup(body)
    return _tidy(markdown)


def _drop_code_and_comments(root: Tag) -> None:
    for node in list(root.descendants):
        if isinstance(node, (Comment, Declaration, Doctype, ProcessingInstruction)):
            node.extract()
    for element in root.find_all(lambda tag: tag.name.lower() in DROPPED or tag.name.lower().startswith(DROPPED_PREFIXES)):
        if element.parent is not None:
            element.decompose()
    # Word's typed bullets ("·", "o", "1.") sit in spans styled mso-list:Ignore: the list
    # paragraph's own bullet is written by the conversion.
    for span in root.find_all(style=re.compile(r"mso-list:\s*ignore", re.IGNORECASE)):
        if span.parent is None:
            continue
        paragraph = span.find_parent("p")
        if paragraph is not None and "data-typed-bullet" not in paragraph.attrs:
            paragraph["data-typed-bullet"] = span.get_text().replace("\u00a0", " ").strip()
        span.decompose()


def _word_lists(root: Tag) -> None:
    """Word's list paragraphs (a run of ``<p class="MsoListParagraph…">``, or any paragraph
    styled ``mso-list: lN levelN``) become ``<ul>``/``<ol>`` with ``<li>``, nested by level."""
    for paragraph in root.find_all("p"):
        if paragraph.name != "p" or not _is_word_list_item(paragraph):  # an item of a run made a list already
            continue
        run = [paragraph]
        sibling = paragraph.next_sibling
        while sibling is not None:
            if isinstance(sibling, NavigableString) and not sibling.strip():
                sibling = sibling.next_sibling
                continue
            if isinstance(sibling, Tag) and sibling.name == "p" and _is_word_list_item(sibling):
                run.append(sibling)
                sibling = sibling.next_sibling
                continue
            break
        ordered = _typed_bullet_is_number(paragraph)
        top = root.new_tag("ol" if ordered else "ul")
        paragraph.insert_before(top)
        stack: list[tuple[int, Tag]] = [(1, top)]
        for item in run:
            level = _word_list_level(item)
            while level > stack[-1][0]:
                items = stack[-1][1].find_all("li", recursive=False)
                if not items:  # a list that starts deeper than its first level: kept at its top
                    break
                nested = root.new_tag("ol" if _typed_bullet_is_number(item) else "ul")
                items[-1].append(nested)  # a deeper level is a list inside the item before it
                stack.append((stack[-1][0] + 1, nested))
            while level < stack[-1][0] and len(stack) > 1:
                stack.pop()
            item.extract()
            item.name = "li"
            stack[-1][1].append(item)


def _is_word_list_item(paragraph: Tag) -> bool:
    """A list paragraph with a bullet or number: styled ``mso-list: lN levelN``, or of Word's
    class with the typed bullet it carries (a paragraph of the "List Paragraph" style with
    neither is an indented paragraph, not a point)."""
    classes = " ".join(str(name) for name in paragraph.get_attribute_list("class") or [])
    if _WORD_LIST_LEVEL.search(str(paragraph.get("style") or "")):
        return True
    return "msolistparagraph" in classes.lower() and "data-typed-bullet" in paragraph.attrs


def _word_list_level(paragraph: Tag) -> int:
    found = _WORD_LIST_LEVEL.search(str(paragraph.get("style") or ""))
    return max(1, min(int(found.group(1)), 6)) if found else 1


def _typed_bullet_is_number(paragraph: Tag) -> bool:
    return bool(_WORD_ORDERED_BULLET.match(str(paragraph.get("data-typed-bullet") or "")))


def _styled_emphasis(root: Tag) -> None:
    """Bold and italic written as styles (Word, Outlook, Google Docs) become ``<strong>`` and
    ``<em>``; a ``<b>`` styled not bold (Google Docs wraps everything in one) is unwrapped."""
    for element in root.find_all(True):
        style = str(element.get("style") or "")
        if element.name in ("b", "strong") and _NOT_BOLD_STYLE.search(style):
            element.unwrap()
        elif element.name == "span" and _BOLD_STYLE.search(style):
            element.name = "strong"
        elif element.name == "span" and _ITALIC_STYLE.search(style):
            element.name = "em"


def _keep_only_allowed(root: Tag) -> None:
    for element in list(root.find_all(True)):
        name = element.name.lower()
        if name == "a":
            href = str(element.get("href") or "").strip()
            if href.lower().startswith(LINK_SCHEMES):
                # Spaces, brackets and quotes percent-encoded: the address cannot end the
                # Markdown link early and start another one of its own.
                element.attrs = {"href": quote(href, safe=_ADDRESS_SAFE)}
                continue
            element.unwrap()
        elif name in KEPT:
            element.attrs = {}
        elif name in BLOCKS and element.find(list(KEPT_BLOCKS | BLOCKS)) is not None:
            element.unwrap()  # a block of blocks (Teams' <div>s): its blocks stand on their own
        elif name in BLOCKS:
            element.attrs = {}
            element.name = "p"  # a block of text stays a paragraph of its own
        elif name in ("td", "th"):
            element.insert_after(" ")
            element.unwrap()
        else:
            element.unwrap()


INLINE = {"strong", "b", "em", "i", "a", "code", "br"}


def _paragraphs_for_loose_text(root: Tag) -> None:
    """Text and inline elements directly in the body (not in a block) go into a paragraph,
    so that their first line is escaped as a paragraph's is."""
    loose: list[Tag | NavigableString] = []

    def gather() -> None:
        if any(isinstance(node, Tag) or node.strip() for node in loose):
            paragraph = root.new_tag("p")
            loose[0].insert_before(paragraph)
            for node in loose:
                paragraph.append(node.extract())
        loose.clear()

    for node in list(root.children):
        if isinstance(node, NavigableString) or (isinstance(node, Tag) and node.name in INLINE):
            loose.append(node)
        else:
            gather()
    gather()


def _tidy(markdown: str) -> str:
    lines = [line.rstrip() for line in markdown.replace("\u00a0", " ").replace("\r", "").split("\n")]
    # A line break (a trailing backslash) that ends its paragraph breaks nothing: Markdown
    # would show the backslash.
    text = _DANGLING_BREAK.sub("\n", "\n".join(lines) + "\n")
    return _BLANK_LINES.sub("\n\n", text).strip("\n") + "\n"
