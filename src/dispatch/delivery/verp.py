"""VERP addresses: each message's envelope sender names its dispatch and recipient, so a
bounce is matched even when it quotes nothing of the message it returns.

``rapport+1f-2a3-9c0d4e1b7a@region.example.se``: the dispatch id and the delivery row id
(hex) and a MAC over both. The recipient's address is not in it (bounces travel through other
people's servers), and the MAC means a forged bounce cannot mark anybody else's row. The key
is the ledger's own identity, so every node of a shared ledger makes and reads the same
tokens, and a token from another ledger never matches.
"""

from __future__ import annotations

import hashlib
import hmac
import re

_TOKEN = re.compile(r"^(?P<dispatch>[0-9a-f]{1,12})-(?P<row>[0-9a-f]{1,12})-(?P<mac>[0-9a-f]{10})$")


def _mac(key: str, dispatch_id: int, row_id: int) -> str:
    return hmac.new(key.encode(), f"{dispatch_id}:{row_id}".encode(), hashlib.sha256).hexdigest()[:10]


def address(base: str, dispatch_id: int, row_id: int, key: str) -> str:
    """``local+TOKEN@domain`` for the envelope sender ``base`` (``local@domain``)."""
    local, _, domain = base.rpartition("@")
    local = local.split("+", 1)[0]
    return f"{local}+{dispatch_id:x}-{row_id:x}-{_mac(key, dispatch_id, row_id)}@{domain}"


def decode(candidate: str, key: str) -> tuple[int, int] | None:
    """(dispatch id, row id) from an address (or its local part) carrying a valid token."""
    local = candidate.strip().strip("<>").rpartition("@")[0] or candidate
    _, plus, token = local.partition("+")
    found = _TOKEN.match(token.lower()) if plus else None
    if found is None:
        return None
    dispatch_id, row_id = int(found["dispatch"], 16), int(found["row"], 16)
    if not hmac.compare_digest(found["mac"], _mac(key, dispatch_id, row_id)):
        return None
    return dispatch_id, row_id
