"""Issue 33, acceptance 5: lists from Microsoft Entra ID through Microsoft Graph.

No tenant is reachable from here: the source talks HTTPS (verified, through a test CA) to a local
server that speaks the documented shapes of the identity platform's token endpoint and of Graph's
``transitiveMembers`` (tests/graphserver.py), and records what it was sent. Throttled requests wait
through an injected ``sleep`` that records the waits instead of sleeping them.
"""

from __future__ import annotations

import socket

import httpx2
import pytest

from dispatch.errors import DirectoryError
from dispatch.recipients.directory import DEFAULT_ATTRIBUTES, DirectoryPerson
from dispatch.recipients.graph import RETRIES, GraphSource, retry_after
from graphserver import GraphServer, graph_fixture, graph_server_fixture, user  # noqa: F401  (fixtures)

GROUP = "2b7c5a1e-9d3f-4c8b-a6e2-0f1d2c3b4a59"  # "chefer"


class Waits:
    """The injected sleep: each wait recorded, none slept."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def person(number: int) -> DirectoryPerson:
    u = user(number)
    assert u.mail is not None
    return DirectoryPerson(mail=u.mail, name=u.display_name, source=u.id)


def one_line_error(graph: GraphServer, exc: DirectoryError) -> str:
    text = str(exc)
    assert "\n" not in text and "\r" not in text, text
    assert graph.tenant.client_secret not in text and graph.tenant.client_secret not in exc.detail, text
    return text


def test_three_pages_and_one_429_give_every_member_after_one_wait(graph: GraphServer) -> None:
    """Acceptance 5: three pages through @odata.nextLink, the second page's first request
    answered 429 with Retry-After: 1: every member, once, after exactly one wait of 1 s."""
    graph.tenant.groups[GROUP] = [user(n) for n in range(1, 8)]  # 7 members, 3 a page: pages of 3, 3, 1
    graph.tenant.page_size = 3
    graph.tenant.throttle[(GROUP, 1)] = 1
    waits = Waits()

    result = GraphSource(graph.directory(), sleep=waits).group_members(GROUP, DEFAULT_ATTRIBUTES)

    assert set(result.people) == {person(n) for n in range(1, 8)}
    assert len(result.people) == 7
    assert (result.disabled, result.without_mail) == (0, 0)
    assert waits.seconds == [1.0]
    requests = graph.tenant.page_requests
    assert [(r.page, r.status) for r in requests] == [(0, 200), (1, 429), (1, 200), (2, 200)]
    assert all(r.bearer_valid for r in requests)  # the server checked the bearer token on every page
    # The documented query: the users among the transitive members, only what is used, the
    # largest page; no advanced-query header (graph.py says why).
    assert {r.select for r in requests} == {"id,accountEnabled,userPrincipalName,mail,displayName"}
    assert {r.top for r in requests} == {"999"}
    assert {r.consistency_level for r in requests} == {None}
    [token] = graph.tenant.token_requests
    assert (token.tenant, token.grant_type, token.client_id, token.scope, token.secret_right, token.status) == (
        graph.tenant.tenant_id, "client_credentials", graph.tenant.client_id, f"{graph.url}/.default", True, 200)


def test_disabled_accounts_and_users_without_mail_are_left_out_and_counted(graph: GraphServer) -> None:
    members = [user(1), user(2, enabled=False), user(3, mail=False), user(4), user(5, enabled=False), user(6, mail=False),
               user(7, mail=False), user(4)]  # user 4 twice: one person, once
    graph.tenant.groups[GROUP] = members
    graph.tenant.page_size = 3

    result = GraphSource(graph.directory(), sleep=Waits()).group_members(GROUP, DEFAULT_ATTRIBUTES)

    assert sorted(result.people, key=lambda p: p.mail) == [person(1), person(4)]
    assert (result.disabled, result.without_mail) == (2, 3)


def test_attributes_map_our_fields_to_graph_properties(graph: GraphServer) -> None:
    graph.tenant.groups[GROUP] = [user(1), user(2)]

    result = GraphSource(graph.directory(), sleep=Waits()).group_members(
        GROUP, {"mail": "userPrincipalName", "name": "displayName"})

    assert {(p.mail, p.name) for p in result.people} == {(user(1).upn, "Person 1"), (user(2).upn, "Person 2")}
    assert {r.select for r in graph.tenant.page_requests} == {"id,accountEnabled,userPrincipalName,displayName"}


def test_a_property_name_that_is_not_one_is_refused_before_graph_is_asked(graph: GraphServer) -> None:
    graph.tenant.groups[GROUP] = [user(1)]
    with pytest.raises(DirectoryError, match=r"attributes\.mail: 'mail&\$filter=x' is not a Graph property name"):
        GraphSource(graph.directory(), sleep=Waits()).group_members(GROUP, {"mail": "mail&$filter=x", "name": "displayName"})
    assert graph.tenant.page_requests == []


def test_wrong_secret_is_one_line_naming_the_authority_without_the_secret(graph: GraphServer) -> None:
    graph.tenant.groups[GROUP] = [user(1)]
    wrong = graph.root / "wrong-secret"
    wrong.write_text("Zq8~the-wrong-secret-0815\n", encoding="utf-8")

    with pytest.raises(DirectoryError) as caught:
        GraphSource(graph.directory(client_secret_file=wrong), sleep=Waits()).group_members(GROUP, DEFAULT_ATTRIBUTES)

    text = one_line_error(graph, caught.value)
    assert "Zq8~the-wrong-secret-0815" not in text
    assert caught.value.server == graph.authority
    assert text.startswith(f"{graph.authority}: no token for client {graph.tenant.client_id}")
    assert "invalid_client" in text and "AADSTS7000215" in text
    assert graph.tenant.page_requests == []  # nothing asked of Graph without a token
    [token] = graph.tenant.token_requests
    assert (token.secret_right, token.status) == (False, 401)


def test_the_secret_from_the_environment(graph: GraphServer, monkeypatch: pytest.MonkeyPatch) -> None:
    graph.tenant.groups[GROUP] = [user(1)]
    monkeypatch.setenv("DISPATCH_GRAPH_SECRET", graph.tenant.client_secret)
    directory = graph.directory(client_secret_file=None, client_secret_env="DISPATCH_GRAPH_SECRET")

    assert GraphSource(directory, sleep=Waits()).group_members(GROUP, DEFAULT_ATTRIBUTES).people == (person(1),)

    monkeypatch.delenv("DISPATCH_GRAPH_SECRET")
    with pytest.raises(DirectoryError, match=r"DISPATCH_GRAPH_SECRET \(client_secret_env\) is not set"):
        GraphSource(directory, sleep=Waits()).group_members(GROUP, DEFAULT_ATTRIBUTES)


def test_server_down_is_one_line_naming_it(graph: GraphServer) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = f"https://127.0.0.1:{port}"

    with pytest.raises(DirectoryError) as caught:
        GraphSource(graph.directory(authority=down, graph_url=f"{down}/v1.0"), sleep=Waits()).group_members(
            GROUP, DEFAULT_ATTRIBUTES)

    text = one_line_error(graph, caught.value)
    assert caught.value.server == down
    assert text.startswith(f"{down}: ") and "cannot connect" in text


def test_an_unknown_group_names_it(graph: GraphServer) -> None:
    missing = "00000000-0000-4000-8000-000000000404"
    with pytest.raises(DirectoryError) as caught:
        GraphSource(graph.directory(), sleep=Waits()).group_members(missing, DEFAULT_ATTRIBUTES)
    text = one_line_error(graph, caught.value)
    assert text.startswith(f"{graph.url}: group {missing} not found (Request_ResourceNotFound")
    assert caught.value.server == graph.url


def test_without_the_permission_the_error_names_it(graph: GraphServer) -> None:
    graph.tenant.groups[GROUP] = [user(1)]
    graph.tenant.forbidden = True
    with pytest.raises(DirectoryError) as caught:
        GraphSource(graph.directory(), sleep=Waits()).group_members(GROUP, DEFAULT_ATTRIBUTES)
    text = one_line_error(graph, caught.value)
    assert text.startswith(f"{graph.url}: HTTP 403 (Authorization_RequestDenied: Insufficient privileges")
    assert "GroupMember.Read.All and User.Read.All" in text


def test_a_next_link_to_another_server_is_not_followed(graph: GraphServer) -> None:
    """The bearer token goes with the request: a page that points elsewhere fails the sync."""
    graph.tenant.groups[GROUP] = [user(n) for n in range(1, 5)]
    graph.tenant.page_size = 2
    graph.tenant.next_link_origin = "https://graph.example.net"
    with pytest.raises(DirectoryError, match=f"group {GROUP}: @odata.nextLink points outside {graph.url}"):
        GraphSource(graph.directory(), sleep=Waits()).group_members(GROUP, DEFAULT_ATTRIBUTES)
    assert [r.page for r in graph.tenant.page_requests] == [0]


def test_tls_is_verified_without_the_private_ca(graph: GraphServer) -> None:
    graph.tenant.groups[GROUP] = [user(1)]
    with pytest.raises(DirectoryError, match=r"certificate is not trusted .* set ca_file") as caught:
        GraphSource(graph.directory(ca_file=None), sleep=Waits()).group_members(GROUP, DEFAULT_ATTRIBUTES)
    one_line_error(graph, caught.value)
    assert graph.tenant.token_requests == []  # the secret never went to an unverified server


def test_a_page_that_is_not_json_fails_the_sync(graph: GraphServer) -> None:
    graph.tenant.groups[GROUP] = [user(n) for n in range(1, 5)]
    graph.tenant.page_size = 2
    graph.tenant.not_json.add((GROUP, 1))
    with pytest.raises(DirectoryError, match=f"group {GROUP}: the answer is not JSON") as caught:
        GraphSource(graph.directory(), sleep=Waits()).group_members(GROUP, DEFAULT_ATTRIBUTES)
    one_line_error(graph, caught.value)


def test_members_without_their_properties_ask_for_the_permission(graph: GraphServer) -> None:
    """Graph lists members the application may not read with their id only: the sync fails,
    rather than count everyone as without mail."""
    graph.tenant.groups[GROUP] = [user(1), user(2)]
    graph.tenant.limited = True
    with pytest.raises(DirectoryError, match=r"User\.Read\.All"):
        GraphSource(graph.directory(), sleep=Waits()).group_members(GROUP, DEFAULT_ATTRIBUTES)


def test_throttled_past_the_retries_fails_after_bounded_waits(graph: GraphServer) -> None:
    """Without Retry-After the waits double; after RETRIES of them the sync fails (and the
    list is held), it does not wait for ever."""
    graph.tenant.groups[GROUP] = [user(1)]
    graph.tenant.throttle[(GROUP, 0)] = RETRIES + 5
    graph.tenant.retry_after = None
    waits = Waits()
    with pytest.raises(DirectoryError, match=f"HTTP 429 after {RETRIES} waits") as caught:
        GraphSource(graph.directory(), sleep=waits).group_members(GROUP, DEFAULT_ATTRIBUTES)
    one_line_error(graph, caught.value)
    assert waits.seconds == [2.0 * 2**n for n in range(RETRIES)]


def test_a_retry_after_too_long_is_not_waited_for(graph: GraphServer) -> None:
    graph.tenant.groups[GROUP] = [user(1)]
    graph.tenant.throttle[(GROUP, 0)] = 1
    graph.tenant.retry_after = "3600"
    waits = Waits()
    with pytest.raises(DirectoryError, match="asks to wait 3600 s"):
        GraphSource(graph.directory(), sleep=waits).group_members(GROUP, DEFAULT_ATTRIBUTES)
    assert waits.seconds == []


def test_a_token_revoked_mid_sync_is_fetched_again_once(graph: GraphServer) -> None:
    graph.tenant.groups[GROUP] = [user(n) for n in range(1, 6)]
    graph.tenant.page_size = 2
    graph.tenant.revoke.add((GROUP, 1))

    result = GraphSource(graph.directory(), sleep=Waits()).group_members(GROUP, DEFAULT_ATTRIBUTES)

    assert set(result.people) == {person(n) for n in range(1, 6)}
    assert len(graph.tenant.token_requests) == 2
    assert [(r.page, r.status) for r in graph.tenant.page_requests] == [(0, 200), (1, 401), (1, 200), (2, 200)]


def test_filters_are_for_ldap(graph: GraphServer) -> None:
    with pytest.raises(DirectoryError, match="filters are for LDAP directories; name a group's object id"):
        GraphSource(graph.directory(), sleep=Waits()).matching("(department=IT)", DEFAULT_ATTRIBUTES)


def test_a_group_that_is_not_an_object_id_is_refused(graph: GraphServer) -> None:
    with pytest.raises(DirectoryError, match="is not a group's object id"):
        GraphSource(graph.directory(), sleep=Waits()).group_members("CN=chefer,OU=Grupper,DC=region,DC=se", DEFAULT_ATTRIBUTES)
    assert graph.tenant.token_requests == []


def test_national_clouds_ask_for_their_own_graph() -> None:
    """The scope is the configured Graph's origin: a national cloud's token is for its Graph."""
    from dispatch.config.settings import GraphDirectory

    us = GraphSource(GraphDirectory(name="entra", tenant_id="t-1", client_id="c", client_secret_env="X",
                                    authority="https://login.microsoftonline.us", graph_url="https://graph.microsoft.us/v1.0"))
    assert us.scope == "https://graph.microsoft.us/.default"
    assert us.token_url == "https://login.microsoftonline.us/t-1/oauth2/v2.0/token"
    default = GraphSource(GraphDirectory(name="entra", tenant_id="t-1", client_id="c", client_secret_env="X"))
    assert default.scope == "https://graph.microsoft.com/.default"


def test_retry_after_in_seconds_or_as_a_date() -> None:
    def response(**headers: str) -> httpx2.Response:
        return httpx2.Response(429, headers=headers)

    assert retry_after(response(**{"Retry-After": "7"}), 2.0) == 7.0
    assert retry_after(response(**{"Retry-After": "Mon, 07 Dec 2026 12:00:30 GMT", "Date": "Mon, 07 Dec 2026 12:00:00 GMT"}),
                       2.0) == 30.0
    assert retry_after(response(), 4.0) == 4.0
    assert retry_after(response(**{"Retry-After": "soon"}), 8.0) == 8.0

