"""Issue 33: directory lists read from a real OpenLDAP slapd (tests/ldapserver.py): the LDAP source.

The directory: 5,000 people, the group ``chefer`` nested three deep with one cycle, 40 disabled
accounts and 25 without mail among the members, some people in two groups, a size limit of 500
for searches that are not paged. What the source returns is compared with what the generated
model says (``ldapserver.expected_members``, computed without LDAP).
"""

from __future__ import annotations

import socket
from pathlib import Path

import ldap3
import pytest
from ldap3.core.exceptions import LDAPException

import ldapserver
from dispatch.config.settings import LdapDirectory
from dispatch.errors import DirectoryError
from dispatch.recipients import ldap as ldap_source
from dispatch.recipients.directory import DEFAULT_ATTRIBUTES, DirectorySource
from dispatch.recipients.ldap import Endpoint, LdapSource, dn_key
from ldapserver import GROUPS_DN, Slapd

slapd_directory = ldapserver.slapd_directory  # the fixtures (module scope): 5,000 people
slapd_small = ldapserver.slapd_small  # 800 people

CHEFER = f"cn=chefer,{GROUPS_DN}"


def source(server: Slapd, *, url: str | None = None, bind_dn: str | None = None, password: str | None = None,
           ca_file: Path | str | None = "default", base_dn: str | None = None) -> LdapSource:
    settings = LdapDirectory(name="ad", url=url or server.url, bind_dn=bind_dn or server.reader_dn,
                             base_dn=base_dn or server.base_dn,
                             ca_file=server.ca_file if ca_file == "default" else (Path(ca_file) if ca_file else None),
                             timeout_seconds=10)
    return LdapSource(settings, server.reader_password if password is None else password)


# -- acceptance 1: the membership, exactly --------------------------------------------------------


def assert_exact_membership(server: Slapd, url: str, disabled: int, without_mail: int) -> None:
    reader: DirectorySource = source(server, url=url)
    result = reader.group_members(CHEFER, DEFAULT_ATTRIBUTES)

    expected = ldapserver.expected_members(server.model, "chefer")
    assert len(expected) > ldapserver.SIZE_LIMIT  # more than a search without paging could return
    assert {person.mail: person.name for person in result.people} == expected
    # each person once, wherever they are in the tree (some are in two groups; a cycle leads back to the top)
    assert len(result.people) == len(expected)
    assert len({dn_key(person.source) for person in result.people}) == len(result.people)
    assert (result.disabled, result.without_mail) == (disabled, without_mail)


@pytest.mark.slow  # a few seconds per read of 4,000 members; fast twin: test_nested_group_small_directory
@pytest.mark.parametrize("tls", ["ldaps", "starttls"])
def test_nested_group_gives_exactly_the_expected_members(slapd_directory: Slapd, tls: str) -> None:
    """Acceptance 1 (the source's part): 5,000 people, nested three deep with a cycle, 40 disabled, 25 without mail."""
    assert len(slapd_directory.model.people) == 5000
    url = slapd_directory.url if tls == "ldaps" else slapd_directory.starttls_url
    assert_exact_membership(slapd_directory, url, disabled=40, without_mail=25)


def test_nested_group_small_directory(slapd_small: Slapd) -> None:
    assert_exact_membership(slapd_small, slapd_small.starttls_url, disabled=8, without_mail=5)


def test_people_in_two_groups_come_once(slapd_small: Slapd) -> None:
    model = slapd_small.model
    memberships: dict[str, int] = {}
    for group in model.groups:
        if group.cn.startswith("chefer"):
            for dn in group.members:
                memberships[dn] = memberships.get(dn, 0) + 1
    twice = {dn for dn, count in memberships.items() if count == 2}
    assert len(twice) > 20  # the model has them, or this test tests nothing

    result = source(slapd_small).group_members(CHEFER, DEFAULT_ATTRIBUTES)
    sources = [dn_key(person.source) for person in result.people]
    twice_keys = {dn_key(dn) for dn in twice}
    found_twice = [key for key in sources if key in twice_keys]
    assert found_twice and len(found_twice) == len(set(found_twice))


def test_a_subgroup_is_read_on_its_own(slapd_small: Slapd) -> None:
    """The bottom group of the cycle reaches the top again: everyone, as from the top."""
    result = source(slapd_small).group_members(f"cn=chefer-vard-akut,{GROUPS_DN}", DEFAULT_ATTRIBUTES)
    assert {person.mail for person in result.people} == set(ldapserver.expected_members(slapd_small.model, "chefer"))
    unique = source(slapd_small).group_members(f"cn=chefer-kommun-skola,{GROUPS_DN}", DEFAULT_ATTRIBUTES)
    assert {person.mail for person in unique.people} == set(ldapserver.expected_members(slapd_small.model,
                                                                                        "chefer-kommun-skola"))


def test_filter_list_reads_every_match_under_base_dn(slapd_small: Slapd) -> None:
    result = source(slapd_small).matching("(title=chef)", DEFAULT_ATTRIBUTES)
    expected = {person.mail: person.name for person in slapd_small.model.people
                if person.title == "chef" and not person.disabled and person.mail is not None}
    assert {person.mail: person.name for person in result.people} == expected
    assert (result.disabled, result.without_mail) == (8, 5)
    # a filter without its parentheses is taken as one term
    assert len(source(slapd_small).matching("title=chef", DEFAULT_ATTRIBUTES).people) == len(expected)


def test_attributes_map_our_fields_to_the_directorys(slapd_small: Slapd) -> None:
    result = source(slapd_small).matching("(uid=p00001)", {"mail": "mail", "name": "cn"})
    [person] = result.people
    assert person.name == slapd_small.model.people[1].name
    assert person.source == f"uid=p00001,{ldapserver.PEOPLE_DN}"


# -- the server is what the tests claim it is -----------------------------------------------------


def test_the_test_server_needs_paging_and_does_not_know_the_in_chain_rule(slapd_small: Slapd) -> None:
    with ldap3.Connection(**ldapserver.connection_kwargs(slapd_small)) as connection:
        connection.search(slapd_small.base_dn, "(objectClass=inetOrgPerson)", attributes=["mail"])
        assert connection.result["description"] == "sizeLimitExceeded"
        assert len(connection.entries) == ldapserver.SIZE_LIMIT
        # OpenLDAP answers Active Directory's in-chain rule with nothing, and success: a source that
        # trusted it would read an empty list here.
        connection.search(slapd_small.base_dn, f"(memberOf:1.2.840.113556.1.4.1941:={CHEFER})", attributes=["mail"])
        assert connection.result["result"] == 0 and connection.entries == []


def test_a_search_the_server_cuts_short_is_an_error_not_a_short_list(slapd_small: Slapd) -> None:
    capped = source(slapd_small, bind_dn=slapd_small.capped_dn)
    with pytest.raises(DirectoryError) as caught:
        capped.matching("(title=chef)", DEFAULT_ATTRIBUTES)
    assert "sizeLimitExceeded" in str(caught.value)
    assert caught.value.server == slapd_small.url


# -- errors: one line, naming the server, never the password --------------------------------------


def one_line(error: DirectoryError) -> str:
    text = str(error)
    assert "\n" not in text and "\r" not in text
    return text


def test_wrong_password_is_one_line_naming_the_server_not_the_password(slapd_small: Slapd) -> None:
    password = "Wrong-Secret-7f3a"
    with pytest.raises(DirectoryError) as caught:
        source(slapd_small, password=password).group_members(CHEFER, DEFAULT_ATTRIBUTES)
    text = one_line(caught.value)
    assert text.startswith(f"{slapd_small.url}: ")
    assert "invalid credentials" in text and slapd_small.reader_dn in text
    assert password not in text and password not in repr(caught.value.fact)
    assert isinstance(caught.value.__cause__, LDAPException)


def test_directory_stopped_is_one_line_naming_the_server(tmp_path: Path) -> None:
    ldapserver.require_slapd()
    server = Slapd(ldapserver.nested_directory(60, disabled=2, without_mail=1), home=tmp_path).start()
    try:
        reader = source(server)
        assert len(reader.group_members(CHEFER, DEFAULT_ATTRIBUTES).people) > 0
        server.stop()
        for url in (server.url, server.starttls_url):
            with pytest.raises(DirectoryError) as caught:
                source(server, url=url).group_members(CHEFER, DEFAULT_ATTRIBUTES)
            text = one_line(caught.value)
            assert text.startswith(f"{url}: cannot connect (connection refused)")
        server.start()  # up again on the same port: read as before
        assert len(reader.group_members(CHEFER, DEFAULT_ATTRIBUTES).people) > 0
    finally:
        server.stop()


def test_certificate_from_an_unknown_ca_is_refused(slapd_small: Slapd) -> None:
    for url in (slapd_small.url, slapd_small.starttls_url):
        with pytest.raises(DirectoryError) as caught:
            source(slapd_small, url=url, ca_file=None).group_members(CHEFER, DEFAULT_ATTRIBUTES)
        text = one_line(caught.value)
        assert "TLS failed" in text and "certificate verify failed" in text


def test_missing_ca_file_is_named(slapd_small: Slapd, tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match=r"cannot read ca_file .*missing\.pem"):
        source(slapd_small, ca_file=tmp_path / "missing.pem").group_members(CHEFER, DEFAULT_ATTRIBUTES)


def test_unknown_group_and_non_group_are_errors(slapd_small: Slapd) -> None:
    with pytest.raises(DirectoryError, match="not found"):
        source(slapd_small).group_members(f"cn=finns-inte,{GROUPS_DN}", DEFAULT_ATTRIBUTES)
    with pytest.raises(DirectoryError, match="is not a group"):
        source(slapd_small).group_members(f"uid=p00001,{ldapserver.PEOPLE_DN}", DEFAULT_ATTRIBUTES)
    with pytest.raises(DirectoryError, match="filter"):
        source(slapd_small).matching("(title=chef", DEFAULT_ATTRIBUTES)


# -- pure parts ------------------------------------------------------------------------------------


def test_endpoint_shows_scheme_host_and_port_only() -> None:
    assert Endpoint.parse("ldaps://dc.example.org") == Endpoint("ldaps://dc.example.org:636", "dc.example.org", 636, False)
    assert Endpoint.parse("ldap://dc.example.org").starttls
    assert Endpoint.parse("ldap://[::1]:1389").url == "ldap://[::1]:1389"
    with pytest.raises(ValueError):
        Endpoint.parse("http://dc.example.org")


def test_dn_key_compares_as_directories_do() -> None:
    assert dn_key("CN=Smith\\, John,OU=Users,DC=Example,DC=org") == dn_key("cn=smith\\2C  john,ou=users,dc=example,dc=ORG")
    assert dn_key("cn=\\C3\\85sa,dc=x") == dn_key("cn=åsa,dc=x")
    assert dn_key("uid=a,dc=x#'0101'B") == dn_key("uid=a,dc=x")
    assert dn_key("uid=a,dc=x") != dn_key("uid=b,dc=x")


def test_certificate_for_another_host_is_refused(tmp_path: Path) -> None:
    """Signed by the CA we trust, but for another name: the host name is checked too."""
    ldapserver.require_slapd()
    server = Slapd(ldapserver.nested_directory(20, disabled=1, without_mail=1), home=tmp_path,
                   certificate_names=("directory.example.test",)).start()
    try:
        with pytest.raises(DirectoryError) as caught:
            source(server).group_members(CHEFER, DEFAULT_ATTRIBUTES)
        assert "certificate verify failed" in one_line(caught.value)
        assert "mismatch" in str(caught.value).lower()
    finally:
        server.stop()


def test_members_removed_in_the_directory_are_gone_on_the_next_read(tmp_path: Path) -> None:
    ldapserver.require_slapd()
    server = Slapd(ldapserver.nested_directory(100, disabled=2, without_mail=1), home=tmp_path).start()
    try:
        before = source(server).group_members(CHEFER, DEFAULT_ATTRIBUTES)
        group = server.model.group("chefer-vard")
        removed = [dn for dn in group.members if dn.startswith("uid=")][:5]
        server.remove_members("chefer-vard", removed)
        after = source(server).group_members(CHEFER, DEFAULT_ATTRIBUTES)
        assert {person.mail for person in after.people} == set(ldapserver.expected_members(server.model, "chefer"))
        assert len(after.people) < len(before.people)
    finally:
        server.stop()


@pytest.mark.parametrize("scheme", ["ldaps", "ldap"])
def test_a_directory_that_never_answers_times_out_in_one_line(scheme: str) -> None:
    """A port that takes the connection and says nothing (a hung server, a firewall's black hole)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        url = f"{scheme}://127.0.0.1:{silent.getsockname()[1]}"
        reader = LdapSource(LdapDirectory(name="ad", url=url, bind_dn="cn=x", base_dn="dc=x", timeout_seconds=1), "pw")
        with pytest.raises(DirectoryError) as caught:
            reader.group_members(CHEFER, DEFAULT_ATTRIBUTES)
    assert one_line(caught.value).startswith(f"{url}: no answer while connecting (timed out)")


@pytest.mark.parametrize("budget", [2, 100])
def test_a_large_level_is_swept_and_the_rest_looked_up(slapd_small: Slapd, monkeypatch: pytest.MonkeyPatch,
                                                       budget: int) -> None:
    """Levels of at least SWEEP_AT DNs (2,000; 10 here) are read by sweeping base_dn, for at most
    SWEEP_BUDGET entries per DN (2: the sweep stops early and lookups find the rest; 100: the sweep
    finds everyone). Either way: exactly the expected members, each once."""
    monkeypatch.setattr(ldap_source, "SWEEP_AT", 10)
    monkeypatch.setattr(ldap_source, "SWEEP_BUDGET", budget)
    assert_exact_membership(slapd_small, slapd_small.url, disabled=8, without_mail=5)


def test_a_sweep_the_server_stops_leaves_the_rest_to_lookups(slapd_small: Slapd, monkeypatch: pytest.MonkeyPatch) -> None:
    """The capped account's sweep stops at the size limit (500 entries); the lookups (100 at a time) are under it."""
    monkeypatch.setattr(ldap_source, "SWEEP_AT", 10)
    monkeypatch.setattr(ldap_source, "SWEEP_BUDGET", 100)
    result = source(slapd_small, bind_dn=slapd_small.capped_dn).group_members(CHEFER, DEFAULT_ATTRIBUTES)
    assert {person.mail: person.name for person in result.people} == ldapserver.expected_members(slapd_small.model, "chefer")


def test_the_root_dse_decides_who_flattens_nested_groups(slapd_small: Slapd, tmp_path: Path) -> None:
    """Only a server whose root DSE advertises Active Directory is asked with the in-chain rule.
    slapd made to advertise it (but still not knowing the rule) then answers with nothing, as the
    issue says OpenLDAP does: that shows the rule was used; the plain slapd is walked instead."""
    assert not source(slapd_small).is_active_directory()
    ldapserver.require_slapd()
    pretending = Slapd(ldapserver.nested_directory(30, disabled=1, without_mail=1), home=tmp_path,
                       advertise_active_directory=True).start()
    try:
        reader = source(pretending)
        assert reader.is_active_directory()
        assert reader.group_members(CHEFER, DEFAULT_ATTRIBUTES).people == ()
        assert len(source(slapd_small).group_members(CHEFER, DEFAULT_ATTRIBUTES).people) > ldapserver.SIZE_LIMIT
    finally:
        pretending.stop()
