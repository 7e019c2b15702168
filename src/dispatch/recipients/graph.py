"""Microsoft Entra ID through Microsoft Graph: a group's members, nested groups flattened by
Graph itself (``transitiveMembers``), read with an application's own token (the OAuth2
client-credentials flow, no user involved).

What is asked of Graph, and why:

- ``GET {graph_url}/groups/{id}/transitiveMembers/microsoft.graph.user`` with ``$select`` and
  ``$top=999``. The cast to ``microsoft.graph.user`` leaves out devices, contacts and the nested
  groups themselves; ``$select`` asks only for what we use (and ``$top`` for the largest page
  Graph gives for directory objects). None of this is an "advanced query", so neither
  ``ConsistencyLevel: eventual`` nor ``$count=true`` is sent: they are needed only for
  ``$search``, ``$count`` and ``$filter``/``$orderby`` forms we do not use, and they would read
  from Graph's eventually consistent index, where someone just removed from the group may still
  be listed. Disabled accounts are filtered here, not with ``$filter=accountEnabled eq true``,
  because the shrink guard and the operator want them counted.
- Every ``@odata.nextLink`` is followed as Graph gives it (an opaque ``$skiptoken``), but only on
  the origin of ``graph_url``: the bearer token goes nowhere else.
- ``429 Too Many Requests`` and ``503 Service Unavailable`` are retried after the ``Retry-After``
  seconds Graph names (an exponential wait when it names none), a bounded number of times; a
  wait longer than :data:`LONGEST_WAIT_SECONDS` is not waited for: the sync fails, the list is
  held and the next sync tries again.

Every failure is one :class:`~dispatch.errors.DirectoryError` naming the server (the login
authority for the token, graph_url's origin for the rest). The client secret is read from the
environment or a file when a sync starts and never put in a message: anything a server says is
cut to one line with the secret blanked before it is shown.
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx2
from authlib.integrations.httpx_client import OAuth2Client, OAuthError  # type: ignore[import-untyped]

from dispatch.config.credentials import SecretUnavailable, read_secret
from dispatch.config.settings import GraphDirectory
from dispatch.errors import DirectoryError
from dispatch.recipients.directory import DEFAULT_ATTRIBUTES, DirectoryPerson, DirectoryResult

PAGE_SIZE = 999  # the most members Graph returns per page of directory objects
RETRIES = 5  # per request, for 429 and 503; then the sync fails and the list is held
LONGEST_WAIT_SECONDS = 120.0  # a Retry-After beyond this fails the sync rather than stall it
FIRST_BACKOFF_SECONDS = 2.0  # when a 429/503 names no Retry-After: 2, 4, 8, ... seconds
RETRIED_STATUSES = frozenset({429, 503})

# What we need besides the mapped attributes: the object id (each person once), whether the
# account may sign in, and the user principal name, which every user has: a user without one is
# Graph's "limited information" for an object the application may not read.
BASE_PROPERTIES = ("id", "accountEnabled", "userPrincipalName")
# A Graph property name, as it may appear in $select (no spaces, commas or query syntax).
PROPERTY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
GROUP_ID = re.compile(r"[0-9A-Za-z-]{1,64}")  # an object id is a GUID; nothing that reshapes the URL
CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
LONGEST_DETAIL = 300  # what a server says, cut to this many characters in a message


class GraphSource:
    """A :class:`~dispatch.recipients.directory.DirectorySource` for a ``kind: graph`` directory.
    ``sleep`` is how a throttled request waits (tests pass one that counts)."""

    def __init__(self, directory: GraphDirectory, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.directory = directory
        self.sleep = sleep
        self.graph_origin = origin(directory.graph_url)
        self.login_origin = origin(directory.authority)
        self.token_url = f"{directory.authority.rstrip('/')}/{quote(directory.tenant_id, safe='')}/oauth2/v2.0/token"
        # The client-credentials flow asks for every application permission granted on the
        # resource at once: "{resource}/.default", the resource being Graph's origin (a national
        # cloud's Graph has its own, e.g. https://graph.microsoft.us).
        self.scope = f"{self.graph_origin}/.default"

    # -- DirectorySource -----------------------------------------------------------------

    def group_members(self, group: str, attributes: Mapping[str, str]) -> DirectoryResult:
        """Every user in the group with the object id ``group``, members of nested groups
        included, each once; disabled accounts and users without a mail address counted."""
        if not GROUP_ID.fullmatch(group):
            raise self._graph_error(f"{group!r} is not a group's object id; name the group by its object id "
                                    "(Entra ID -> Groups -> the group -> Object ID)")
        mail_property = self._property(attributes, "mail")
        name_property = self._property(attributes, "name")
        select = ",".join(dict.fromkeys((*BASE_PROPERTIES, mail_property, name_property)))
        first = (f"{self.directory.graph_url.rstrip('/')}/groups/{group}/transitiveMembers/microsoft.graph.user"
                 f"?$select={select}&$top={PAGE_SIZE}")
        people: dict[str, DirectoryPerson] = {}
        seen: set[str] = set()
        disabled = without_mail = 0
        with self._client() as client:
            for user in self._pages(client, first, group):
                object_id = user.get("id")
                if not isinstance(object_id, str) or object_id in seen:
                    continue
                seen.add(object_id)
                if user.get("userPrincipalName") is None:
                    raise self._graph_error(
                        f"group {group}: Graph returned users without their properties, as it does when the "
                        "application may not read users; grant it the User.Read.All application permission "
                        "(with admin consent)")
                if user.get("accountEnabled") is False:
                    disabled += 1
                    continue
                mail = _text(user.get(mail_property))
                if not mail:
                    without_mail += 1
                    continue
                people[object_id] = DirectoryPerson(mail=mail, name=_text(user.get(name_property)), source=object_id)
        return DirectoryResult(people=tuple(people.values()), disabled=disabled, without_mail=without_mail)

    def matching(self, query: str, attributes: Mapping[str, str]) -> DirectoryResult:
        raise self._graph_error("filters are for LDAP directories; name a group's object id (group:) instead")

    # -- HTTP ----------------------------------------------------------------------------

    def _client(self) -> Any:
        context = ssl.create_default_context()  # Graph and the login authority: always verified
        if self.directory.ca_file:
            try:
                context.load_verify_locations(cafile=str(self.directory.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise self._graph_error(f"cannot load ca_file {self.directory.ca_file}: {_one_line(str(exc), '')}") from None
        return OAuth2Client(
            client_id=self.directory.client_id, client_secret=self._secret(),
            # Microsoft documents the secret in the form body; authlib's default is HTTP Basic.
            token_endpoint_auth_method="client_secret_post", scope=self.scope,
            # With these two authlib fetches a new token by itself when one expires mid-sync.
            token_endpoint=self.token_url, grant_type="client_credentials",
            verify=context, timeout=self.directory.timeout_seconds, follow_redirects=False,
        )

    def _fetch_token(self, client: Any) -> None:
        try:
            client.fetch_token(self.token_url, grant_type="client_credentials")
        except OAuthError as exc:
            raise self._token_error(client, f"{exc.error}: {exc.description or 'no description'}") from exc
        except httpx2.HTTPStatusError as exc:
            raise self._token_error(client, f"HTTP {exc.response.status_code}") from exc
        except httpx2.HTTPError as exc:
            raise self._token_error(client, _network(exc)) from exc
        except ValueError as exc:  # a body that is not a JSON object
            raise self._token_error(client, f"answered something that is not a token ({_one_line(str(exc), '')})") from exc
        if not client.token or not client.token.get("access_token"):
            raise self._token_error(client, "answered without an access_token")

    def _pages(self, client: Any, url: str, group: str) -> Iterator[dict[str, Any]]:
        """The users on each page, following @odata.nextLink to the last page."""
        self._fetch_token(client)
        followed: set[str] = set()
        next_url: str | None = url
        while next_url is not None:
            if next_url in followed:
                raise self._graph_error(f"group {group}: @odata.nextLink leads back to a page already read")
            followed.add(next_url)
            page = self._get(client, next_url, group)
            users = page.get("value")
            if not isinstance(users, list):
                raise self._graph_error(f"group {group}: a page without a 'value' list")
            for user in users:
                if isinstance(user, dict):
                    yield user
            link = page.get("@odata.nextLink")
            if link is not None and (not isinstance(link, str) or origin(link) != self.graph_origin):
                # The bearer token would follow the link: only to the Graph we were configured with.
                raise self._graph_error(f"group {group}: @odata.nextLink points outside {self.graph_origin}")
            next_url = link

    def _get(self, client: Any, url: str, group: str) -> dict[str, Any]:
        """One page: 429/503 waited for and retried, a 401 answered with one new token."""
        renewed = False
        waits = 0
        while True:
            try:
                response = client.get(url, headers={"Accept": "application/json"})
            except OAuthError as exc:  # the token expired and authlib's new one was refused
                raise self._token_error(client, f"{exc.error}: {exc.description or 'no description'}") from exc
            except httpx2.HTTPError as exc:
                raise self._graph_error(_network(exc)) from exc
            status = response.status_code
            if status in RETRIED_STATUSES and waits < RETRIES:
                delay = retry_after(response, FIRST_BACKOFF_SECONDS * 2**waits)
                if delay > LONGEST_WAIT_SECONDS:
                    raise self._graph_error(f"HTTP {status}: Graph asks to wait {delay:.0f} s, longer than "
                                            f"{LONGEST_WAIT_SECONDS:.0f} s; the next sync tries again")
                waits += 1
                self.sleep(delay)
                continue
            if status == 401 and not renewed:  # a token revoked or expired early: one new token
                renewed = True
                self._fetch_token(client)
                continue
            if status != 200:
                raise self._graph_error(self._refusal(client, response, group, waits))
            try:
                page = response.json()
            except ValueError as exc:
                raise self._graph_error(f"group {group}: the answer is not JSON ({_one_line(str(exc), '')})") from exc
            if not isinstance(page, dict):
                raise self._graph_error(f"group {group}: the answer is not a JSON object")
            return page

    def _refusal(self, client: Any, response: httpx2.Response, group: str, waits: int) -> str:
        code, message = graph_error_of(response)
        said = _one_line(f"{code}: {message}" if code else message, str(client.client_secret or ""))
        status = response.status_code
        if status == 404:
            return f"group {group} not found ({said}); check the group's object id"
        if status == 403:
            return (f"HTTP 403 ({said}); grant the application GroupMember.Read.All and User.Read.All "
                    "(application permissions, with admin consent)")
        if status == 401:
            return f"HTTP 401 ({said}); Graph refused the application's token"
        if status in RETRIED_STATUSES:
            return f"HTTP {status} after {waits} waits ({said}); the next sync tries again"
        return f"HTTP {status} ({said})" if said else f"HTTP {status}"

    # -- secrets and errors --------------------------------------------------------------

    def _secret(self) -> str:
        d = self.directory
        try:
            return read_secret(d.client_secret_env, d.client_secret_file)
        except SecretUnavailable as missing:
            said = {"env": f"the environment variable {d.client_secret_env} (client_secret_env) is not set or empty; "
                           "export the application's client secret in it",
                    "unreadable": f"cannot read client_secret_file {d.client_secret_file}: {missing.detail}",
                    "empty": f"client_secret_file {d.client_secret_file} is empty",
                    "none": "no client secret: set client_secret_env or client_secret_file"}[missing.reason]
            raise DirectoryError(d.name, self.login_origin, said) from None

    def _property(self, attributes: Mapping[str, str], field: str) -> str:
        name = attributes.get(field, DEFAULT_ATTRIBUTES[field])
        if not PROPERTY_NAME.fullmatch(name):
            raise self._graph_error(f"attributes.{field}: {name!r} is not a Graph property name (e.g. mail, displayName)")
        return name

    def _token_error(self, client: Any, said: str) -> DirectoryError:
        secret = str(getattr(client, "client_secret", "") or "")
        return DirectoryError(self.directory.name, self.login_origin,
                              f"no token for client {self.directory.client_id} in tenant {self.directory.tenant_id}: "
                              f"{_one_line(said, secret)}")

    def _graph_error(self, message: str) -> DirectoryError:
        return DirectoryError(self.directory.name, self.graph_origin, message)


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, without a path or credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def retry_after(response: httpx2.Response, otherwise: float) -> float:
    """Seconds to wait before asking again: Retry-After's seconds or its HTTP date (measured from
    the same server's Date header, so no clock of ours enters), else ``otherwise``."""
    value = str(response.headers.get("Retry-After", "")).strip()
    if value.isdigit():
        return float(value)
    if value:
        try:
            until = parsedate_to_datetime(value)
            now = parsedate_to_datetime(str(response.headers.get("Date", "")))
            return max(0.0, (until - now).total_seconds())
        except (TypeError, ValueError):
            pass
    return otherwise


def graph_error_of(response: httpx2.Response) -> tuple[str, str]:
    """Graph's ``{"error": {"code", "message"}}`` (the OAuth2 ``error``/``error_description``
    form too), or the start of whatever else the body is."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:LONGEST_DETAIL]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("code") or ""), str(error.get("message") or "")
        if isinstance(error, str):
            return error, str(body.get("error_description") or "")
    return "", ""


def _one_line(text: str, secret: str) -> str:
    """A server's words fit for one line of a message: the secret blanked, control characters
    (line breaks) made spaces, cut to LONGEST_DETAIL characters."""
    if secret:
        text = text.replace(secret, "***")
    text = CONTROL.sub(" ", text).strip()
    return text if len(text) <= LONGEST_DETAIL else text[: LONGEST_DETAIL - 1] + "…"


def _network(exc: httpx2.HTTPError) -> str:
    if isinstance(exc, httpx2.TimeoutException):
        return "no answer in time"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"its TLS certificate is not trusted ({cause.verify_message}); set ca_file if it is signed by a private CA"
        cause = cause.__cause__ or cause.__context__
    return f"cannot connect ({_one_line(str(exc), '') or type(exc).__name__})"


def _text(value: object) -> str:
    """A property's value as text: a string, or the first string of a list (otherMails)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        return next((item.strip() for item in value if isinstance(item, str) and item.strip()), "")
    return ""
