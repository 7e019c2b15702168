"""DKIM signatures (RFC 6376, with dkimpy) over the exact bytes one SMTP transaction sends.

Signed after the per-recipient patch (To, Message-ID, a correction's In-Reply-To and
References), so the signature covers what that recipient gets. dkimpy's exceptions are
wrapped here, once, into SigningError; nothing here shows or logs the private key.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from dispatch.errors import SigningError, display_path

# The headers h= names, each only when the message has it: naming an absent header in h=
# would break the signature when a relay adds it (Exchange may add Thread-Topic and Thread-Index
# to messages without them). Lower case, as dkimpy compares them.
SIGNED_HEADERS = (
    b"from", b"to", b"subject", b"date", b"message-id", b"in-reply-to", b"references",
    b"reply-to", b"mime-version", b"content-type", b"content-transfer-encoding",
    b"list-id", b"list-unsubscribe", b"list-unsubscribe-post", b"list-help", b"list-post", b"list-owner",
    b"list-archive", b"list-subscribe", b"thread-topic", b"thread-index", b"auto-submitted",
)
# relaxed/relaxed: a relay that refolds a header or trims trailing spaces keeps the signature.
CANONICALIZATION = (b"relaxed", b"relaxed")
MIN_KEY_BITS = 1024  # RFC 8301 3.2: verifiers must not accept smaller RSA keys (dkimpy refuses them)
MAX_KEY_BYTES = 64 * 1024  # a PEM RSA key of 8192 bits is under 7 KB


@dataclass(frozen=True)
class Signer:
    """Signs messages for one domain and selector with one private key (kept out of repr)."""

    domain: str
    selector: str
    key: bytes = field(repr=False)  # PEM

    def sign(self, data: bytes) -> bytes:
        """``data`` with a DKIM-Signature header line in front of it (CRLF line ends)."""
        import dkim  # here, not at the top: dkimpy loads dnspython, which only signing needs (issue 34)

        try:
            message = dkim.DKIM(data, linesep=b"\r\n")
            present = {name.lower() for name, _ in message.headers}
            header = message.sign(
                self.selector.encode("ascii"), self.domain.encode("ascii"), self.key,
                canonicalize=CANONICALIZATION, include_headers=[name for name in SIGNED_HEADERS if name in present],
            )
        except (dkim.DKIMException, ValueError) as exc:  # ValueError: a PEM block with broken base64
            # The message names the domain and selector; dkimpy's own words (in the cause)
            # describe the key's structure, never its content.
            raise SigningError(f"cannot sign for {self.selector}._domainkey.{self.domain}: "
                               f"{type(exc).__name__}: {exc}") from exc
        return bytes(header) + data


def read_key(path: Path) -> bytes:
    """The PEM private key in ``path``, which only its owner may read or write (like ssh's
    private keys): a key others can read can sign mail as the organisation. Raises
    KeyFileError saying what is wrong and how to fix it, never showing the file's content."""
    shown = display_path(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise KeyFileError(f"names {shown}, which does not exist; put the DKIM private key (PEM) there") from None
    except OSError as exc:
        raise KeyFileError(f"names {shown}, which cannot be read ({exc.strerror}); let the user running dispatch "
                           "read it (and no one else)") from None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(descriptor)  # of the file opened, not of whatever the name points to now
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"names {shown}, which is not a regular file; name the file that holds the private key")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise KeyFileError(f"names {shown}, which others can read or change (mode {mode:04o}); a private key must "
                               f"be its owner's only: chmod 600 {shown}")
        try:
            key = handle.read(MAX_KEY_BYTES + 1)
        except OSError as exc:  # opened, then the read fails (an I/O error, a file system gone)
            raise KeyFileError(f"names {shown}, which cannot be read ({exc.strerror}); check the file and its disk") from None
    if len(key) > MAX_KEY_BYTES:
        raise KeyFileError(f"names {shown}, which is larger than a private key ({MAX_KEY_BYTES // 1024} KB or more); "
                           "check that this is the right file")
    from dkim.crypto import UnparsableKeyError, parse_pem_private_key

    try:
        modulus = parse_pem_private_key(key)["modulus"]
    except (UnparsableKeyError, ValueError, IndexError, TypeError) as exc:  # (dkimpy's words name no key bytes)
        raise KeyFileError(f"names {shown}, which does not hold an RSA private key in PEM (PKCS#1 or PKCS#8, "
                           "unencrypted); make one with: openssl genrsa -out dkim.key 2048") from exc
    if modulus.bit_length() < MIN_KEY_BITS:
        raise KeyFileError(f"names {shown}, a {modulus.bit_length()}-bit RSA key; receivers ignore signatures made "
                           f"with fewer than {MIN_KEY_BITS} bits: make a 2048-bit key")
    return key


class KeyFileError(SigningError):
    """The key file cannot serve; the message starts with what the config names ("names ...")."""
