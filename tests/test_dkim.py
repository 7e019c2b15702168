"""Issue 29, point 6: optional DKIM signing (checklist 27), checked on the delivered bytes.

Every message is verified with dkimpy itself, its DNS lookup answered from a key made here,
as a receiving server would verify it: through the Maildir transport and a real SMTP server,
for editions, corrections and urgent messages.
"""

from __future__ import annotations

import base64
import mailbox
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import Project, SMTPServer, require_tool

DOMAIN, SELECTOR = "example.org", "rapport"
URGENT_FILE = "reports/urgent/sas-akutmottagning.md"


class Key:
    """A 2048-bit RSA key, its PEM, and the TXT record a DNS server would publish for it."""

    def __init__(self, bits: int = 2048) -> None:
        private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        self.pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        public = private.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        self.txt = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
        self.lookups: list[bytes] = []

    def dnsfunc(self, name: bytes, timeout: int = 5) -> bytes | None:
        """dkimpy's DNS lookup: the record at SELECTOR._domainkey.DOMAIN, nothing elsewhere."""
        self.lookups.append(name)
        return self.txt if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None

    def verifies(self, data: bytes) -> bool:
        return bool(dkim.verify(data, dnsfunc=self.dnsfunc))


@pytest.fixture(scope="module")
def key() -> Key:
    return Key()


def sign_with(project: Project, key: Key, mode: int = 0o600) -> Path:
    """config dkim: with the key in the project's dkim.key (``mode``)."""
    path = project.root / "dkim.key"
    path.write_bytes(key.pem)
    path.chmod(mode)
    project.set_config(dkim={"domain": DOMAIN, "selector": SELECTOR, "key_file": "dkim.key"})
    return path


def config_line(project: Project, key: str) -> int:
    """The line of ``key:`` under dkim: in config.yaml."""
    lines = project.config_path.read_text(encoding="utf-8").splitlines()
    start = lines.index("dkim:")
    return next(n for n, line in enumerate(lines, 1) if n > start and line.strip().startswith(f"{key}:"))


def maildir_reports(project: Project) -> list[bytes]:
    """The report messages (with List-Id) in the Maildir outbox as delivered: the transport's
    Return-Path and Delivered-To above what was sent, the file's LF line ends back to CRLF."""
    outbox = project.root / "var/outbox"
    if not outbox.exists():
        return []
    box = mailbox.Maildir(outbox, factory=None, create=False)
    files = (box.get_bytes(k).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for k in box.iterkeys())
    return [data for data in files if b"\r\nList-Id:" in data.split(b"\r\n\r\n", 1)[0]]


def as_sent(data: bytes) -> bytes:
    """A delivered message without the header lines the Maildir delivery added above it."""
    return re.sub(rb"\AReturn-Path: [^\r]*\r\nDelivered-To: [^\r]*\r\n", b"", data)


def signed_headers(data: bytes) -> list[str]:
    """The h= of the message's DKIM-Signature, in order."""
    [header] = [h for h in dkim.DKIM(data).headers if h[0].lower() == b"dkim-signature"]
    tags = dict(tag.strip().split(b"=", 1) for tag in re.sub(rb"\s+", b"", header[1]).split(b";") if tag.strip())
    return tags[b"h"].decode().split(":")


def altered(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) >= 1, old
    return data.replace(old, new, 1)


def test_every_message_in_the_maildir_verifies_and_covers_what_the_reader_sees(project: Project, key: Key) -> None:
    sign_with(project, key)
    result = project.run("send", "--date", "2024-11-17")
    assert result.returncode == 0, result.stderr

    delivered = maildir_reports(project)
    assert len(delivered) == 49
    assert all(key.verifies(data) for data in delivered)
    assert set(key.lookups) == {b"rapport._domainkey.example.org."}
    # The signature goes first, above the patched To and Message-ID it covers.
    assert all(as_sent(data).startswith(b"DKIM-Signature: ") for data in delivered)
    assert signed_headers(delivered[0]) == [
        "from", "to", "subject", "date", "message-id", "reply-to", "mime-version", "content-type",
        "list-id", "thread-topic", "thread-index", "auto-submitted",
    ]
    # Lines stay within RFC 5322's limits with the signature folded in.
    assert max(len(line) for line in delivered[0].split(b"\r\n")) <= 78 + 2


def test_a_message_altered_after_signing_fails_and_a_refolded_one_passes(project: Project, key: Key) -> None:
    sign_with(project, key)
    assert project.run("send", "--date", "2024-11-17", "--to", "anna.johansson@example.org").returncode == 0
    [data] = maildir_reports(project)
    assert key.verifies(data)

    head, body = data.split(b"\r\n\r\n", 1)
    subject = header_line(head, b"Subject")
    assert not key.verifies(altered(data, subject, subject + b"x"))
    assert not key.verifies(head + b"\r\n\r\n" + altered(body, b"Regional", b"Regionel"))
    assert not key.verifies(altered(data, b"\r\nTo: ", b"\r\nTo: other@example.org, "))
    # relaxed/relaxed: a relay that refolds a header or pads a line keeps the signature valid.
    assert key.verifies(altered(data, b"\r\nSubject: ", b"\r\nSubject:\r\n   "))
    assert key.verifies(head + b"\r\n\r\n" + body.replace(b"\r\n", b"  \r\n", 3))


@pytest.mark.slow  # two sends through a real server; fast twin: the Maildir test above
def test_every_message_through_smtp_verifies_edition_and_urgent(project: Project, smtp_server: SMTPServer, key: Key) -> None:
    sign_with(project, key)
    project.use_smtp(smtp_server)
    assert project.run("send", "--date", "2024-11-17").returncode == 0
    urgent = project.run("send", "--urgent", "--file", URGENT_FILE)
    assert urgent.returncode == 0, urgent.stderr

    reports = smtp_server.handler.reports()
    urgent_ones = [r for r in reports if r.message["Importance"] == "High"]
    assert len(reports) == 49 + len(urgent_ones) and urgent_ones
    for received in reports:
        assert key.verifies(received.data), received.rcpt_tos
        # Each signature covers its own recipient: the To line is the one it was sent to.
        assert received.rcpt_tos[0].lower() in str(received.message["To"]).lower()


def test_a_correction_signs_its_in_reply_to_and_references(project: Project, key: Key) -> None:
    sign_with(project, key)
    assert project.run("send", "--date", "2024-11-17").returncode == 0
    edition = project.root / "reports/2024-11-17.md"
    text = edition.read_text(encoding="utf-8").replace(
        "status: approved\n", "status: approved\nrevision: 2\ncorrection: \"Återstarten för SÄS är onsdag, inte tisdag.\"\n")
    edition.write_text(text.replace("planeras till tisdag morgon", "planeras till onsdag morgon"), encoding="utf-8")
    corrected = project.run("send", "--date", "2024-11-17")
    assert corrected.returncode == 0, corrected.stderr

    corrections = [data for data in maildir_reports(project) if b"\r\nIn-Reply-To: " in data]
    assert len(corrections) == 49
    for data in corrections:
        assert key.verifies(data)
        assert {"in-reply-to", "references"} <= set(signed_headers(data))
    reference = header_line(corrections[0], b"References")
    assert not key.verifies(altered(corrections[0], reference, b"<someone-else@example.org>"))


def test_the_preview_is_signed_as_the_first_recipients_message_is(project: Project, key: Key, tmp_path: Path) -> None:
    sign_with(project, key)
    preview = project.run("preview", "--date", "2024-11-17", "--out", str(tmp_path))
    assert preview.returncode == 0, preview.stderr
    eml = (tmp_path / "2024-11-17.eml").read_bytes()
    assert eml.startswith(b"DKIM-Signature: ") and key.verifies(eml)

    assert project.run("send", "--date", "2024-11-17").returncode == 0
    # The preview is made at another moment (its Date and MIME boundary differ from a later
    # send's), but it is signed over the same headers with the first recipient's To and Message-ID.
    [first] = [data for data in maildir_reports(project) if header_line(data, b"Message-ID") == header_line(eml, b"Message-ID")]
    assert header_line(first, b"To") == header_line(eml, b"To")
    assert signed_headers(eml) == signed_headers(first)


def header_line(data: bytes, name: bytes) -> bytes:
    found = re.search(rb"(?:\A|\r\n)" + name + rb": ([^\r]*)", data)
    assert found is not None, name
    return found.group(1)


def test_without_dkim_no_message_carries_a_signature(project: Project) -> None:
    result = project.run("send", "--date", "2024-11-17")
    assert result.returncode == 0, result.stderr
    delivered = maildir_reports(project)
    assert len(delivered) == 49
    assert not [data for data in delivered if b"DKIM-Signature" in data.split(b"\r\n\r\n", 1)[0]]


def test_a_key_file_others_can_read_is_refused_and_nothing_is_sent(project: Project, key: Key) -> None:
    path = sign_with(project, key, mode=0o644)
    line = config_line(project, "key_file")
    shown = f"config.yaml:{line}: dkim.key_file names dkim.key, which others can read or change (mode 0644)"

    checked = project.run("check", "--date", "2024-11-17")
    sent = project.run("send", "--date", "2024-11-17")
    assert checked.returncode == 1 and shown in checked.stderr and "chmod 600 dkim.key" in checked.stderr
    assert sent.returncode == 1 and shown in sent.stderr
    assert maildir_reports(project) == []
    assert project.status()["dispatch"] is None  # no dispatch was even started
    secret = key.pem.splitlines()[1].decode()
    assert secret not in checked.stdout + checked.stderr + sent.stdout + sent.stderr

    path.chmod(0o600)  # the fix the message gives
    assert project.run("send", "--date", "2024-11-17").returncode == 0
    assert len(maildir_reports(project)) == 49


def _missing(project: Project, key: Key) -> tuple[str, str]:
    return "key_file", "dkim.key_file names dkim.key, which does not exist; put the DKIM private key (PEM) there"


def _not_a_key(project: Project, key: Key) -> tuple[str, str]:
    path = sign_with(project, key)
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END PRIVATE KEY-----\n")
    return "key_file", "dkim.key_file names dkim.key, which does not hold an RSA private key in PEM"


def _too_small(project: Project, key: Key) -> tuple[str, str]:
    path = sign_with(project, key)
    # cryptography makes no key under 1024 bits; OpenSSL's command line still does.
    require_tool(shutil.which("openssl"), "a key too small to use is made with openssl")
    subprocess.run(["openssl", "genrsa", "-out", str(path), "768"], check=True, capture_output=True)
    path.chmod(0o600)
    return "key_file", "dkim.key_file names dkim.key, a 768-bit RSA key; receivers ignore signatures made with fewer"


def _unreadable(project: Project, key: Key) -> tuple[str, str]:
    if os.geteuid() == 0:
        # Root reads a mode-0000 file; /proc/self/mem is a regular 0600 file of the reading
        # process itself whose first page fails to read (EIO): a real read error, as root too.
        project.set_config(dkim={"domain": DOMAIN, "selector": SELECTOR, "key_file": "/proc/self/mem"})
        return "key_file", "dkim.key_file names /proc/self/mem, which cannot be read (Input/output error)"
    sign_with(project, key, mode=0o000)
    return "key_file", "dkim.key_file names dkim.key, which cannot be read (Permission denied)"


@pytest.mark.parametrize("case", [_missing, _not_a_key, _too_small, _unreadable], ids=lambda case: case.__name__[1:])
def test_a_key_file_that_cannot_serve_is_named_at_its_line(project: Project, key: Key,
                                                           case: Callable[[Project, Key], tuple[str, str]]) -> None:
    project.set_config(dkim={"domain": DOMAIN, "selector": SELECTOR, "key_file": "dkim.key"})
    at, message = case(project, key)
    for command in ("check", "send"):
        result = project.run(command, "--date", "2024-11-17")
        assert result.returncode == 1, result.stderr
        assert f"config.yaml:{config_line(project, at)}: {message}" in result.stderr
    assert maildir_reports(project) == []


@pytest.mark.parametrize(("dkim_config", "at", "message"), [
    ({"domain": DOMAIN, "key_file": "dkim.key"}, "dkim:", "'dkim' needs 'selector'"),
    ({"selector": SELECTOR, "key_file": "dkim.key"}, "dkim:", "'dkim' needs 'domain'"),
    ({"domain": DOMAIN, "selector": SELECTOR}, "dkim:", "'dkim' needs 'key_file'"),
    ({"domain": DOMAIN, "selector": "rapport_2024", "key_file": "dkim.key"}, "selector", "'dkim.selector' must be a DNS label"),
    ({"domain": "localhost", "selector": SELECTOR, "key_file": "dkim.key"}, "domain", "'dkim.domain' must be a domain name"),
    ({"domain": DOMAIN, "selector": SELECTOR, "key": "-----BEGIN PRIVATE KEY-----"}, "key",
     "secrets do not belong in the config file: remove 'key'"),
])
def test_a_dkim_section_that_is_incomplete_is_a_config_problem(project: Project, key: Key, dkim_config: dict[str, str],
                                                               at: str, message: str) -> None:
    sign_with(project, key)
    project.set_config(dkim=dkim_config)
    lines = project.config_path.read_text(encoding="utf-8").splitlines()
    line = lines.index("dkim:") + 1 if at == "dkim:" else config_line(project, at)
    for command in ("check", "send"):
        result = project.run(command, "--date", "2024-11-17")
        assert result.returncode == 1
        assert f"config.yaml:{line}: {message}" in result.stderr
    assert "BEGIN PRIVATE KEY" not in result.stderr
    assert maildir_reports(project) == []


def test_the_signer_keeps_its_key_out_of_sight_and_wraps_dkimpys_errors(key: Key) -> None:
    from dispatch.email.dkim import Signer
    from dispatch.errors import DispatchError

    signer = Signer(domain=DOMAIN, selector=SELECTOR, key=key.pem)
    secret = key.pem.splitlines()[1].decode()
    assert secret not in repr(signer) and secret not in str(signer)

    broken = Signer(domain=DOMAIN, selector=SELECTOR, key=b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(DispatchError, match=r"cannot sign for rapport\._domainkey\.example\.org") as raised:
        broken.sign(b"From: a@example.org\r\nTo: b@example.org\r\nSubject: x\r\n\r\nbody\r\n")
    assert isinstance(raised.value.__cause__, dkim.DKIMException)
