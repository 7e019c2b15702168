"""A real OpenLDAP ``slapd`` for the directory-list tests (and bench/directory_sync.py), started
from a temporary directory on a loopback port, with TLS from a private CA made by trustme, and
stopped by them. Debian's system slapd (/etc/ldap, port 389) is never touched.

The server is configured as a directory that makes a client do its work properly:

* ``sizelimit 500``: a search that is not paged stops at 500 entries (size limit exceeded);
* the ordinary bind account ``cn=reader,ou=service,BASE`` may read everything with paged results
  (RFC 2696): ``size.prtotal=unlimited`` (without it OpenLDAP also caps paged searches at the
  hard limit). OpenLDAP's root account ignores size limits altogether, so the sources are always
  tested with the reader account; the root account only writes (``admin()``);
* ``ldaps://`` (``url``) and ``ldap://`` with StartTLS (``starttls_url``), the certificate for
  127.0.0.1 and localhost signed by a CA the client must be given (``ca_file``);
* a tiny extra schema (``userAccountControl`` under a private OID arc, in the auxiliary class
  ``dispatchAccount``) so that Active Directory's disabled accounts can be represented.

    import ldapserver
    slapd_directory = ldapserver.slapd_directory  # the fixture, in the test module

    def test_it(slapd_directory: ldapserver.Slapd) -> None:
        people = slapd_directory.model  # the generated directory, to compute what is expected
        ...

``Slapd(model).start()`` runs one on any model (``Directory``); ``stop()`` and ``start()`` again
take it down and up on the same ports with the same data (a directory that is down); ``admin()``
is a root connection for changing the data under a running server.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ldap3
import pytest

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
BASE_DN = "dc=example,dc=test"
PEOPLE_DN = f"ou=people,{BASE_DN}"
GROUPS_DN = f"ou=groups,{BASE_DN}"
ROOT_DN = f"cn=admin,{BASE_DN}"
ROOT_PASSWORD = "root-secret-for-tests"
READER_DN = f"cn=reader,ou=service,{BASE_DN}"
READER_PASSWORD = "reader-secret-for-tests"
# An account whose paged searches stop at the size limit too (OpenLDAP's default size.prtotal):
# a client must take that for an error, never for the whole list.
CAPPED_DN = f"cn=capped,ou=service,{BASE_DN}"
SIZE_LIMIT = 500
ACCOUNTDISABLE = 2  # Active Directory's userAccountControl flag
NORMAL_ACCOUNT = 512

# userAccountControl as Active Directory has it (an integer), under a private arc: OpenLDAP's
# own schemas do not define it, and the test needs disabled accounts.
EXTRA_SCHEMA = """\
attributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'userAccountControl'
  DESC 'Active Directory account flags (2: ACCOUNTDISABLE), for the tests'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'dispatchAccount' AUXILIARY
  DESC 'an account with Active Directory flags, for the tests' MAY ( userAccountControl ) )
attributetype ( 1.3.6.1.4.1.99999.1.2 NAME 'supportedCapabilities'
  DESC 'what Active Directory advertises in its root DSE, for the tests'
  EQUALITY objectIdentifierMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.38 )
"""
# What Active Directory's root DSE says of itself (LDAP_CAP_ACTIVE_DIRECTORY_OID).
ACTIVE_DIRECTORY_CAPABILITY = "1.2.840.113556.1.4.800"


@dataclass
class Person:
    uid: str
    name: str
    mail: str | None  # None: the entry has no mail attribute
    disabled: bool = False
    title: str = "medarbetare"

    @property
    def dn(self) -> str:
        return f"uid={self.uid},{PEOPLE_DN}"


@dataclass
class Group:
    cn: str
    members: list[str] = field(default_factory=list)  # DNs: people and groups
    unique: bool = False  # groupOfUniqueNames (uniqueMember) instead of groupOfNames (member)

    @property
    def dn(self) -> str:
        return f"cn={self.cn},{GROUPS_DN}"


@dataclass
class Directory:
    """The generated directory, as the tests compute what is expected from it."""

    people: list[Person]
    groups: list[Group]

    def group(self, cn: str) -> Group:
        return next(group for group in self.groups if group.cn == cn)

    def ldif(self) -> Iterator[str]:
        """The whole directory as LDIF records (for slapadd)."""
        yield f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n"
        for ou in ("people", "groups", "service"):
            yield f"dn: ou={ou},{BASE_DN}\nobjectClass: organizationalUnit\nou: {ou}\n"
        yield (f"dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\n"
               f"userPassword: {READER_PASSWORD}\n")
        yield (f"dn: {CAPPED_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: capped\n"
               f"userPassword: {READER_PASSWORD}\n")
        for person in self.people:
            surname = person.name.split()[-1]
            lines = [f"dn: {person.dn}", "objectClass: inetOrgPerson", "objectClass: dispatchAccount",
                     f"uid: {person.uid}", f"cn: {person.name}", f"sn: {surname}", f"displayName: {person.name}",
                     f"title: {person.title}",
                     f"userAccountControl: {NORMAL_ACCOUNT | (ACCOUNTDISABLE if person.disabled else 0)}"]
            if person.mail is not None:
                lines.append(f"mail: {person.mail}")
            yield "\n".join(lines) + "\n"
        for group in self.groups:
            kind, attribute = ("groupOfUniqueNames", "uniqueMember") if group.unique else ("groupOfNames", "member")
            members = group.members or [ROOT_DN]  # both classes need a member; the root DN is no person
            yield "\n".join([f"dn: {group.dn}", f"objectClass: {kind}", f"cn: {group.cn}",
                             *(f"{attribute}: {dn}" for dn in members)]) + "\n"


FIRST = ["Anna", "Erik", "Maria", "Lars", "Karin", "Johan", "Åsa", "Örjan", "Elin", "Mats", "Sofia", "Björn"]
LAST = ["Johansson", "Lindqvist", "Andersson", "Nilsson", "Eriksson", "Bergström", "Håkansson", "Öberg", "Åkesson"]


def nested_directory(people: int = 5000, *, disabled: int = 40, without_mail: int = 25, seed: int = 33) -> Directory:
    """``people`` people and the group ``chefer`` nested three deep, with one cycle:

        chefer ─┬─ chefer-vard ──── chefer-vard-akut ── chefer (the cycle)
                └─ chefer-kommun ── chefer-kommun-skola (groupOfUniqueNames)

    Each group has people of its own; some people are in two groups; ``disabled`` members have
    ACCOUNTDISABLE set and ``without_mail`` members no mail attribute. About a fifth of the
    people are in no group (the directory is more than the list), and ``title: chef`` marks the
    members (for filter lists)."""
    rnd = random.Random(seed)
    everyone = [Person(uid=f"p{index:05d}", name=f"{rnd.choice(FIRST)} {rnd.choice(LAST)} {index}",
                       mail=f"person{index:05d}@example.test") for index in range(people)]
    members = everyone[: people * 4 // 5]
    for person in members:
        person.title = "chef"
    shuffled = members[:]
    rnd.shuffle(shuffled)
    for person in shuffled[:disabled]:
        person.disabled = True
    for person in shuffled[disabled: disabled + without_mail]:
        person.mail = None
    names = ["chefer", "chefer-vard", "chefer-vard-akut", "chefer-kommun", "chefer-kommun-skola"]
    groups = {name: Group(name, unique=name == "chefer-kommun-skola") for name in names}
    for index, person in enumerate(members):
        groups[names[index % len(names)]].members.append(person.dn)
    for person in rnd.sample(members, max(1, len(members) // 20)):  # people in two groups
        other = next(group for group in groups.values() if person.dn not in group.members)
        other.members.append(person.dn)
    groups["chefer"].members += [groups["chefer-vard"].dn, groups["chefer-kommun"].dn]
    groups["chefer-vard"].members.append(groups["chefer-vard-akut"].dn)
    groups["chefer-kommun"].members.append(groups["chefer-kommun-skola"].dn)
    groups["chefer-vard-akut"].members.append(groups["chefer"].dn)  # the cycle
    unrelated = Group("kansliet", members=[person.dn for person in everyone[people * 4 // 5:][:50]])
    return Directory(people=everyone, groups=[*groups.values(), unrelated])


def large_directory(people: int, subgroups: int = 10) -> Directory:
    """``people`` people in the group ``alla``, through ``subgroups`` groups of equal size (the bench)."""
    everyone = [Person(uid=f"p{index:06d}", name=f"{FIRST[index % len(FIRST)]} {LAST[index % len(LAST)]} {index}",
                       mail=f"person{index:06d}@example.test") for index in range(people)]
    parts = [Group(f"alla-{part:02d}", members=[person.dn for person in everyone[part::subgroups]]) for part in range(subgroups)]
    return Directory(people=everyone, groups=[Group("alla", members=[group.dn for group in parts]), *parts])


def expected_members(directory: Directory, group_cn: str) -> dict[str, str]:
    """mail -> name of everyone the group stands for, computed from the model (not from LDAP):
    nested groups followed depth-first, each group once; disabled and mail-less people left out."""
    by_dn = {person.dn: person for person in directory.people}
    groups = {group.dn: group for group in directory.groups}
    seen: set[str] = set()
    found: dict[str, str] = {}

    def walk(dn: str) -> None:
        if dn in seen:
            return
        seen.add(dn)
        if dn in groups:
            for member in groups[dn].members:
                walk(member)
        elif dn in by_dn and not by_dn[dn].disabled and by_dn[dn].mail is not None:
            person = by_dn[dn]
            found[str(person.mail)] = person.name

    walk(directory.group(group_cn).dn)
    return found


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies, so that a test
    process killed without its teardown leaves no slapd behind on the shared machine (Linux)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Slapd:
    """One private slapd: ``url`` (ldaps://), ``starttls_url`` (ldap://), ``ca_file``."""

    def __init__(self, directory: Directory, home: Path | None = None,
                 certificate_names: tuple[str, ...] = ("127.0.0.1", "localhost"),
                 advertise_active_directory: bool = False) -> None:
        self.model = directory
        # True: the root DSE claims to be Active Directory (slapd still does not know AD's rules).
        self.advertise_active_directory = advertise_active_directory
        self.certificate_names = certificate_names
        self.home = home or Path(tempfile.mkdtemp(prefix="dispatch-slapd-"))
        self._owns_home = home is None
        self.ldaps_port = _free_port()
        self.ldap_port = _free_port()
        self.url = f"ldaps://127.0.0.1:{self.ldaps_port}"
        self.starttls_url = f"ldap://127.0.0.1:{self.ldap_port}"
        self.ca_file = self.home / "ca.pem"
        self.log = self.home / "slapd.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.base_dn, self.reader_dn, self.reader_password, self.capped_dn = BASE_DN, READER_DN, READER_PASSWORD, CAPPED_DN
        self._prepare()

    def _prepare(self) -> None:
        import trustme

        ca = trustme.CA(organization_name="dispatch tests")
        certificate = ca.issue_cert(*self.certificate_names)
        ca.cert_pem.write_to_path(str(self.ca_file))
        certificate.cert_chain_pems[0].write_to_path(str(self.home / "server.pem"))
        certificate.private_key_pem.write_to_path(str(self.home / "server.key"))
        (self.home / "dispatch.schema").write_text(EXTRA_SCHEMA)
        root_dse = ""
        if self.advertise_active_directory:
            (self.home / "rootdse.ldif").write_text(f"dn:\nsupportedCapabilities: {ACTIVE_DIRECTORY_CAPABILITY}\n")
            root_dse = f"rootDSE {self.home / 'rootdse.ldif'}"
        (self.home / "db").mkdir()
        includes = "\n".join(f"include {SCHEMA_DIR / name}.schema" for name in ("core", "cosine", "inetorgperson", "nis"))
        (self.home / "slapd.conf").write_text(f"""\
{includes}
include {self.home / "dispatch.schema"}
modulepath {MODULE_DIR}
moduleload back_mdb
pidfile {self.home / "slapd.pid"}
argsfile {self.home / "slapd.args"}
TLSCACertificateFile {self.ca_file}
TLSCertificateFile {self.home / "server.pem"}
TLSCertificateKeyFile {self.home / "server.key"}
# What an ordinary account gets from a search that is not paged.
sizelimit {SIZE_LIMIT}
{root_dse}

database mdb
suffix "{BASE_DN}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {self.home / "db"}
# A sparse file: room for the bench's 50,000 people (the default, 10 MB, is too small).
maxsize 2147483648
index objectClass eq
index uid,cn,mail eq
# The reader may page through everything; each search that is not paged still stops at {SIZE_LIMIT}.
limits dn.exact="{READER_DN}" size.soft={SIZE_LIMIT} size.hard={SIZE_LIMIT} size.prtotal=unlimited
limits dn.exact="{CAPPED_DN}" size.soft={SIZE_LIMIT} size.hard={SIZE_LIMIT}
access to attrs=userPassword
  by anonymous auth
  by * none
access to *
  by dn.exact="{READER_DN}" read
  by dn.exact="{CAPPED_DN}" read
  by * none
""")
        data = self.home / "data.ldif"
        with data.open("w", encoding="utf-8") as out:
            for record in self.model.ldif():
                out.write(record + "\n")
        # -q: no consistency checks beyond the schema; the data is generated, the load 10x faster.
        subprocess.run([SLAPADD, "-q", "-f", str(self.home / "slapd.conf"), "-l", str(data)],
                       check=True, capture_output=True)
        data.unlink()

    def start(self) -> Slapd:
        """Start (or start again) on the same ports; returns when the ldaps port answers."""
        with self.log.open("ab") as log:
            # -d 0: in the foreground (the test owns the process), logging nothing but errors.
            self.process = subprocess.Popen(
                [SLAPD, "-d", "0", "-f", str(self.home / "slapd.conf"),
                 "-h", f"{self.url}/ {self.starttls_url}/"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited with status {self.process.returncode}: {self.log.read_text(errors='replace')}")
            try:
                with socket.create_connection(("127.0.0.1", self.ldaps_port), timeout=1):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"slapd did not answer on {self.url} within 30 s") from None
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server (the data stays, for start())."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def remove(self) -> None:
        self.stop()
        if self._owns_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def admin(self) -> ldap3.Connection:
        """A connection bound as the root account, for changing the data under the running server."""
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.ca_file))
        server = ldap3.Server("127.0.0.1", port=self.ldaps_port, use_ssl=True, tls=tls, get_info=ldap3.NONE)
        return ldap3.Connection(server, ROOT_DN, ROOT_PASSWORD, auto_bind=True, raise_exceptions=True)

    def remove_members(self, group_cn: str, member_dns: list[str]) -> None:
        """Take members out of a group (as an administrator would), in the running server."""
        group = self.model.group(group_cn)
        attribute = "uniqueMember" if group.unique else "member"
        with self.admin() as connection:
            # (ldap3's stubs leave modify untyped)
            connection.modify(group.dn, {attribute: [(ldap3.MODIFY_DELETE, member_dns)]})  # type: ignore[no-untyped-call]
        group.members = [dn for dn in group.members if dn not in set(member_dns)]

    def settings_yaml(self, name: str = "ad", *, starttls: bool = False, password_env: str = "DISPATCH_LDAP_PASSWORD") -> str:
        """The config.yaml lines of a ``directories:`` entry for this server (flow style)."""
        url = self.starttls_url if starttls else self.url
        return (f"directories:\n  {name}: {{kind: ldap, url: \"{url}\", bind_dn: \"{READER_DN}\", "
                f"password_env: {password_env}, base_dn: \"{BASE_DN}\", ca_file: \"{self.ca_file}\"}}\n")


def require_slapd() -> None:
    """As conftest.require_tool: a missing slapd fails under CI and skips on a developer's machine."""
    for path, why in ((SLAPD, "slapd"), (SLAPADD, "slapd (slapadd)")):
        if not os.path.exists(path):
            message = f"a real OpenLDAP server for the directory tests: {path} is not installed (.ci/run installs {why})"
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(message)
            pytest.skip(message)


@pytest.fixture(scope="module")
def slapd_directory() -> Iterator[Slapd]:
    """The 5,000-people directory of ``nested_directory()``, one server per test module."""
    require_slapd()
    server = Slapd(nested_directory())
    try:
        yield server.start()
    finally:
        server.remove()


@pytest.fixture(scope="module")
def slapd_small() -> Iterator[Slapd]:
    """800 people (640 in the chefer tree: still more than the size limit), for the fast tests."""
    require_slapd()
    server = Slapd(nested_directory(800, disabled=8, without_mail=5))
    try:
        yield server.start()
    finally:
        server.remove()


def connection_kwargs(server: Slapd) -> dict[str, Any]:
    """What an ldap3 connection as the reader account needs (for tests that look at the server itself)."""
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(server.ca_file))
    return {"server": ldap3.Server("127.0.0.1", port=server.ldaps_port, use_ssl=True, tls=tls, get_info=ldap3.NONE),
            "user": READER_DN, "password": READER_PASSWORD, "auto_bind": True, "raise_exceptions": True}
