"""Directory lists from LDAP (Active Directory, OpenLDAP and kin), read with ldap3.

Always over TLS (``ldaps://``, or ``ldap://`` with StartTLS before the bind), the certificate
verified against the system's CAs plus the optional ``ca_file``, with the host name checked.
Every search is paged (RFC 2696), so a server's size limit (Active Directory's MaxPageSize
of 1000, or a ``sizelimit 500``) never cuts a list short; and a search that the server stops
anyway (a size or time limit) is an error, never a shorter list, because a short list that
looks complete is what the shrink guard exists to catch, and it cannot catch a fraction.

Nested groups are flattened two ways:

* Active Directory (its root DSE advertises the capability 1.2.840.113556.1.4.800) knows the
  in-chain matching rule (``memberOf:1.2.840.113556.1.4.1941:=GROUP``): one paged search
  returns every person in the group's tree, the server doing the walk.
* Any other server (OpenLDAP does not know the rule and answers it with nothing and success,
  so an empty answer proves nothing) is walked breadth-first: the group's ``member`` and
  ``uniqueMember`` values are looked up a level at a time, in batches by the first part of
  their DN (``(|(uid=a)(uid=b)...)``, which directories index), the groups among them expanded
  in turn; a visited set makes a cycle of groups harmless and each person come once. A level of
  thousands is first swept (one paged search of base_dn, stopped after twice the level's size),
  which costs less per entry than ldap3's large lookup filters; the lookups find the rest.

Left out, and counted: accounts whose ``userAccountControl`` has ACCOUNTDISABLE (2) set, and
entries without a mail address. Errors are wrapped once, here, as DirectoryError naming the
server (its URL) and never the password.
"""

from __future__ import annotations

import contextlib
import math
import re
import ssl
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from dispatch.config.settings import LdapDirectory
from dispatch.errors import DirectoryError
from dispatch.recipients.directory import DirectoryPerson, DirectoryResult

# Below every common server limit: Active Directory's MaxPageSize is 1000, OpenLDAP's default
# sizelimit 500 (a page may not exceed the size limit on some servers).
PAGE_SIZE = 500
# How many DNs one lookup of a level of group members asks for: a filter of this many
# equality terms stays a few kilobytes.
LOOKUP_BATCH = 100
# A level of a group's tree with this many DNs is first read by sweeping base_dn (Session.sweep),
# for at most SWEEP_BUDGET entries per DN on the level.
SWEEP_AT = 2000
SWEEP_BUDGET = 2
PAGED_RESULTS_CONTROL = "1.2.840.113556.1.4.319"
ACTIVE_DIRECTORY_CAPABILITY = "1.2.840.113556.1.4.800"  # LDAP_CAP_ACTIVE_DIRECTORY_OID
IN_CHAIN_RULE = "1.2.840.113556.1.4.1941"  # LDAP_MATCHING_RULE_IN_CHAIN
ACCOUNTDISABLE = 2
GROUP_CLASSES = ("group", "groupOfNames", "groupOfUniqueNames")
MEMBER_ATTRIBUTES = ("member", "uniqueMember")
# People: Active Directory's users (not its computers, which are of class user too); elsewhere
# every person (inetOrgPerson and organizationalPerson derive from it).
AD_PEOPLE = "(&(objectCategory=person)(objectClass=user))"
PEOPLE = "(objectClass=person)"
GROUPS = "(|" + "".join(f"(objectClass={name})" for name in GROUP_CLASSES) + ")"

DnKey = str  # a DN as dn_key() compares it


class _VerifiedTls(ldap3.Tls):
    """ldap3's TLS with Python's own verification: the certificate checked against the system's
    CAs plus ``ca_file``, and the host name (or IP address) checked by the ssl module, with SNI.
    (ldap3's own host name check has no IP addresses on Python 3.12 and later.)"""

    def __init__(self, host: str, ca_file: str | None) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED)
        self.context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if ca_file:
            self.context.load_verify_locations(cafile=ca_file)
        self.host = host

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self.context.wrap_socket(connection.socket, server_hostname=self.host,
                                                     do_handshake_on_connect=do_handshake)


@dataclass(frozen=True)
class Endpoint:
    """Where the directory is: a URL checked to be ldaps:// or ldap:// (StartTLS)."""

    url: str  # as shown in messages: scheme, host and port, never credentials
    host: str
    port: int
    starttls: bool

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("ldaps", "ldap") or not parts.hostname:
            raise ValueError(f"the url must be ldaps://HOST[:PORT] or ldap://HOST[:PORT] (StartTLS), not {url!r}")
        port = parts.port or (636 if parts.scheme == "ldaps" else 389)
        host = parts.hostname
        shown_host = f"[{host}]" if ":" in host else host
        return cls(url=f"{parts.scheme}://{shown_host}:{port}", host=host, port=port, starttls=parts.scheme == "ldap")


class LdapSource:
    """A DirectorySource over LDAP. One connection per question (a sync asks a few)."""

    def __init__(self, settings: LdapDirectory, password: str) -> None:
        self.settings = settings
        self.endpoint = Endpoint.parse(settings.url)
        self._password = password

    def group_members(self, group: str, attributes: Mapping[str, str]) -> DirectoryResult:
        with self._session() as session:
            return session.group_members(group, attributes)

    def matching(self, query: str, attributes: Mapping[str, str]) -> DirectoryResult:
        with self._session() as session:
            return session.matching(query, attributes)

    def is_active_directory(self) -> bool:
        """Whether the server's root DSE says it is Active Directory (and so flattens nested
        groups itself with the in-chain rule)."""
        with self._session() as session:
            return session.active_directory

    def _session(self) -> _Session:
        return _Session(self)

    def fail(self, message: str) -> DirectoryError:
        return DirectoryError(self.settings.name, self.endpoint.url, " ".join(message.split()))


class _Session:
    """One bound connection, closed on leaving; library errors become DirectoryError here."""

    def __init__(self, source: LdapSource) -> None:
        self.source = source
        self.settings = source.settings
        self.connection: ldap3.Connection | None = None
        self.active_directory = False

    def __enter__(self) -> _Session:
        endpoint, settings = self.source.endpoint, self.settings
        try:
            tls = _VerifiedTls(endpoint.host, str(settings.ca_file) if settings.ca_file else None)
        except OSError as exc:
            raise self.source.fail(f"cannot read ca_file {settings.ca_file}: {exc.strerror or exc}") from exc
        except ssl.SSLError as exc:
            raise self.source.fail(f"ca_file {settings.ca_file} holds no usable certificate ({exc.reason})") from exc
        server = ldap3.Server(endpoint.host, port=endpoint.port, use_ssl=not endpoint.starttls, tls=tls,
                              get_info=ldap3.NONE, connect_timeout=settings.timeout_seconds)
        connection = ldap3.Connection(server, user=settings.bind_dn, password=self.source._password,
                                      auto_bind=ldap3.AUTO_BIND_NONE, raise_exceptions=True, read_only=True,
                                      auto_referrals=False,
                                      # whole seconds: ldap3 packs it into SO_RCVTIMEO as integers
                                      receive_timeout=max(1, math.ceil(settings.timeout_seconds)))
        self.connection = connection
        try:
            with self.wrapped("connecting"):
                connection.open()
                if endpoint.starttls:
                    connection.start_tls()
                connection.bind()
                root = self.search_base_entry("", ["supportedCapabilities"])
        except BaseException:
            self.__exit__()  # (a failed enter has no exit of its own: the socket is closed here)
            raise
        self.active_directory = ACTIVE_DIRECTORY_CAPABILITY in _values(root or {}, "supportedCapabilities")
        return self

    def __exit__(self, *exc_info: object) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            # The socket is closed either way; the answer (or the error) is already had.
            with contextlib.suppress(ldap_errors.LDAPException):
                connection.unbind()

    def wrapped(self, doing: str) -> _Wrapped:
        return _Wrapped(self.source, doing)

    # -- searches ---------------------------------------------------------------------------------

    def paged(self, base: str, search_filter: str, attributes: Sequence[str],
              scope: Literal["BASE", "LEVEL", "SUBTREE"] = "SUBTREE") -> Iterator[tuple[str, Mapping[str, Any]]]:
        """(dn, attributes) of every entry found, a page at a time. A result other than success
        (a size or time limit the server applied anyway) is an error, not a short answer."""
        connection = self.connection
        assert connection is not None
        cookie: bytes | None = None
        while True:
            with self.wrapped("searching"):
                connection.search(base, search_filter, scope, attributes=list(attributes),
                                  paged_size=PAGE_SIZE, paged_cookie=cookie)
            result = connection.result
            if result["result"] != 0:
                raise self.source.fail(
                    f"the directory stopped the search under {base} ({result['description']}"
                    f"{': ' + result['message'] if result.get('message') else ''}); a list read in part "
                    "is never used: give the bind account paged reads without a total limit")
            for entry in connection.response or ():
                if entry.get("type") == "searchResEntry":  # not the references to other domains
                    yield entry["dn"], entry["attributes"]
            control = (result.get("controls") or {}).get(PAGED_RESULTS_CONTROL) or {}
            cookie = (control.get("value") or {}).get("cookie") or None
            if not cookie:
                return

    def search_base_entry(self, dn: str, attributes: Sequence[str]) -> Mapping[str, Any] | None:
        connection = self.connection
        assert connection is not None
        connection.search(dn, "(objectClass=*)", ldap3.BASE, attributes=list(attributes))
        for entry in connection.response or ():
            if entry.get("type") == "searchResEntry":
                return entry["attributes"]  # type: ignore[no-any-return]
        return None

    # -- the two questions ------------------------------------------------------------------------

    def group_members(self, group: str, attributes: Mapping[str, str]) -> DirectoryResult:
        with self.wrapped(f"reading the group {group}"):
            entry = self.search_base_entry(group, ["objectClass", *MEMBER_ATTRIBUTES])
        if entry is None:
            raise self.source.fail(f"the group {group} was not found (or the bind account may not read it)")
        classes = {value.lower() for value in _values(entry, "objectClass")}
        if not classes & {name.lower() for name in GROUP_CLASSES}:
            raise self.source.fail(f"{group} is not a group (its classes: {', '.join(sorted(classes)) or 'none'})")
        tally = _Tally(attributes)
        if self.active_directory:
            in_chain = f"(&{AD_PEOPLE}(memberOf:{IN_CHAIN_RULE}:={escape_filter_chars(group)}))"
            for dn, found in self.paged(self.settings.base_dn, in_chain, tally.wanted):
                tally.add(dn, found)
        else:
            self.expand(group, entry, tally)
        return tally.result()

    def matching(self, query: str, attributes: Mapping[str, str]) -> DirectoryResult:
        query = query.strip()
        if not query.startswith("("):
            query = f"({query})"
        tally = _Tally(attributes)
        people = AD_PEOPLE if self.active_directory else PEOPLE
        for dn, found in self.paged(self.settings.base_dn, f"(&{people}{query})", tally.wanted):
            tally.add(dn, found)
        return tally.result()

    def expand(self, group: str, entry: Mapping[str, Any], tally: _Tally) -> None:
        """The group's tree, a level at a time: each level's DNs looked up in batches, the groups
        among them giving the next level; a DN seen before (a cycle, a person in two groups) is
        not looked up again."""
        visited: set[DnKey] = {dn_key(group)}
        level = _new_members(entry, visited)
        wanted = [*tally.wanted, *MEMBER_ATTRIBUTES]
        classes = f"(|{GROUPS}{AD_PEOPLE if self.active_directory else PEOPLE})"
        while level:
            reading = _Level(level, visited, tally)
            if len(level) >= SWEEP_AT:
                self.sweep(classes, wanted, reading)
            for search_filter in _lookup_filters(reading.remaining.values(), classes):
                for dn, found in self.paged(self.settings.base_dn, search_filter, wanted):
                    reading.take(dn, found)
            level = reading.following

    def sweep(self, classes: str, wanted: Sequence[str], reading: _Level) -> None:
        """A large level read by one paged search of everyone under base_dn instead of lookups:
        each entry costs less than half of a lookup's (whose filter ldap3 builds term by term),
        but the sweep also reads who is not on the level, so it stops after SWEEP_BUDGET times the
        level's size and the lookups find the rest. A sweep the server stops (a size limit the
        lookups stay under) leaves the rest to the lookups too."""
        budget = SWEEP_BUDGET * len(reading.remaining)
        try:
            for read, (dn, found) in enumerate(self.paged(self.settings.base_dn, classes, wanted), start=1):
                reading.take(dn, found)
                if not reading.remaining or read >= budget:
                    return
        except DirectoryError:
            return


class _Level:
    """One level of a group's tree being read: the DNs not found yet, and the next level."""

    def __init__(self, level: dict[DnKey, str], visited: set[DnKey], tally: _Tally) -> None:
        self.remaining = dict(level)
        self.following: dict[DnKey, str] = {}
        self.visited = visited
        self.tally = tally

    def take(self, dn: str, found: Mapping[str, Any]) -> None:
        key = dn_key(dn)
        if self.remaining.pop(key, None) is None:
            return  # not on this level (a sweep reads everyone; a lookup may find the same RDN elsewhere)
        if _is_group(found):
            self.following.update(_new_members(found, self.visited))
        else:
            self.tally.add(dn, found, key)


class _Wrapped:
    """``with session.wrapped('doing'):`` turns ldap3's errors into one DirectoryError line."""

    def __init__(self, source: LdapSource, doing: str) -> None:
        self.source = source
        self.doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        if exc is None or not isinstance(exc, ldap_errors.LDAPException):
            return
        raise self.source.fail(_say(exc, self.doing, self.source.settings.bind_dn, self.source.endpoint.starttls)) from exc


def _say(exc: ldap_errors.LDAPException, doing: str, bind_dn: str, starttls: bool) -> str:
    """ldap3's error as one line a person can act on (it never holds the password)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, ldap_errors.LDAPInvalidCredentialsResult):
        return (f"the directory refused the bind account {bind_dn} (invalid credentials): check the password "
                "that password_env or password_file gives, and that the account is not locked or expired")
    if "timed out" in text.lower() and isinstance(exc, (ldap_errors.LDAPCommunicationError, ldap_errors.LDAPStartTLSError)):
        return f"no answer while {doing} (timed out); is the directory up, and is the url its LDAP port?"
    if isinstance(exc, ldap_errors.LDAPStartTLSError) or (isinstance(exc, ldap_errors.LDAPSocketOpenError)
                                                          and "ssl" in text.lower()):
        return (f"TLS failed while {doing} ({_tls_reason(text)}); the certificate must be valid for the host "
                "and signed by a CA the system trusts or that ca_file names"
                + ("; the server must offer StartTLS on ldap://" if starttls else ""))
    if isinstance(exc, ldap_errors.LDAPSocketOpenError):
        return f"cannot connect ({_socket_reason(text)}); is the directory up and the url right?"
    if isinstance(exc, (ldap_errors.LDAPSocketReceiveError, ldap_errors.LDAPResponseTimeoutError,
                        ldap_errors.LDAPSessionTerminatedByServerError, ldap_errors.LDAPSocketSendError)):
        return f"the connection failed while {doing} ({_socket_reason(text)})"
    if isinstance(exc, ldap_errors.LDAPNoSuchObjectResult):
        return f"not found while {doing}: no such entry in the directory (check base_dn and the list's group)"
    if isinstance(exc, ldap_errors.LDAPInvalidFilterError):
        return f"the filter is not valid LDAP ({text})"
    if isinstance(exc, ldap_errors.LDAPInsufficientAccessRightsResult):
        return f"the bind account {bind_dn} may not do this ({doing}): insufficient access rights"
    return f"{doing}: {text}"


def _tls_reason(text: str) -> str:
    verify = re.search(r"certificate verify failed: ([^(\]']+)", text)
    if verify:
        return "certificate verify failed: " + verify.group(1).strip()
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return "the server did not answer in TLS"
    code = re.search(r"\[SSL: ([A-Z_]+)\]", text)
    return code.group(1).lower().replace("_", " ") if code else text[:200]


def _socket_reason(text: str) -> str:
    match = re.search(r"\[Errno -?\d+\] ([^'\],)]+)", text)
    if match:
        return match.group(1).strip().lower()
    if "timed out" in text or "timeout" in text.lower():
        return "timed out"
    return text[:200]


class _Tally:
    """The people found, each once (by DN), and what was left out."""

    def __init__(self, attributes: Mapping[str, str]) -> None:
        self.mail = attributes.get("mail", "mail")
        self.name = attributes.get("name", "displayName")
        self.wanted = list(dict.fromkeys([self.mail, self.name, "userAccountControl", "objectClass"]))
        self.people: dict[DnKey, DirectoryPerson] = {}
        self.seen: set[DnKey] = set()
        self.disabled = 0
        self.without_mail = 0

    def add(self, dn: str, found: Mapping[str, Any], key: DnKey | None = None) -> None:
        key = key or dn_key(dn)
        if key in self.seen:
            return
        self.seen.add(key)
        flags = _first(found, "userAccountControl")
        if flags and flags.strip().lstrip("-").isdigit() and int(flags) & ACCOUNTDISABLE:
            self.disabled += 1
            return
        mail = (_first(found, self.mail) or "").strip()
        if not mail:
            self.without_mail += 1
            return
        self.people[key] = DirectoryPerson(mail=mail, name=" ".join((_first(found, self.name) or "").split()), source=dn)

    def result(self) -> DirectoryResult:
        # In DN order: the same directory gives the same snapshot, whatever order the pages came in.
        people = tuple(self.people[key] for key in sorted(self.people))
        return DirectoryResult(people=people, disabled=self.disabled, without_mail=self.without_mail)


def _values(entry: Mapping[str, Any], attribute: str) -> list[str]:
    """An attribute's values as text (ldap3 gives lists without a schema; names are case-insensitive)."""
    value = entry.get(attribute)
    if value is None:
        lowered = attribute.lower()
        value = next((v for k, v in entry.items() if k.lower() == lowered), None)
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item) for item in items]


def _first(entry: Mapping[str, Any], attribute: str) -> str | None:
    values = _values(entry, attribute)
    return values[0] if values else None


def _is_group(entry: Mapping[str, Any]) -> bool:
    classes = {value.lower() for value in _values(entry, "objectClass")}
    return bool(classes & {name.lower() for name in GROUP_CLASSES})


def _new_members(entry: Mapping[str, Any], visited: set[DnKey]) -> dict[DnKey, str]:
    """The member DNs of a group entry not seen before (now marked seen)."""
    found: dict[DnKey, str] = {}
    for attribute in MEMBER_ATTRIBUTES:
        for dn in _values(entry, attribute):
            try:
                key = dn_key(dn)
            except ldap_errors.LDAPInvalidDnError:
                continue  # not a DN (a uniqueMember's optional #UID suffix is handled by dn_key)
            if key and key not in visited:
                visited.add(key)
                found[key] = dn
    return found


def _lookup_filters(dns: Iterable[str], classes: str) -> Iterator[str]:
    """Filters finding the entries with these DNs: their first RDN, batched, within ``classes``."""
    by_type: dict[str, list[str]] = {}
    for dn in dns:
        attribute, value, _ = _rdns(dn)[0]
        by_type.setdefault(attribute.lower(), []).append(value)
    for attribute, values in sorted(by_type.items()):
        unique = sorted(set(values))
        for start in range(0, len(unique), LOOKUP_BATCH):
            terms = "".join(f"({attribute}={escape_filter_chars(value)})" for value in unique[start:start + LOOKUP_BATCH])
            yield f"(&{classes}(|{terms}))"


_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{2}|.)", re.DOTALL)


def _unescape(value: str) -> str:
    """A DN attribute value as the text it stands for: ``\\,`` is ',', ``\\C3\\A5`` is 'å'."""
    if "\\" not in value:
        return value
    out = bytearray()
    position = 0
    for match in _ESCAPE.finditer(value):
        out += value[position:match.start()].encode("utf-8")
        escaped = match.group(1)
        out += bytes.fromhex(escaped) if len(escaped) == 2 else escaped.encode("utf-8")
        position = match.end()
    out += value[position:].encode("utf-8")
    return out.decode("utf-8", "replace")


def _rdns(dn: str) -> list[tuple[str, str, str]]:
    """(attribute type, value with its escapes undone, separator after it) for each part of a DN."""
    if "#" in dn and not dn.rstrip().endswith("#"):
        base, _, suffix = dn.rpartition("#")
        if suffix.startswith("'") and base:  # uniqueMember's optional unique identifier
            dn = base
    if not any(special in dn for special in '\\"+'):
        # Without escapes, quotes or multi-valued RDNs a comma always ends an RDN: the common
        # case, and ten times faster than the full parser (a sync compares every member's DN).
        parts = [part.partition("=") for part in dn.split(",")]
        if all(equals and attribute.strip() for attribute, equals, _ in parts):
            return [(attribute.strip(), value.strip(), ",") for attribute, _, value in parts]
    return [(attribute.strip(), _unescape(value.strip()), separator) for attribute, value, separator in parse_dn(dn)]


_KEY_SPECIAL = str.maketrans({"\\": "\\\\", ",": "\\,", "+": "\\+", "=": "\\="})


def dn_key(dn: str) -> DnKey:
    """A DN compared as directories compare the usual naming attributes (cn, uid, ou, dc):
    attribute types and values without regard to case, escapes undone, spaces folded. One short
    string (not a tuple of parts), since a sync keeps one for every member it has seen."""
    return "".join(f"{attribute.lower()}={' '.join(value.lower().split()).translate(_KEY_SPECIAL)}{separator}"
                   for attribute, value, separator in _rdns(dn)).rstrip(",")
