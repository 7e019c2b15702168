"""A real Postfix and a real Dovecot for the bounce-mailbox tests, each a private instance
started by the tests from a temporary directory, on loopback ports, and stopped by them.

``Postfix`` accepts SMTP on 127.0.0.1:<port> for one test domain (``example.test``) and
delivers into Maildirs under the temporary directory (virtual mailbox delivery). Unknown
users of that domain are accepted at RCPT time and bounced at delivery by virtual(8)
(``dsn=5.1.1, status=bounced (unknown user: "x@example.test")``), so Postfix itself sends a
real RFC 3464 DSN to the envelope sender. ``Dovecot`` serves the same Maildirs over IMAP
(plain, and IMAPS with a certificate from a private CA made by trustme).

    import mailservers
    postfix_server = mailservers.postfix_server  # the fixtures, in the test module
    dovecot_server = mailservers.dovecot_server

    def test_it(postfix_server: Postfix, dovecot_server: Dovecot) -> None:
        postfix_server.send("rapport+x@example.test", ["person01@example.test", "ingen@example.test"], data)
        [dsn] = postfix_server.wait_for_messages("rapport", 1)
        imap = imaplib.IMAP4(dovecot_server.host, dovecot_server.port)
        imap.login(dovecot_server.bounce_address, dovecot_server.password)

The fixtures are module-scoped: the mailboxes are shared by the tests of a module (use
``clear()``, or distinct addresses, to tell tests apart); other users: a module fixture of
the same name around ``Postfix(users=[...])``. Neither the system's Postfix (/etc/postfix,
port 25) nor its Dovecot is touched. Both need root (Postfix's master does; the mail is
owned by ``nobody``).
"""

from __future__ import annotations

import contextlib
import email
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from email import policy
from email.message import EmailMessage, Message
from email.policy import EmailPolicy
from pathlib import Path
from typing import Any

import pytest

from conftest import IN_CI, free_port

POSTFIX = "/usr/sbin/postfix"
POSTQUEUE = "/usr/sbin/postqueue"
DOVECOT = "/usr/sbin/dovecot"
DOMAIN = "example.test"
BOUNCE_USER = "rapport"
PASSWORD = "test-imap-password"
# rapport receives the DSNs; redaktionen is a second mailbox; person01..person20 make a list.
DEFAULT_USERS = (BOUNCE_USER, "redaktionen", *(f"person{i:02d}" for i in range(1, 21)))


def _unavailable(why: str) -> None:
    """As conftest.require_tool: fail under CI, skip on a developer's machine."""
    if IN_CI:
        pytest.fail(why)
    pytest.skip(why)


def require_mailservers(*, dovecot: bool = True) -> None:
    for path, package in ((POSTFIX, "postfix"), *(((DOVECOT, "dovecot-imapd"),) if dovecot else ())):
        if not os.path.exists(path):
            _unavailable(f"a real mail server for the bounce tests: {path} is not installed (.ci/run installs {package})")
    if os.geteuid() != 0:
        _unavailable("a private Postfix instance needs root (its master process runs as root, its daemons as postfix)")
    for name in ("postfix", "dovecot", "dovenull"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            if name == "postfix" or dovecot:
                _unavailable(f"the system user {name!r} is missing (the postfix/dovecot-imapd packages create it)")


def _mail_owner() -> tuple[int, int]:
    """Who owns the Maildirs: virtual(8) and Dovecot refuse root; ``nobody`` is always there."""
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 10.0,
                   greeting: bytes = b"") -> None:
    """Until 127.0.0.1:port accepts a connection (and sends ``greeting``, when given)."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                if not greeting or connection.recv(512).startswith(greeting):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer on 127.0.0.1:{port} within {timeout:g} s:\n{_tail(log)}")
        time.sleep(0.01)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} is missing)"


def _session_processes(sid: int) -> list[int]:
    """Every live process of session ``sid`` (a server started with start_new_session)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry))
    return found


def _stop(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM to the server's master, which ends its own children; SIGKILL to the session if not."""
    if process is None:
        return
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    deadline = time.monotonic() + timeout
    while (left := _session_processes(process.pid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class StoredMessage(EmailMessage):
    """A message in a mailbox, with the file where it lies (for the tests that want the file)."""

    path: Path


def _parse(path: Path) -> StoredMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=EmailPolicy(message_factory=StoredMessage))
    assert isinstance(message, StoredMessage)
    message.path = path
    return message


# -- Postfix ----------------------------------------------------------------------------------------

_MASTER_CF = """\
# service  type       private unpriv chroot wakeup maxproc command
{listen}   inet       n       -      n      -      -       smtpd
pickup     unix       n       -      n      60     1       pickup
cleanup    unix       n       -      n      -      0       cleanup
qmgr       unix       n       -      n      300    1       qmgr
rewrite    unix       -       -      n      -      -       trivial-rewrite
bounce     unix       -       -      n      -      0       bounce
defer      unix       -       -      n      -      0       bounce
trace      unix       -       -      n      -      0       bounce
verify     unix       -       -      n      -      1       verify
flush      unix       n       -      n      1000?  0       flush
proxymap   unix       -       -      n      -      -       proxymap
showq      unix       n       -      n      -      -       showq
error      unix       -       -      n      -      -       error
retry      unix       -       -      n      -      -       error
discard    unix       -       -      n      -      -       discard
virtual    unix       -       n      n      -      -       virtual
anvil      unix       -       -      n      -      1       anvil
scache     unix       -       -      n      -      1       scache
postlog    unix-dgram n       -      n      -      1       postlogd
"""

# What `postfix check` (post-install create-missing) would make, made directly: that command
# takes 2-4 s, the whole start-up here well under one.
_QUEUE_DIRS: dict[str, tuple[int, str | None, str | None]] = {
    "active": (0o700, "postfix", None), "bounce": (0o700, "postfix", None), "corrupt": (0o700, "postfix", None),
    "defer": (0o700, "postfix", None), "deferred": (0o700, "postfix", None), "flush": (0o700, "postfix", None),
    "hold": (0o700, "postfix", None), "incoming": (0o700, "postfix", None), "private": (0o700, "postfix", None),
    "saved": (0o700, "postfix", None), "trace": (0o700, "postfix", None), "pid": (0o755, None, None),
    "maildrop": (0o730, "postfix", "postdrop"), "public": (0o710, "postfix", "postdrop"),
}


def _postfix_master() -> str:
    """master(8): /usr/lib/postfix/sbin/master on Debian, wherever daemon_directory says elsewhere."""
    try:
        found = subprocess.run(["/usr/sbin/postconf", "-d", "-h", "daemon_directory"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except OSError:
        found = ""
    return f"{found or '/usr/lib/postfix/sbin'}/master"


class Postfix:
    """A private Postfix: ``-c root/postfix`` (main.cf, master.cf), its own queue and data
    directories, SMTP on ``host:port``, mail for ``domain`` delivered into ``maildir(user)``.

    ``users`` are the known local parts (``bounce_user`` is always one of them); any other
    user of ``domain`` is accepted at RCPT and bounced with a DSN (5.1.1 User unknown in
    virtual mailbox table). ``recipient_delimiter = +``: rapport+anything@ is rapport's."""

    def __init__(self, users: Iterable[str] = DEFAULT_USERS, *, domain: str = DOMAIN, bounce_user: str = BOUNCE_USER,
                 root: Path | None = None) -> None:
        self.domain = domain
        self.bounce_user = bounce_user
        self.users = list(dict.fromkeys([bounce_user, *users]))
        self.host = "127.0.0.1"
        self.port = free_port()
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="postfix-")) if root is None else root
        self.config_dir = self.root / "postfix"
        self.queue_dir = self.root / "queue"
        self.data_dir = self.root / "data"
        self.mail_dir = self.root / "mail"
        self.log_path = self.root / "postfix.log"
        self.uid, self.gid = _mail_owner()
        self.process: subprocess.Popen[bytes] | None = None

    # -- addresses and mailboxes --

    @property
    def bounce_address(self) -> str:
        return self.address(self.bounce_user)

    def address(self, user: str) -> str:
        return f"{user}@{self.domain}"

    def maildir(self, user: str) -> Path:
        """The user's Maildir (INBOX); a folder ``X`` is its ``.X`` subdirectory (Maildir++)."""
        return self.mail_dir / self.domain / user.split("@")[0]

    def _folder(self, user: str, folder: str) -> Path:
        return self.maildir(user) if folder.upper() == "INBOX" else self.maildir(user) / f".{folder}"

    def messages(self, user: str, folder: str = "INBOX") -> list[EmailMessage]:
        """The messages in a user's folder (new and cur), oldest first; each has ``.path``."""
        base = self._folder(user, folder)
        files = [p for sub in ("new", "cur") if (base / sub).is_dir() for p in (base / sub).iterdir() if p.is_file()]
        files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [_parse(p) for p in files]

    def wait_for_messages(self, user: str, count: int, timeout: float = 15.0, folder: str = "INBOX") -> list[EmailMessage]:
        """The user's messages once there are at least ``count``; flushes the queue now and then."""
        deadline = time.monotonic() + timeout
        next_flush = time.monotonic() + 1.0
        while True:
            found = self.messages(user, folder)
            if len(found) >= count:
                return found
            now = time.monotonic()
            if now > deadline:
                raise AssertionError(f"{len(found)} of {count} messages in {user}'s {folder} after {timeout:g} s; "
                                     f"queue: {self.queue()}\n{_tail(self.log_path)}")
            if now > next_flush:
                self.flush()
                next_flush = now + 1.0
            time.sleep(0.02)

    def add_message(self, user: str, message: bytes | str | Message, folder: str = "INBOX", *, seen: bool = False) -> Path:
        """Puts a message straight into a Maildir (as a delivery would: tmp, then new/ or, seen, cur/)."""
        if isinstance(message, Message):
            data = message.as_bytes(policy=policy.SMTP)
        else:
            data = message.encode() if isinstance(message, str) else message
        base = self._folder(user, folder)
        self._make_maildir(base)
        name = f"{time.time_ns()}.P{os.getpid()}.test"
        temporary = base / "tmp" / name
        temporary.write_bytes(data)
        os.chown(temporary, self.uid, self.gid)
        final = base / "cur" / f"{name}:2,S" if seen else base / "new" / name
        os.rename(temporary, final)
        return final

    def clear(self, user: str | None = None) -> None:
        """Removes every message from the user's (or every user's) Maildir and its folders; the folders stay."""
        for name in [user] if user else self.users:
            base = self.maildir(name)
            for folder in [base, *base.glob(".*")]:
                for sub in ("new", "cur", "tmp"):
                    if (folder / sub).is_dir():
                        for path in (folder / sub).iterdir():
                            path.unlink()

    def send(self, mail_from: str, rcpt_tos: Iterable[str], message: bytes | str | Message) -> dict[str, tuple[int, bytes]]:
        """Submits one message over SMTP, as the program does; returns the refused recipients (none, normally)."""
        import smtplib

        if isinstance(message, Message):
            message = message.as_bytes(policy=policy.SMTP)
        with smtplib.SMTP(self.host, self.port, timeout=30) as client:
            return client.sendmail(mail_from, list(rcpt_tos), message)

    # -- the queue --

    def flush(self) -> None:
        """postqueue -f: deliver (or bounce) whatever waits, now."""
        subprocess.run([POSTQUEUE, "-c", str(self.config_dir), "-f"], check=True, capture_output=True, timeout=30)

    def queue(self) -> list[dict[str, Any]]:
        """postqueue -j: the messages still queued (empty once everything is delivered or bounced)."""
        result = subprocess.run([POSTQUEUE, "-c", str(self.config_dir), "-j"], check=True, capture_output=True, text=True,
                                timeout=30)
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def wait_until_idle(self, timeout: float = 15.0) -> None:
        """Until the queue is empty: every message delivered, every DSN for a bounce delivered too."""
        deadline = time.monotonic() + timeout
        while queued := self.queue():
            if time.monotonic() > deadline:
                raise AssertionError(f"still queued after {timeout:g} s: {queued}\n{_tail(self.log_path)}")
            self.flush()
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- life --

    def pids(self) -> list[int]:
        """The instance's live processes (master and its daemons)."""
        return _session_processes(self.process.pid) if self.process is not None else []

    def _make_maildir(self, path: Path) -> None:
        for sub in ("", "cur", "new", "tmp"):
            (path / sub).mkdir(mode=0o700, exist_ok=True, parents=True)
            os.chown(path / sub, self.uid, self.gid)

    def _write_config(self) -> None:
        # Postfix refuses group- or world-writable configuration and queue directories.
        os.chmod(self.root, 0o755)  # the daemons (postfix, nobody) and Dovecot's users go through it
        self.config_dir.mkdir(mode=0o755, exist_ok=True)
        domain_dir = self.mail_dir / self.domain
        domain_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chown(self.mail_dir, self.uid, self.gid)
        os.chown(domain_dir, self.uid, self.gid)
        for user in self.users:
            self._make_maildir(self.maildir(user))
        (self.config_dir / "vmailbox").write_text(
            "".join(f"{self.address(u)} {self.domain}/{u}/\n" for u in self.users))
        not_here = "error:5.1.2 mail outside the test domain is not delivered"
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir, "data_directory": self.data_dir,
            "mail_owner": "postfix", "setgid_group": "postdrop",
            "syslog_name": "postfix-test", "maillog_file": self.log_path, "maillog_file_prefixes": self.root,
            "myhostname": f"mail.{self.domain}", "mydomain": self.domain, "myorigin": "$mydomain",
            "mydestination": "", "local_recipient_maps": "", "alias_maps": "", "alias_database": "",
            "relay_domains": "", "default_transport": not_here, "relay_transport": not_here,
            "inet_interfaces": "127.0.0.1", "inet_protocols": "ipv4", "mynetworks": "127.0.0.0/8",
            "smtpd_recipient_restrictions": "permit_mynetworks, reject_unauth_destination",
            # Unknown users are accepted at RCPT and bounced by virtual(8): a DSN, not a 550.
            "smtpd_reject_unlisted_recipient": "no",
            "virtual_mailbox_domains": self.domain, "virtual_mailbox_base": self.mail_dir,
            "virtual_mailbox_maps": f"texthash:{self.config_dir / 'vmailbox'}",
            "virtual_uid_maps": f"static:{self.uid}", "virtual_gid_maps": f"static:{self.gid}",
            "virtual_minimum_uid": min(100, self.uid),
            "recipient_delimiter": "+",
            # Prompt: no reverse lookups, no tarpit, no flow control, short retry times.
            "smtpd_peername_lookup": "no", "smtpd_error_sleep_time": "0", "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000", "in_flow_delay": "0", "delay_warning_time": "0",
            "queue_run_delay": "1s", "minimal_backoff_time": "1s", "maximal_backoff_time": "2s",
            "biff": "no", "smtpd_banner": "$myhostname ESMTP test instance",
        }
        (self.config_dir / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        (self.config_dir / "master.cf").write_text(_MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
        # Postfix waits (300 ms at a time) until main.cf is a couple of seconds old, lest it read a
        # file still being edited: written just now, it would cost 2 s of every start.
        past = time.time() - 60
        for name in ("main.cf", "master.cf", "vmailbox"):
            os.utime(self.config_dir / name, (past, past))
        self.queue_dir.mkdir(mode=0o755, exist_ok=True)
        for name, (mode, owner, group) in _QUEUE_DIRS.items():
            path = self.queue_dir / name
            path.mkdir(exist_ok=True)
            if owner is not None:
                shutil.chown(path, owner, group)
            elif group is not None:
                shutil.chown(path, group=group)
            os.chmod(path, mode)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        shutil.chown(self.data_dir, "postfix")

    def start(self) -> Postfix:
        require_mailservers(dovecot=False)
        self._write_config()
        # master(8) itself, in the foreground (postfix start would run slow checks, then detach);
        # its own session, so that its SIGTERM to its process group reaches only its daemons.
        self.process = subprocess.Popen(
            [_postfix_master(), "-c", str(self.config_dir), "-s"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "MAIL_CONFIG": str(self.config_dir)}, start_new_session=True, cwd=self.root,
        )
        try:
            _wait_for_port(self.port, self.process, "postfix master", self.log_path, greeting=b"220")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        _stop(self.process)

    def close(self) -> None:
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Postfix:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- Dovecot ----------------------------------------------------------------------------------------

_DOVECOT_CONF = """\
# A private Dovecot for the tests: everything under {root}.
base_dir = {root}/run
state_dir = {root}/state
instance_name = dovecot-test-{port}
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
last_valid_gid = {gid}
mail_location = maildir:{mail}/%d/%n
mail_fsync = never
# Plain IMAP on loopback (the client is told it is a test) and IMAPS with trustme's certificate.
ssl = yes
ssl_cert = <{root}/tls/server.pem
ssl_key = <{root}/tls/server.key
disable_plaintext_auth = no
auth_mechanisms = plain login
# A wrong password is refused at once (the default waits 2 s).
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
}}
# No auth penalty: after a wrong password Dovecot would hold every login from 127.0.0.1 for
# 2 s and more (a test of wrong credentials would slow every test after it).
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
"""


class Dovecot:
    """A private Dovecot serving ``postfix``'s Maildirs: IMAP on ``host:port``, IMAPS on
    ``host:imaps_port`` (certificate for 127.0.0.1 and localhost, CA in ``ca_file``).
    Every known user logs in with the full address and ``password``."""

    def __init__(self, postfix: Postfix, password: str = PASSWORD) -> None:
        self.postfix = postfix
        self.password = password
        self.host = "127.0.0.1"
        self.port = free_port()
        self.imaps_port = free_port()
        while self.imaps_port == self.port:
            self.imaps_port = free_port()
        self.root = postfix.root / "dovecot"
        self.config_path = self.root / "dovecot.conf"
        self.ca_file = self.root / "tls" / "ca.pem"
        self.log_path = self.root / "dovecot.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def domain(self) -> str:
        return self.postfix.domain

    @property
    def users(self) -> list[str]:
        return self.postfix.users

    @property
    def bounce_address(self) -> str:
        return self.postfix.bounce_address

    def maildir(self, user: str) -> Path:
        return self.postfix.maildir(user)

    def pids(self) -> list[int]:
        return _session_processes(self.process.pid) if self.process is not None else []

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _write_config(self) -> None:
        import trustme

        (self.root / "tls").mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        ca = trustme.CA(organization_name="dispatch tests")
        server = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(str(self.ca_file))
        (self.root / "tls" / "server.pem").write_bytes(b"".join(pem.bytes() for pem in server.cert_chain_pems))
        server.private_key_pem.write_to_path(str(self.root / "tls" / "server.key"))
        os.chmod(self.root / "tls" / "server.key", 0o600)
        uid, gid = self.postfix.uid, self.postfix.gid
        (self.root / "users").write_text("".join(
            f"{self.postfix.address(u)}:{{PLAIN}}{self.password}:{uid}:{gid}::{self.postfix.maildir(u)}::\n"
            for u in self.users))
        os.chmod(self.root / "users", 0o644)  # read by the auth process, which runs as dovecot
        self.config_path.write_text(_DOVECOT_CONF.format(
            root=self.root, mail=self.postfix.mail_dir, port=self.port, imaps_port=self.imaps_port, uid=uid, gid=gid))

    def start(self) -> Dovecot:
        require_mailservers()
        self._write_config()
        with (self.root / "dovecot.stderr").open("wb") as errors:  # what it says before its log is open
            self.process = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True, cwd=self.root,
            )
        try:
            # The master binds every listener before it serves any: IMAPS is up when IMAP greets.
            _wait_for_port(self.port, self.process, "dovecot", self.log_path, greeting=b"* OK")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        _stop(self.process)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- fixtures (import them into a test module: from mailservers import postfix_server, dovecot_server) --


@pytest.fixture(scope="module")
def postfix_server() -> Iterator[Postfix]:
    with Postfix() as server:
        yield server


@pytest.fixture(scope="module")
def dovecot_server(postfix_server: Postfix) -> Iterator[Dovecot]:
    with Dovecot(postfix_server) as server:
        yield server
