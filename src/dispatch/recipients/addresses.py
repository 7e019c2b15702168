"""One address, folded: the form to send to and the key that makes one person one recipient.

Trimmed, Unicode NFC, the domain lower-cased and IDNA-encoded, the local part kept as
written but compared case-insensitively; refused with a reason an editor can act on.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from dispatch.errors import DispatchError
from dispatch.values import Fact
from dispatch.wording import english

# C0, DEL, C1 and the Unicode line/paragraph separators: any of them in a header value
# could start a new header line (or be turned into one by a lenient client).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# The everyday case (ASCII dot-atom local part) is checked here; anything else goes to
# email-validator, whose full check costs ~0.2 ms an address: 20 s for 100,000 HR rows.
_SIMPLE_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


class AddressError(DispatchError, ValueError):
    """One address is not usable; the fact says why, for an editor to act on (``str()``: in English)."""

    def __init__(self, said: Fact | str) -> None:
        # A plain string: email-validator's own words (and what a pickled error comes back with).
        self._fact = Fact.of("address.invalid", detail=said) if isinstance(said, str) else said
        super().__init__(english(self._fact))

    @property
    def fact(self) -> Fact:
        return self._fact


@lru_cache(maxsize=4096)
def _domain(domain: str) -> str:
    """The ASCII (IDNA) lower-case form of a domain, or AddressError. Cached: an HR export
    has thousands of rows but a handful of domains."""
    # Imported at the first address, not with the module: a command that resolves no list
    # never loads email-validator (and its DNS and IDNA modules), issue 34.
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(f"x@{domain}", check_deliverability=False).ascii_domain.lower()
    except EmailNotValidError as exc:
        raise AddressError(str(exc)) from None


def normalise(raw: str) -> tuple[str, str]:
    """(address to send to, folded key) or AddressError.

    The address keeps the local part as written (a few servers still treat it as
    case-sensitive) with the domain in ASCII; the key folds the local part's case too.
    """
    address = raw.strip()  # surrounding whitespace (a pasted tab or newline) is not part of it
    if CONTROL_CHARACTERS.search(address):
        raise AddressError(Fact.of("address.control_character"))
    return fold_trimmed(address)


def fold_trimmed(address: str) -> tuple[str, str]:
    """normalise() for text already trimmed and known to hold no control characters."""
    if not address.isascii():
        address = unicodedata.normalize("NFC", address)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise AddressError(Fact.of("address.no_at"))
    if not local.isascii():
        # Non-ASCII local parts need SMTPUTF8 at every hop; we never ask for it, so a
        # server would refuse or mangle the address. Say so instead of failing later.
        odd = "".join(sorted({c for c in local if not c.isascii()}))
        raise AddressError(Fact.of("address.non_ascii_local_part", characters=odd))
    if len(local) > 64:
        # RFC 5321's limit; email-validator only enforces it in strict mode.
        raise AddressError(Fact.of("address.local_part_too_long"))
    if _SIMPLE_LOCAL.fullmatch(local):
        ascii_domain = _domain(domain)
        if len(local) + 1 + len(ascii_domain) > 254:
            raise AddressError(Fact.of("address.too_long"))
    else:
        from email_validator import EmailNotValidError, validate_email

        try:
            checked = validate_email(address, check_deliverability=False, allow_smtputf8=False)
        except EmailNotValidError as exc:
            raise AddressError(str(exc)) from None
        local, ascii_domain = checked.local_part, checked.ascii_domain.lower()
    return f"{local}@{ascii_domain}", f"{local.lower()}@{ascii_domain}"


def escape_controls(text: str) -> str:
    """Control characters shown as \\xNN, so an invalid value can be stored and printed safely."""
    return CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}", text)
