"""Issue 33: directories in config.yaml, directory list files, and the resolver taking a directory
list's people from the caller (its snapshot): folded, validated, suppressed, included both ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Project
from dispatch.config import load_settings, secret_problems
from dispatch.config.settings import GraphDirectory, LdapDirectory
from dispatch.errors import InputError, Problem
from dispatch.recipients.directory import DirectoryPerson
from dispatch.recipients.lists import Directories, read_directory_list, resolve

LDAP = ('directories:\n'
        '  ad:\n'
        '    kind: ldap\n'
        '    url: "ldaps://dc.example.org"\n'
        '    bind_dn: "CN=dispatch,OU=Service,DC=example,DC=org"\n'
        '    base_dn: "DC=example,DC=org"\n'
        '    password_env: DISPATCH_TEST_LDAP_PASSWORD\n')


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(InputError) as caught:
        load_settings(path)
    return list(caught.value.problems)


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("timezone: Europe/Stockholm\n" + text, encoding="utf-8")
    return path


# -- config.yaml: directories and sync_minutes ----------------------------------------------------


def test_ldap_and_graph_directories_are_read(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x", encoding="utf-8")
    settings = load_settings(config(tmp_path, LDAP + "    ca_file: ca.pem\n    timeout_seconds: 12\n"
                                    "  entra: {kind: graph, tenant_id: t-1, client_id: c-1, client_secret_file: secret.txt,\n"
                                    "          graph_url: \"https://127.0.0.1:8443/v1.0/\"}\n"
                                    "sync_minutes: 15\n"))
    ad, entra = settings.directories["ad"], settings.directories["entra"]
    assert ad == LdapDirectory(name="ad", url="ldaps://dc.example.org", bind_dn="CN=dispatch,OU=Service,DC=example,DC=org",
                               base_dn="DC=example,DC=org", password_env="DISPATCH_TEST_LDAP_PASSWORD",
                               ca_file=tmp_path / "ca.pem", timeout_seconds=12.0)
    assert isinstance(entra, GraphDirectory) and entra.client_secret_file == tmp_path / "secret.txt"
    assert entra.graph_url == "https://127.0.0.1:8443/v1.0" and entra.authority == "https://login.microsoftonline.com"
    assert settings.sync_minutes == 15.0
    assert load_settings(config(tmp_path, "")).sync_minutes == 60.0


@pytest.mark.parametrize("change, line, expected", [
    (("kind: ldap", "kind: ldapx"), 4, "'directories.ad.kind' must be ldap or graph, not 'ldapx'"),
    (('url: "ldaps://dc.example.org"', 'url: "http://dc.example.org"'), 5, "'directories.ad.url' must be ldaps://HOST"),
    (('url: "ldaps://dc.example.org"', 'url: "ldaps://admin:pw@dc.example.org"'), 5, "must not carry credentials"),
    (('    url: "ldaps://dc.example.org"\n', ''), 3, "'directories.ad' needs 'url'"),
    (('    bind_dn: "CN=dispatch,OU=Service,DC=example,DC=org"\n', ''), 3, "'directories.ad' needs 'bind_dn'"),
    (('    base_dn: "DC=example,DC=org"\n', ''), 3, "'directories.ad' needs 'base_dn'"),
    (("password_env: DISPATCH_TEST_LDAP_PASSWORD", "password: hunter2"), 8,
     "secrets do not belong in the config file: remove 'directories.ad.password'"),
    (("password_env: DISPATCH_TEST_LDAP_PASSWORD", "password_env: X\n    password_file: f"), 9, "are both set; keep one"),
    (("password_env: DISPATCH_TEST_LDAP_PASSWORD", "bind_password: x"), 8, "unknown key 'bind_password' in directories.ad"),
    (("kind: ldap", "kind: ldap\n    timeout_seconds: 0"), 5, "'directories.ad.timeout_seconds' must be a number of seconds"),
])
def test_directory_problems_are_at_their_lines(tmp_path: Path, change: tuple[str, str], line: int, expected: str) -> None:
    problems = problems_of(config(tmp_path, LDAP.replace(*change)))
    assert (line, True) in [(problem.line, expected in problem.message) for problem in problems], problems
    assert len(problems) <= 2  # (a misspelt secret key also leaves the secret missing)
    assert "hunter2" not in " ".join(str(problem) for problem in problems)


def test_ldap_url_with_starttls_is_accepted(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path, LDAP.replace("ldaps://dc.example.org", "ldap://dc.example.org:389")))
    assert settings.directories["ad"].url == "ldap://dc.example.org:389"  # type: ignore[union-attr]


@pytest.mark.parametrize("text, line, expected", [
    ("directories:\n  entra: {kind: graph, client_id: c, client_secret_env: X}\n", 3, "'directories.entra' needs 'tenant_id'"),
    ("directories:\n  entra: {kind: graph, tenant_id: t, client_id: c}\n", 3, "needs 'client_secret_env'"),
    ("directories:\n  entra: {kind: graph, tenant_id: t, client_id: c, client_secret: s3cr3t}\n", 3,
     "remove 'directories.entra.client_secret'"),
    ("directories:\n  entra: {kind: graph, tenant_id: t, client_id: c, client_secret_env: X, graph_url: 'http://x'}\n", 3,
     "'directories.entra.graph_url' must be an https:// URL"),
    ("directories:\n  ad: {url: 'ldaps://x'}\n", 3, "'directories.ad' needs kind: ldap or kind: graph"),
    ("directories: [ad]\n", 2, "'directories' must be a mapping"),
    ("sync_minutes: 0\n", 2, "'sync_minutes' must be minutes from 1 to 1440"),
])
def test_graph_and_section_problems(tmp_path: Path, text: str, line: int, expected: str) -> None:
    problems = problems_of(config(tmp_path, text))
    assert [(problem.line, expected in problem.message) for problem in problems] == [(line, True)], problems
    assert "s3cr3t" not in " ".join(str(problem) for problem in problems)


def test_check_names_a_missing_directory_secret_without_reading_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPATCH_TEST_LDAP_PASSWORD", raising=False)
    settings = load_settings(config(tmp_path, LDAP + "    ca_file: missing-ca.pem\n"))
    messages = [(problem.line, problem.message) for problem in secret_problems(settings)]
    assert messages[0][0] == 8 and "directories.ad.password_env names DISPATCH_TEST_LDAP_PASSWORD, which is not set" in messages[0][1]
    assert messages[1][0] == 9 and "directories.ad.ca_file names" in messages[1][1] and "missing-ca.pem" in messages[1][1]
    assert secret_problems(settings, for_send=True) == []  # a send uses snapshots, not the directory
    monkeypatch.setenv("DISPATCH_TEST_LDAP_PASSWORD", "a-password-never-shown")
    assert all("a-password-never-shown" not in problem.message for problem in secret_problems(settings))
    assert len(secret_problems(settings)) == 1


# -- list files: source: DIRECTORY ---------------------------------------------------------------


KINDS = {"ad": "ldap", "entra": "graph"}


@pytest.fixture
def lists(tmp_path: Path) -> Path:
    directory = tmp_path / "recipients"
    directory.mkdir()
    return directory


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_directory_list_file_gives_its_spec(lists: Path) -> None:
    write(lists, "chefer.yaml", "name: Chefer\nsource: ad\ngroup: \"CN=Chefer,OU=Grupper,DC=example,DC=org\"\n"
                                "attributes: {name: cn}\nmax_shrink: 0.2\ninclude: [ledning]\n")
    spec = read_directory_list(lists, "chefer", KINDS)
    assert spec is not None
    assert (spec.name, spec.display_name, spec.directory, spec.group, spec.query) == (
        "chefer", "Chefer", "ad", "CN=Chefer,OU=Grupper,DC=example,DC=org", None)
    assert dict(spec.attributes) == {"mail": "mail", "name": "cn"} and spec.max_shrink == 0.2 and spec.include == ("ledning",)
    write(lists, "vard.yaml", "source: ad\nfilter: \"(&(department=Vård)(title=*chef*))\"\n")
    vard = read_directory_list(lists, "vard", KINDS)
    assert vard is not None and vard.query == "(&(department=Vård)(title=*chef*))" and vard.max_shrink == 0.1
    assert dict(vard.attributes) == {"mail": "mail", "name": "displayName"}
    write(lists, "hand.yaml", "members: [a@example.org]\n")
    assert read_directory_list(lists, "hand", KINDS) is None


@pytest.mark.parametrize("text, line, expected", [
    ("source: nowhere\ngroup: g\n", 1, "source: 'nowhere' names no directory in config.yaml; known directories: ad, entra"),
    ("source: ad\ngroup: g\nfilter: (a=b)\n", 3, "'group' or 'filter', not both"),
    ("source: ad\nname: x\n", 1, "needs 'group'"),
    ("source: ad\ngroup: g\nmax_shrink: 1.5\n", 3, "'max_shrink' must be a fraction from 0 to 1"),
    ("source: ad\ngroup: g\nmax_shrink: yes\n", 3, "'max_shrink' must be a fraction from 0 to 1"),
    ("source: ad\nfilter: (title=chef\n", 2, "parentheses paired"),
    ("source: entra\nfilter: (title=chef)\n", 2, "'filter' needs an LDAP directory"),
    ("source: ad\ngroup: g\nattributes: {email: mail}\n", 3, "'attributes' must map mail and name"),
    ("source: ad\ngroup: g\nmembers: [a@example.org]\n", 3, "remove 'members'"),
    ("source: ad\ngroup: g\ngruop: h\n", 3, "unknown key 'gruop' in a directory list"),
])
def test_directory_list_problems_are_at_their_lines(lists: Path, text: str, line: int, expected: str) -> None:
    write(lists, "chefer.yaml", text)
    with pytest.raises(InputError) as caught:
        read_directory_list(lists, "chefer", KINDS)
    [problem] = caught.value.problems
    assert problem.path.endswith("chefer.yaml") and problem.line == line and expected in problem.message, problem
    with pytest.raises(InputError) as again:  # the resolver says the same
        resolve(lists, ["chefer"], directories=Directories(KINDS, {"chefer": []}))
    assert [str(p) for p in again.value.problems] == [str(problem)]


def test_no_directories_configured_is_said(lists: Path) -> None:
    write(lists, "chefer.yaml", "source: ad\ngroup: g\n")
    with pytest.raises(InputError, match=r"config\.yaml has no directories:"):
        resolve(lists, ["chefer"])


def person(mail: str, name: str = "", dn: str = "") -> DirectoryPerson:
    return DirectoryPerson(mail=mail, name=name, source=dn or f"uid={mail.split('@')[0]},ou=people,dc=example,dc=test")


def test_the_resolver_folds_validates_and_suppresses_a_directory_lists_people(lists: Path) -> None:
    write(lists, "chefer.yaml", "name: Chefer\nsource: ad\ngroup: cn=chefer,ou=groups,dc=example,dc=test\n")
    write(lists, "suppressed.txt", "nej.tack@example.org\n")
    people = [person("Anna.Berg@Example.ORG", "Anna Berg"), person("anna.berg@example.org", "Dubblett"),
              person("nej.tack@example.org", "Vill inte"), person("trasig@@example.org", "Trasig"), person("erik@example.org")]
    resolution = resolve(lists, ["chefer"], directories=Directories(KINDS, {"chefer": people}))
    view = resolution.lists["chefer"]
    assert view.source == "ad" and view.display_name == "Chefer"
    assert view.members == ["anna.berg@example.org", "erik@example.org"]
    assert resolution.recipients["anna.berg@example.org"].name == "Anna Berg"
    assert resolution.recipients["anna.berg@example.org"].source.endswith("chefer.yaml:2 uid=Anna.Berg,ou=people,dc=example,dc=test")
    assert view.suppressed == {"nej.tack@example.org"}
    assert [invalid.email for invalid in resolution.invalid] == ["trasig@@example.org"]
    assert resolution.specs["chefer"].group == "cn=chefer,ou=groups,dc=example,dc=test"


def test_includes_work_both_ways(lists: Path) -> None:
    write(lists, "chefer.yaml", "source: ad\ngroup: g\ninclude: [ledning]\n")
    write(lists, "ledning.yaml", "members: [{email: lena@example.org, name: Lena}, erik@example.org]\n")
    write(lists, "alla.yaml", "members: [ny@example.org]\ninclude: [chefer]\n")
    directories = Directories(KINDS, {"chefer": [person("erik@example.org", "Erik"), person("karin@example.org", "Karin")]})
    resolution = resolve(lists, ["alla"], directories=directories)
    assert resolution.lists["chefer"].members == ["erik@example.org", "karin@example.org", "lena@example.org"]
    assert resolution.lists["alla"].members == ["ny@example.org", "erik@example.org", "karin@example.org", "lena@example.org"]
    assert len(resolution.recipients) == 4


def test_a_directory_list_without_a_snapshot_says_to_sync(lists: Path) -> None:
    write(lists, "chefer.yaml", "source: ad\ngroup: g\n")
    with pytest.raises(InputError) as caught:
        resolve(lists, ["chefer"], directories=Directories(KINDS))
    [problem] = caught.value.problems
    assert problem.line == 1 and "has no accepted snapshot yet" in problem.message
    assert "dispatch recipients sync chefer" in problem.message


def test_the_cli_says_a_directory_list_has_no_snapshot(project: Project) -> None:
    project.set_config(directories={"ad": {"kind": "ldap", "url": "ldaps://dc.example.org", "bind_dn": "cn=x",
                                           "base_dn": "dc=example,dc=org", "password_env": "DISPATCH_TEST_LDAP_PASSWORD"}})
    (project.root / "recipients" / "katalog.yaml").write_text("source: ad\ngroup: cn=chefer,dc=example,dc=org\n",
                                                              encoding="utf-8")
    result = project.run("recipients", "katalog")
    assert result.returncode == 1
    assert "recipients/katalog.yaml:1: list katalog is read from the directory ad and has no accepted snapshot yet" in result.stderr
