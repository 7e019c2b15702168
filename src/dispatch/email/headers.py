"""Header fields we write ourselves: RFC 2047 encoded-words that carry their own spaces,
folded at whitespace to lines of at most 78 octets (pure).

Why not the standard library's folder: ``EmailMessage(policy=policy.SMTP)`` folds a
Swedish subject between two encoded-words and puts the space that separated two words
of text *between* them, where a decoder must drop it (RFC 2047 6.2): "stänger för"
reached readers as "stängerför". Here a value that needs encoding becomes encoded-words
only, each holding its spaces inside it, so the whitespace between two words is
always folding whitespace and never text. A value that needs none is written as it is,
folded before a space (unfolding removes only the CRLF, RFC 5322 2.2.3).

Every function returns whole header lines as ASCII bytes ending in CRLF, or a folded
value (lines joined by CRLF SP) for the To line that is patched in per recipient.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

from dispatch.errors import DispatchError

MAX_LINE = 78  # RFC 5322 2.1.1: SHOULD be no more than 78 characters, excluding the CRLF
MAX_WORD = 75  # RFC 2047 2: an encoded-word is at most 75 characters
_WORD_OVERHEAD = len("=?utf-8?b?") + len("?=")
_UNSAFE_PLAIN = re.compile(r"[^\x21-\x7e ]|=\?|\s\s|^\s|\s$")
# RFC 5322 3.2.3 specials: a display name with one of these must be quoted (or encoded).
_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')
# A line break that is not folding whitespace: a header injection, whoever wrote it.
_BARE_BREAK = re.compile(r"\r\n(?![ \t])|\r(?!\n)|(?<!\r)\n")


class HeaderValueError(DispatchError, ValueError):
    """A value that cannot go into a header (an address with a line break)."""


def needs_encoding(text: str) -> bool:
    """Whether ``text`` must be written as encoded-words: anything but printable ASCII,
    something a decoder would take for an encoded-word ('=?'), or spaces that folding
    would not keep (leading, trailing, or two in a row)."""
    return bool(_UNSAFE_PLAIN.search(text))


def encode_words(text: str, max_word: int = MAX_WORD) -> list[str]:
    """``text`` as 'B' encoded-words of at most ``max_word`` characters, each holding
    whole characters (a multi-byte character is never split across two words), spaces
    included: a decoder joins adjacent encoded-words and drops the whitespace between them."""
    room = (max_word - _WORD_OVERHEAD) // 4 * 3  # base64: 3 bytes become 4 characters
    if room < 4:
        raise ValueError(f"an encoded-word of {max_word} characters has no room for a character")
    words: list[bytes] = []
    chunk = b""
    for char in text:
        encoded = char.encode("utf-8")
        if chunk and len(chunk) + len(encoded) > room:
            words.append(chunk)
            chunk = b""
        chunk += encoded
    if chunk or not words:
        words.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(word).decode('ascii')}?=" for word in words]


def fold(name: str, atoms: Iterable[str]) -> bytes:
    """'Name: atom atom ...' as header lines of at most 78 octets where the atoms allow it,
    broken before the space between two atoms; ends in CRLF."""
    return (name + ": " + fold_value(len(name) + 2, atoms) + "\r\n").encode("ascii")


def fold_value(used: int, atoms: Iterable[str]) -> str:
    """The atoms joined by single spaces, a CRLF put before a space wherever a line
    (starting with ``used`` characters already on it) would pass 78 octets."""
    lines: list[str] = []
    line = ""
    width = used
    for atom in atoms:
        if not line:
            line = atom
            width += len(atom)
        elif width + 1 + len(atom) <= MAX_LINE:
            line += " " + atom
            width += 1 + len(atom)
        else:
            lines.append(line)
            line = atom
            width = 1 + len(atom)
    lines.append(line)
    return "\r\n ".join(lines)


def _text_atoms(used: int, text: str) -> list[str]:
    """The atoms of an unstructured value or a display name: its words when it is plain
    ASCII that folding keeps as it is, else encoded-words."""
    words = text.split(" ")
    if not needs_encoding(text) and all(len(word) + 1 <= MAX_LINE for word in words) and used + len(words[0]) <= MAX_LINE:
        return words
    return encode_words(text, min(MAX_WORD, MAX_LINE - max(used, 1)))


def unstructured(name: str, text: str) -> bytes:
    """A Subject-like field (Subject, Thread-Topic): decodes to exactly ``text``."""
    return fold(name, _text_atoms(len(name) + 2, text))


def phrase_atoms(used: int, display_name: str) -> list[str]:
    """A display name (RFC 5322 phrase) as atoms: plain words, one quoted string where it
    has specials and fits on a line, else plain words and encoded-words in turn.

    In a phrase, decoders disagree about the whitespace between two adjacent encoded-words:
    RFC 2047 (and Outlook, Gmail, Apple Mail) drop it, Python's parser keeps it as a space.
    So a display name never has two: each run of words that need encoding becomes one
    encoded-word holding the run's spaces, between plain words that both read the same.
    A run too long for one 75-character word stays one longer word (every decoder reads
    it alike; the line stays far below 998 octets) rather than be split."""
    if not display_name:
        return []
    if not needs_encoding(display_name):
        if not _SPECIALS.search(display_name):
            return _text_atoms(used, display_name)
        quoted = '"' + display_name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if used + len(quoted) + 1 <= MAX_LINE:
            return [quoted]
    words = display_name.split(" ")
    if any(word == "" for word in words):  # spaces a phrase would not keep: the whole name, one word
        return [_one_word(display_name)]
    atoms: list[str] = []
    run: list[str] = []
    for word in words:
        if needs_encoding(word) or _SPECIALS.search(word) or len(word) + 1 > MAX_LINE:
            run.append(word)
            continue
        if run:
            atoms.append(_one_word(" ".join(run)))
            run = []
        atoms.append(word)
    if run:
        atoms.append(_one_word(" ".join(run)))
    return atoms


def _one_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode('utf-8')).decode('ascii')}?="


def mailbox_atoms(used: int, display_name: str, address: str) -> list[str]:
    """'Display Name <address>' (or the bare address) as atoms for fold()."""
    if _BARE_BREAK.search(address) or not address.isascii() or " " in address:
        raise HeaderValueError(f"refusing address {address!r} in a header (line break, space or non-ASCII)")
    if not display_name:
        return [address]
    return [*phrase_atoms(used, display_name), f"<{address}>"]


def mailbox(name: str, display_name: str, address: str) -> bytes:
    """From, Reply-To, Sender: one mailbox."""
    return fold(name, mailbox_atoms(len(name) + 2, display_name, address))


def group_atoms(used: int, display_name: str) -> list[str]:
    """An empty group 'Name:;' (RFC 5322 3.4), as the To of a Bcc batch."""
    atoms = phrase_atoms(used, display_name) or ["Mottagare"]
    return [*atoms[:-1], atoms[-1] + ":;"]


def has_bare_break(value: str) -> bool:
    """A CR or LF in ``value`` that is not folding whitespace (CRLF followed by a space)."""
    return bool(_BARE_BREAK.search(value))
