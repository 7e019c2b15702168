"""The config's ``directories:`` (where directory lists are read: LDAP or Microsoft Graph) and
``sync_minutes``. Secrets are never here: a password or client secret written inline is refused,
and only the name of an environment variable or a file is kept (credentials.py checks that they
can be had, without reading them out)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from dispatch.config.reader import Reader
from dispatch.config.settings import GRAPH_KEYS, LDAP_KEYS, GraphDirectory, LdapDirectory
from dispatch.config.yamlsource import LineDict

DIRECTORY_KINDS = ("ldap", "graph")
# A directory's name is written in list files (source: NAME) and shown in messages.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_INLINE_SECRETS = {"ldap": ("password", "password_env", "password_file"),
                   "graph": ("client_secret", "client_secret_env", "client_secret_file")}


def read_directories(reader: Reader, raw: LineDict) -> dict[str, LdapDirectory | GraphDirectory]:
    value = raw.get("directories")
    if value is None:
        return {}
    if not isinstance(value, LineDict):
        reader.problem(raw.line_of("directories"), "'directories' must be a mapping of names to directories, e.g. "
                                                   "directories: {ad: {kind: ldap, url: ..., bind_dn: ..., base_dn: ...}}")
        return {}
    found: dict[str, LdapDirectory | GraphDirectory] = {}
    for name, entry in value.items():
        line = value.line_of(name)
        shown = str(name)
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            reader.problem(line, f"directory name {shown!r} must be letters, digits, '-', '_' or '.' (it is written in "
                                 "list files as source: NAME)")
            continue
        if not isinstance(entry, LineDict):
            reader.problem(line, f"'directories.{name}' must be a mapping with kind: ldap or kind: graph and its settings")
            continue
        kind = entry.get("kind")
        if kind not in DIRECTORY_KINDS:
            reader.problem(entry.line_of("kind") if "kind" in entry else line,
                           f"'directories.{name}.kind' must be ldap or graph, not {kind!r}"
                           if "kind" in entry else f"'directories.{name}' needs kind: ldap or kind: graph")
            continue
        # A missing key is reported at the directory's name, where it would be added.
        entry.line = line
        directory = _read_ldap(reader, name, entry) if kind == "ldap" else _read_graph(reader, name, entry)
        if directory is not None:
            found[name] = directory
    return found


def read_sync_minutes(reader: Reader, raw: LineDict) -> float:
    return float(reader.number(raw, "sync_minutes", (int, float), 60.0, low=1, high=1440,
                               rule="minutes from 1 to 1440 (default 60)"))


def _required(reader: Reader, entry: LineDict, name: str, key: str, what: str) -> str | None:
    prefix = f"directories.{name}."
    value = reader.text(entry, key, None, prefix)
    if value is None or not str(value).strip():
        if key not in entry:
            reader.problem(entry.line, f"'directories.{name}' needs '{key}' ({what})")
        elif value is not None:
            reader.problem(entry.line_of(key), f"'{prefix}{key}' is empty; give {what}")
        return None
    return str(value).strip()


def _one_secret(reader: Reader, entry: LineDict, name: str, kind: str) -> tuple[str | None, str | None] | None:
    """(env name, file) of the directory's secret: exactly one of the two; the secret itself refused."""
    inline, env_key, file_key = _INLINE_SECRETS[kind]
    prefix = f"directories.{name}."
    if inline in entry:
        reader.problem(entry.line_of(inline), f"secrets do not belong in the config file: remove '{prefix}{inline}' and "
                                              f"set '{env_key}' (the name of an environment variable) or '{file_key}' instead")
    env = reader.text(entry, env_key, None, prefix)
    file = reader.text(entry, file_key, None, prefix)
    if env and file:
        reader.problem(entry.line_of(file_key), f"'{prefix}{env_key}' and '{prefix}{file_key}' are both set; keep one")
        return None
    if not env and not file:
        if inline not in entry:
            reader.problem(entry.line, f"'directories.{name}' needs '{env_key}' (the name of an environment variable "
                                       f"holding the secret) or '{file_key}'")
        return None
    return env or None, file or None


def _timeout(reader: Reader, entry: LineDict, name: str) -> float:
    return float(reader.number(entry, "timeout_seconds", (int, float), 30.0, f"directories.{name}.", above=0, high=600,
                               rule="a number of seconds above 0, at most 600 (default 30)"))


def _read_ldap(reader: Reader, name: str, entry: LineDict) -> LdapDirectory | None:
    reader.check_keys(entry, LDAP_KEYS, f"directories.{name}", reported=("password",))
    prefix = f"directories.{name}."
    url = _required(reader, entry, name, "url", "ldaps://HOST, or ldap://HOST which is always used with StartTLS")
    if url is not None:
        parts = urlsplit(url)
        problem = None
        if parts.scheme not in ("ldaps", "ldap"):
            problem = (f"'{prefix}url' must be ldaps://HOST[:PORT], or ldap://HOST[:PORT] (always with StartTLS), "
                       f"not {url!r}")
        elif parts.username or parts.password:
            problem = (f"'{prefix}url' must not carry credentials; the bind account is bind_dn, its password "
                       "password_env or password_file")
        elif not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
            problem = f"'{prefix}url' must be just the server, like ldaps://dc.example.org or ldaps://dc.example.org:636"
        else:
            try:
                parts.port  # noqa: B018 (a port that is not a number raises here)
            except ValueError:
                problem = f"'{prefix}url' has a port that is not a number from 1 to 65535: {url!r}"
        if problem:
            reader.problem(entry.line_of("url"), problem)
            url = None
    bind_dn = _required(reader, entry, name, "bind_dn", "the DN of the account that reads the directory")
    base_dn = _required(reader, entry, name, "base_dn", "where people and groups are searched, like DC=example,DC=org")
    secret = _one_secret(reader, entry, name, "ldap")
    ca_file = reader.relative(reader.text(entry, "ca_file", None, prefix))
    timeout = _timeout(reader, entry, name)
    if url is None or bind_dn is None or base_dn is None or secret is None:
        return None
    return LdapDirectory(name=name, url=url, bind_dn=bind_dn, base_dn=base_dn, password_env=secret[0],
                         password_file=reader.relative(secret[1]), ca_file=ca_file, timeout_seconds=timeout)


def _https(reader: Reader, entry: LineDict, name: str, key: str, default: str) -> str:
    prefix = f"directories.{name}."
    value = reader.text(entry, key, default, prefix)
    parts = urlsplit(str(value))
    if parts.scheme != "https" or not parts.hostname:
        reader.problem(entry.line_of(key), f"'{prefix}{key}' must be an https:// URL, not {value!r}")
        return default
    return str(value).rstrip("/")


def _read_graph(reader: Reader, name: str, entry: LineDict) -> GraphDirectory | None:
    reader.check_keys(entry, GRAPH_KEYS, f"directories.{name}", reported=("client_secret",))
    prefix = f"directories.{name}."
    tenant_id = _required(reader, entry, name, "tenant_id", "the Entra ID tenant's id (a GUID) or domain")
    client_id = _required(reader, entry, name, "client_id", "the application (client) id registered in the tenant")
    secret = _one_secret(reader, entry, name, "graph")
    defaults = GraphDirectory(name=name, tenant_id="", client_id="")
    authority = _https(reader, entry, name, "authority", defaults.authority)
    graph_url = _https(reader, entry, name, "graph_url", defaults.graph_url)
    ca_file = reader.relative(reader.text(entry, "ca_file", None, prefix))
    timeout = _timeout(reader, entry, name)
    if tenant_id is None or client_id is None or secret is None:
        return None
    return GraphDirectory(name=name, tenant_id=tenant_id, client_id=client_id, client_secret_env=secret[0],
                          client_secret_file=reader.relative(secret[1]), authority=authority, graph_url=graph_url,
                          ca_file=ca_file, timeout_seconds=timeout)
