"""A local stand-in for Microsoft Entra ID and Microsoft Graph, over HTTPS with a certificate from a
test CA (trustme): no tenant is reachable from the tests, so this server speaks the documented
shapes of the two endpoints the Graph directory source uses, and checks what it is sent.

- ``POST /{tenant}/oauth2/v2.0/token`` (the identity platform's client-credentials grant): a form
  with ``grant_type=client_credentials``, ``client_id``, ``client_secret`` and
  ``scope={graph origin}/.default``; answers ``{"token_type": "Bearer", "expires_in": ...,
  "access_token": ...}``, or the platform's errors (``invalid_client`` with 401 for a wrong
  secret, ``unauthorized_client``, ``invalid_scope``, ``unsupported_grant_type`` with 400), each
  with an ``AADSTS`` code in ``error_description``.
- ``GET /v1.0/groups/{id}/transitiveMembers/microsoft.graph.user?$select=...&$top=N`` with
  ``Authorization: Bearer`` a token it issued: ``{"@odata.context", "value": [...],
  "@odata.nextLink"}`` pages (an opaque ``$skiptoken``), only the ``$select``ed properties (null
  when unset, as Graph does), ``404 Request_ResourceNotFound`` for an unknown group, ``401
  InvalidAuthenticationToken`` without a valid token, and ``429 TooManyRequests`` with
  ``Retry-After`` where a test asks for it.

Use: ``from graphserver import graph_server_fixture, graph_fixture  # noqa: F401`` makes the
fixtures ``graph_server`` (one server per test module) and ``graph`` (the same server, its tenant
reset for each test) available; or ``with running_graph_server(path) as server:``.
``server.directory()`` is the ``GraphDirectory`` that reaches it, ``server.config_entry()`` the
same as a ``directories:`` entry of config.yaml (for a CLI process).
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from dispatch.config.settings import GraphDirectory

GRAPH_PAGE_LIMIT = 999  # Graph's largest $top for directory objects


@dataclass
class GraphUser:
    """A user as Entra ID keeps them; ``mail`` None is a user without a mailbox address."""

    id: str
    display_name: str
    mail: str | None
    enabled: bool = True

    @property
    def upn(self) -> str:
        return f"{self.id[:8]}@tenant.onmicrosoft.com"

    def properties(self) -> dict[str, Any]:
        return {"id": self.id, "displayName": self.display_name, "mail": self.mail, "accountEnabled": self.enabled,
                "userPrincipalName": self.upn, "givenName": None, "otherMails": []}


def user(number: int, *, mail: bool = True, enabled: bool = True) -> GraphUser:
    """User ``number``: a stable object id, ``Person N`` and ``person.N@region.example.se``."""
    object_id = str(uuid.UUID(int=0x5EED_0000_0000_0000_0000_0000_0000_0000 + number))
    return GraphUser(object_id, f"Person {number}", f"person.{number}@region.example.se" if mail else None, enabled)


@dataclass
class TokenRequest:
    """What the token endpoint was sent, the secret only as whether it was right."""

    tenant: str
    grant_type: str
    client_id: str
    scope: str
    secret_right: bool
    status: int


@dataclass
class PageRequest:
    group: str
    page: int  # 0 for the first page
    select: str
    top: str
    bearer_valid: bool
    consistency_level: str | None
    status: int


@dataclass
class Tenant:
    """The directory the server stands for, and what it saw. Tests set the fields directly."""

    tenant_id: str = "6f0e1c2a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
    client_id: str = "0a1b2c3d-4e5f-4a6b-9c8d-7e6f5a4b3c2d"
    client_secret: str = "Zq8~graph-test-secret.NOT-a-real-one_4711"
    groups: dict[str, list[GraphUser]] = field(default_factory=dict)
    page_size: int = GRAPH_PAGE_LIMIT  # below $top to make pages of a few members
    throttle: dict[tuple[str, int], int] = field(default_factory=dict)  # (group, page) -> 429s before serving it
    retry_after: str | None = "1"  # the 429's Retry-After (None: none sent)
    limited: bool = False  # members "with limited information" (the app may not read users)
    not_json: set[tuple[str, int]] = field(default_factory=set)  # pages answered with a broken body
    revoke: set[tuple[str, int]] = field(default_factory=set)  # pages whose first request finds every token revoked
    forbidden: bool = False  # the application lacks the permission (403 Authorization_RequestDenied)
    next_link_origin: str | None = None  # @odata.nextLink on another origin than this server's
    expires_in: int = 3599
    tokens: set[str] = field(default_factory=set)
    token_requests: list[TokenRequest] = field(default_factory=list)
    page_requests: list[PageRequest] = field(default_factory=list)


class GraphServer:
    def __init__(self, root: Path) -> None:
        import trustme

        self.root = root
        self.lock = threading.Lock()
        self.tenant = Tenant()
        authority = trustme.CA(organization_name="dispatch graph tests")
        leaf = authority.issue_cert("127.0.0.1", "localhost")
        self.ca_file = root / "graph-ca.pem"
        authority.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(context)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.graph = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="graph-server", daemon=True)
        self.secret_file = root / "graph-client-secret"

    @property
    def authority(self) -> str:
        return self.url

    @property
    def graph_url(self) -> str:
        return f"{self.url}/v1.0"

    def start(self) -> GraphServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)

    def reset(self) -> Tenant:
        with self.lock:
            self.tenant = Tenant()
        self.secret_file.write_text(self.tenant.client_secret + "\n", encoding="utf-8")
        return self.tenant

    def directory(self, name: str = "entra", **changes: Any) -> GraphDirectory:
        """The settings that reach this server, the secret in a file (``changes`` override)."""
        self.secret_file.write_text(self.tenant.client_secret + "\n", encoding="utf-8")
        values: dict[str, Any] = {
            "name": name, "tenant_id": self.tenant.tenant_id, "client_id": self.tenant.client_id,
            "client_secret_file": self.secret_file, "authority": self.authority, "graph_url": self.graph_url,
            "ca_file": self.ca_file, "timeout_seconds": 10.0,
        }
        values.update(changes)
        return GraphDirectory(**values)

    def config_entry(self, secret_env: str | None = None) -> dict[str, str]:
        """This server as a ``directories:`` entry (``kind: graph``) of config.yaml."""
        self.secret_file.write_text(self.tenant.client_secret + "\n", encoding="utf-8")
        secret = {"client_secret_env": secret_env} if secret_env else {"client_secret_file": str(self.secret_file)}
        return {"kind": "graph", "tenant_id": self.tenant.tenant_id, "client_id": self.tenant.client_id, **secret,
                "authority": self.authority, "graph_url": self.graph_url, "ca_file": str(self.ca_file)}

    def pages_served(self, group: str) -> list[int]:
        """The pages of ``group`` answered with 200, in order."""
        with self.lock:
            return [r.page for r in self.tenant.page_requests if r.group == group and r.status == 200]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Graph: the client reuses one connection
    server_version = "graph-test"

    @property
    def graph(self) -> GraphServer:
        server: Any = self.server
        return server.graph  # type: ignore[no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the tests read the recorded requests instead

    def answer(self, status: int, body: object, headers: dict[str, str] | None = None, *, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        parts = urlsplit(self.path).path.strip("/").split("/")
        if len(parts) != 4 or parts[1:] != ["oauth2", "v2.0", "token"]:
            self.answer(404, {"error": "invalid_request", "error_description": "AADSTS900561: The endpoint only accepts POST requests."})
            return
        tenant = self.graph.tenant
        status, body = 200, {}
        if parts[0] != tenant.tenant_id:
            status, body = 400, _aad("invalid_request", f"AADSTS90002: Tenant '{parts[0]}' not found.")
        elif form.get("grant_type") != "client_credentials":
            status, body = 400, _aad("unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type.")
        elif form.get("client_id") != tenant.client_id:
            status, body = 400, _aad("unauthorized_client",
                                     f"AADSTS700016: Application with identifier '{form.get('client_id')}' was not found "
                                     "in the directory.")
        elif form.get("client_secret") != tenant.client_secret:
            status, body = 401, _aad("invalid_client",
                                     "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the "
                                     "request is the client secret value, not the client secret ID, for a secret added to "
                                     f"app '{tenant.client_id}'.\r\nTrace ID: 0000\r\nCorrelation ID: 0000")
        elif form.get("scope") != f"{self.graph.url}/.default":
            status, body = 400, _aad("invalid_scope", f"AADSTS1002012: The provided value for scope {form.get('scope')} is not valid.")
        else:
            token = f"eyJ0eXAiOiJKV1QifQ.graph-test-{secrets.token_urlsafe(16)}.c2ln"
            with self.graph.lock:
                tenant.tokens.add(token)
            body = {"token_type": "Bearer", "expires_in": tenant.expires_in, "ext_expires_in": tenant.expires_in,
                    "access_token": token}
        with self.graph.lock:
            tenant.token_requests.append(TokenRequest(parts[0], form.get("grant_type", ""), form.get("client_id", ""),
                                                      form.get("scope", ""), form.get("client_secret") == tenant.client_secret,
                                                      status))
        self.answer(status, body)

    def do_GET(self) -> None:
        tenant = self.graph.tenant
        split = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        parts = split.path.strip("/").split("/")
        if len(parts) != 5 or parts[0] != "v1.0" or parts[1] != "groups" or parts[3:] != ["transitiveMembers", "microsoft.graph.user"]:
            self.answer(400, _graph_error("BadRequest", f"Resource not found for the segment '{parts[-1]}'."))
            return
        group = parts[2]
        page = _page_of(query.get("$skiptoken"), group)
        authorization = self.headers.get("Authorization", "")
        with self.graph.lock:
            if (group, page) in tenant.revoke:
                tenant.revoke.discard((group, page))
                tenant.tokens.clear()
        bearer_valid = authorization.startswith("Bearer ") and authorization[7:] in tenant.tokens
        top = query.get("$top", "100")  # Graph's default page for directory objects is 100
        select = query.get("$select", "")

        def record(status: int) -> None:
            with self.graph.lock:
                tenant.page_requests.append(PageRequest(group, page, select, top, bearer_valid,
                                                        self.headers.get("ConsistencyLevel"), status))

        if not bearer_valid:
            record(401)
            message = "Access token is empty." if not authorization else "Access token validation failure. Invalid audience."
            self.answer(401, _graph_error("InvalidAuthenticationToken", message), {"WWW-Authenticate": 'Bearer realm=""'})
            return
        if tenant.forbidden:
            record(403)
            self.answer(403, _graph_error("Authorization_RequestDenied", "Insufficient privileges to complete the operation."))
            return
        if group not in tenant.groups:
            record(404)
            self.answer(404, _graph_error("Request_ResourceNotFound",
                                          f"Resource '{group}' does not exist or one of its queried reference-property "
                                          "objects are not present."))
            return
        if not top.isdigit() or not 1 <= int(top) <= GRAPH_PAGE_LIMIT:
            record(400)
            self.answer(400, _graph_error("Request_UnsupportedQuery", f"Invalid page size specified: '{top}'."))
            return
        with self.graph.lock:
            throttled = tenant.throttle.get((group, page), 0)
            if throttled:
                tenant.throttle[(group, page)] = throttled - 1
        if throttled:
            record(429)
            headers = {"Retry-After": tenant.retry_after} if tenant.retry_after is not None else {}
            self.answer(429, _graph_error("TooManyRequests", "Too many requests."), headers)
            return
        if (group, page) in tenant.not_json:
            record(200)
            self.answer(200, None, raw=b'{"value": [{"id": "cut off')
            return
        size = min(int(top), tenant.page_size)
        members = tenant.groups[group]
        chunk = members[page * size:(page + 1) * size]
        wanted = [name for name in select.split(",") if name] or ["id", "displayName", "mail", "userPrincipalName"]
        values = []
        for member in chunk:
            properties = member.properties()
            if tenant.limited:  # Graph: only the type and the id; every other property null
                values.append({"@odata.type": "#microsoft.graph.user", "id": member.id,
                               **{name: None for name in wanted if name != "id"}})
            else:
                values.append({name: properties.get(name) for name in wanted})
        body: dict[str, Any] = {"@odata.context": f"{self.graph.graph_url}/$metadata#users({quote(select, safe=',')})",
                                "value": values}
        if (page + 1) * size < len(members):
            token = base64.urlsafe_b64encode(json.dumps({"g": group, "p": page + 1}).encode()).decode().rstrip("=")
            base = f"{tenant.next_link_origin}/v1.0" if tenant.next_link_origin else self.graph.graph_url
            link = (f"{base}/groups/{group}/transitiveMembers/microsoft.graph.user"
                    f"?$select={select}&$top={top}&$skiptoken={token}")
            body["@odata.nextLink"] = link
        record(200)
        self.answer(200, body)


def _page_of(skiptoken: str | None, group: str) -> int:
    if not skiptoken:
        return 0
    data = json.loads(base64.urlsafe_b64decode(skiptoken + "=" * (-len(skiptoken) % 4)))
    assert data["g"] == group, "a $skiptoken from another group's listing"
    return int(data["p"])


def _aad(error: str, description: str) -> dict[str, Any]:
    """The identity platform's error answer (RFC 6749 5.2 plus its own fields)."""
    code = int(description.split(":")[0].removeprefix("AADSTS"))
    return {"error": error, "error_description": description, "error_codes": [code],
            "timestamp": "2026-12-07 12:00:00Z", "trace_id": "0000", "correlation_id": "0000"}


def _graph_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message,
                      "innerError": {"date": "2026-12-07T12:00:00", "request-id": "0000", "client-request-id": "0000"}}}


@contextmanager
def running_graph_server(root: Path) -> Iterator[GraphServer]:
    server = GraphServer(root).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", name="graph_server")
def graph_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GraphServer]:
    """One local Graph per test module."""
    with running_graph_server(tmp_path_factory.mktemp("graph")) as server:
        yield server


@pytest.fixture(name="graph")
def graph_fixture(graph_server: GraphServer) -> GraphServer:
    """The module's Graph with a fresh tenant: no groups, no throttling, nothing recorded."""
    graph_server.reset()
    return graph_server
