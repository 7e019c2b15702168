"""Editors' mistakes in an edition's Markdown body, found before anyone reads them (pure).

Each mistake here renders as something other than what the editor meant (a literal
'#', a link that goes nowhere, text outside any section), and nobody notices until the
report has gone out. They are found on the same markdown-it token stream that renders
the message, so fenced code, indented code and inline code are never mistaken for
prose; the raw lines are only used to find the exact line and to tell a deliberately
escaped character (``\\*\\*``) from a forgotten one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from markdown_it.token import Token

from dispatch.email import markup
from dispatch.email.sections import split_sections
from dispatch.errors import Problem
from dispatch.values import Fact

# Addresses that work from inside an email. '#...' and empty hrefs are left to the
# pre-flight check, which reports placeholder links in the rendered HTML.
_SCHEMES = ("https://", "http://", "mailto:", "tel:")
# A host name first ('insidan.example.org/sida', 'www.vgr.se', 'vårdgivare.se'): the editor
# left out the scheme. Anything else ('/sida', 'sida.html') needs the full address.
_HOST = re.compile(r"^(?:[^\W_](?:[\w-]*[^\W_])?\.)+(?:[^\W\d_]{2,}|xn--[\w-]+)(?::\d+)?(?:[/?#]|$)")
# 'sida.html' looks like a host name but is a file next to a page the mail has no part of.
_FILE_NAME = re.compile(r"^[^/]*\.(?:html?|pdf|php|aspx?|docx?|xlsx?|pptx?|png|jpe?g|gif|txt)(?:[?#]|$)", re.IGNORECASE)
_EMAIL = re.compile(r"^[^@\s/]+@[^@\s/]+\.[a-z]{2,}$", re.IGNORECASE)
_PHONE = re.compile(r"^\+?[\d\s()-]{6,}$")

# A heading marker glued to its text. One '#' needs a letter after it, so '#1' or a
# hashtag-like '#42' stays text; two or more '#' at a line's start are always a heading try.
_GLUED_HEADING = re.compile(r"^(?:#(?=[^\W\d_])|#{2,6}(?=[^\s#]))")
# '](' left in text is a link markdown-it could not close. With a space between, only an
# address after it shows that a link was meant: '[red. anm.] (se nedan)' is prose.
_LEFTOVER_LINK = re.compile(r"\]\(|\]\s+\((?=https?://|www\.|mailto:|tel:)", re.IGNORECASE)
_BOLD = re.compile(r"\*\*|__")
_WWW_AUTOLINK = re.compile(r"<(www\.[^\s<>]+)>", re.IGNORECASE)
_IMAGE = re.compile(r"!\[")
# Characters that reach a text token exactly as written in the source (only ASCII
# punctuation can be backslash-escaped), so a needle made of them is found in the raw line.
_PLAIN = re.compile(r"[\w ]*")
_MAX_SHOWN = 50


def check(body: str, first_line: int, path: str, *, urgent: bool = False) -> list[Problem]:
    """Problems in the body of an edition (the text after the front matter).

    ``first_line`` is the file line where ``body`` starts; ``path`` the file as shown.
    Every problem found is returned, in line order.
    """
    # markdown-it splits lines on \n after turning \r\n and \r into \n; so must we, or
    # token maps and our line numbers would disagree.
    lines = re.split(r"\r\n|\r|\n", body)
    found: list[tuple[int, Fact]] = []  # (0-based body line, what is wrong)
    heading_lines: set[int] = set()
    reported: set[tuple[int, str]] = set()

    tokens = markup.markdown_parser().parse(body)
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag == "h1" and token.map:
            found.append((token.map[0], _top_level_heading(token, tokens[index + 1])))
            heading_lines.add(token.map[0])
        elif token.type == "inline" and token.map:
            for line, kind, message in _inline_problems(token, lines):
                # One mistake often leaves several traces on a line (both '**' of
                # '** text**'); one problem per kind and line is enough to fix it.
                if (line, kind) in reported:
                    continue
                reported.add((line, kind))
                found.append((line, message))
                if kind == "heading":
                    heading_lines.add(line)

    found.extend(_section_problems(body, urgent, heading_lines))
    return [Problem(path, first_line + line, message) for line, message in sorted(found, key=lambda item: item[0])]


def _top_level_heading(heading: Token, inline: Token) -> Fact:
    text = _shorten(inline.content.strip() or "Rubrik")
    if heading.markup == "#":
        return Fact.of("editorial.top_level_heading", text=text)
    return Fact.of("editorial.top_level_heading_underlined", text=text)


def _inline_problems(inline: Token, lines: list[str]) -> Iterator[tuple[int, str, Fact]]:
    """(line, kind, message) for one paragraph's or heading's inline content."""
    if inline.map is None:  # markdown-it maps every block's inline content; without one there is no line to name
        return
    line, end = inline.map
    at_line_start = True
    children = inline.children or []
    for index, child in enumerate(children):
        # A code span or an image's alt text may span lines without a softbreak token,
        # so 'line' can lag behind the truth; every search below goes forward from it
        # to the end of the block.
        if child.type in ("softbreak", "hardbreak"):
            line += 1
            at_line_start = True
            continue
        if child.type == "text":
            yield from _text_problems(child.content, line, end, lines, at_line_start)
        elif child.type == "link_open":
            href = str(child.attrs.get("href", ""))
            message = _schemeless_link(href)
            if message:
                written = re.compile("|".join(re.escape(f"{bracket}{h}") for bracket in "(<" for h in {href, _display(href)}))
                where = _find(lines, line, end, written)
                yield (line if where is None else where), f"scheme {href}", message
            label = _link_label(children[index + 1:])
            if " ".join(re.sub(r"[^\w ]", "", label.casefold()).split()) in _VAGUE_LINK_TEXTS:
                where = _find(lines, line, end, re.compile(re.escape(f"[{label}]")))
                yield (line if where is None else where), f"vague {label}", Fact.of("editorial.vague_link_text", text=label)
        elif child.type == "image":
            where = _find(lines, line, end, _IMAGE)
            yield (line if where is None else where), f"image {child.attrs.get('src')}", _image(child)
        at_line_start = False


# Link texts that only make sense with the sentence around them (WCAG 2.4.4).
_VAGUE_LINK_TEXTS = {"här", "klicka här", "klicka", "tryck här", "läs här", "here", "click here"}


def _link_label(rest: list[Token]) -> str:
    """The text of a link, from the tokens after its link_open up to its link_close."""
    parts = []
    for token in rest:
        if token.type == "link_close":
            break
        if token.type in ("text", "code_inline"):
            parts.append(token.content)
    return "".join(parts).strip()


def _text_problems(text: str, line: int, end: int, lines: list[str], at_line_start: bool) -> Iterator[tuple[int, str, Fact]]:
    glued = _GLUED_HEADING.match(text) if at_line_start else None
    if glued:
        hashes = glued.group(0)
        heading = re.compile(r"^ {0,3}" + re.escape(hashes + _plain_after(text, len(hashes))))
        where = _find(lines, line, end, heading)
        if where is not None:
            fixed = "##" if len(hashes) == 1 else hashes
            yield where, "heading", Fact.of("editorial.glued_heading", text=_shorten(text),
                                            fixed=f"{fixed} {_shorten(text[len(hashes):].strip())}")

    for match in _LEFTOVER_LINK.finditer(text):
        where = _find_literal(lines, line, end, text, match.start(), match.end())
        if where is None:
            continue
        opened = text.rfind("[", 0, match.start())
        fragment = text[opened if opened >= 0 else match.start():]
        closed = fragment.find(")")
        fragment = _shorten(fragment[: closed + 1] if closed >= 0 else fragment)
        if match.group(0) == "](":
            yield where, "link", Fact.of("editorial.unclosed_link", text=fragment)
        else:
            yield where, "link", Fact.of("editorial.spaced_link", text=fragment)

    for match in _BOLD.finditer(text):
        marker = match.group(0)
        before = text[match.start() - 1] if match.start() > 0 else " "
        after = text[match.end()] if match.end() < len(text) else " "
        # '__' inside a word (snake_case__name) is not emphasis in CommonMark and never was meant to be.
        if marker == "__" and before.isalnum() and after.isalnum():
            continue
        where = _find_literal(lines, line, end, text, match.start(), match.end())
        if where is None:
            continue
        escaped = "\\" + marker[0]
        yield where, "bold", Fact.of("editorial.unclosed_bold", marker=marker, escaped=escaped,
                                     text=_shorten(text[match.start():].strip()))

    for match in _WWW_AUTOLINK.finditer(text):
        written = match.group(0)
        where = _find(lines, line, end, re.compile(re.escape(written)))
        if where is not None:
            yield where, "www", Fact.of("editorial.www_autolink", text=written, fixed=f"<https://{match.group(1)}>")


def _schemeless_link(href: str) -> Fact | None:
    stripped = href.strip()
    if not stripped or stripped.startswith("#") or stripped.lower().startswith(_SCHEMES):
        return None
    shown = _display(stripped)
    if _EMAIL.match(shown):
        fix = f"'mailto:{shown}'"
    elif _PHONE.match(shown):
        number = re.sub(r"[^\d+]", "", shown)
        fix = f"'tel:{number}'"
    elif shown.startswith("//"):
        fix = f"'https:{shown}'"
    elif _HOST.match(shown) and not _FILE_NAME.match(shown):
        fix = f"'https://{shown}'"
    else:
        return Fact.of("editorial.relative_link", address=_shorten(shown))
    return Fact.of("editorial.schemeless_link", address=_shorten(shown), fixed=fix)


def _image(image: Token) -> Fact:
    alt = image.content.strip() or "Bild"
    src = _display(str(image.attrs.get("src", "")))
    return Fact.of("editorial.image", written=f"![{_shorten(alt)}]({_shorten(src)})", fixed=f"'[{alt}]({src})'")


def _section_problems(body: str, urgent: bool, heading_lines: set[int]) -> Iterator[tuple[int, Fact]]:
    # Sections found exactly as the edition splits them, or these checks would disagree
    # with what is sent.
    lead, sections = split_sections(body, 0)
    if not urgent:
        for index, text in enumerate(lead.split("\n")):
            if text.strip():
                # A top-level or glued heading is already reported at this line; fixing
                # it turns the text into a section, so a second problem would only confuse.
                if index not in heading_lines:
                    yield index, Fact.of("editorial.text_before_first_section", text=_shorten(text.strip()))
                break
    for heading, line, markdown in sections:
        if not markdown.strip():
            yield line, Fact.of("editorial.empty_section", heading=heading)


def _find(lines: list[str], start: int, end: int, pattern: re.Pattern[str]) -> int | None:
    """The first line in [start, end) whose raw text contains ``pattern``."""
    for index in range(start, min(end, len(lines))):
        if pattern.search(lines[index]):
            return index
    return None


def _find_literal(lines: list[str], start: int, end: int, text: str, at: int, marker_end: int) -> int | None:
    """The line where the marker ``text[at:marker_end]`` and the plain text after it stand unescaped.

    None when it is not in the source as written: the editor escaped it (``\\*\\*``) or
    wrote an entity, so the literal characters are what they meant.
    """
    written = text[at:marker_end] + _plain_after(text, marker_end)
    return _find(lines, start, end, re.compile(r"(?<!\\)" + re.escape(written)))


def _plain_after(text: str, at: int) -> str:
    match = _PLAIN.match(text, at)
    return match.group(0)[:20] if match else ""


def _display(href: str) -> str:
    # markdown-it percent-encodes 'å' and friends; show the address as the editor wrote it.
    return markup.markdown_parser().normalizeLinkText(href)


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"
