"""The documentation holds to the program: the README's two commands are what CI runs, every
relative link resolves, and the reference names every command and every config key the program
accepts (both enumerated from the code, not from a hand-kept list)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 250


def shell_blocks(markdown: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", markdown, flags=re.DOTALL)


def quick_start(readme: str) -> str:
    start = readme.index("## Quick start")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


def test_the_readme_is_short() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; the rest belongs under docs/"


def test_the_quick_start_is_two_commands_and_ci_runs_the_second_verbatim() -> None:
    commands = [line for block in shell_blocks(quick_start(README.read_text(encoding="utf-8")))
                for line in block.splitlines() if line.strip()]
    assert len(commands) == 2, commands
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert commands[1] in ci_lines, "the README's test command is what .ci/run runs, verbatim, on a line of its own"
    assert sum("pip install" in line for line in ci_lines) == 1, "CI makes the venv and installs once"


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def relative_links(markdown: str) -> list[str]:
    targets = re.findall(r"\]\(([^)\s]+)\)", markdown) + re.findall(r'(?:src|href)="([^"]+)"', markdown)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in markdown_files():
        for target in relative_links(page.read_text(encoding="utf-8")):
            path = target.split("#", 1)[0]
            if path and not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "\n".join(broken)


def test_the_link_checker_sees_links_and_skips_addresses() -> None:
    probe = '[a](docs/a.md) [b](https://example.org/x) [c](#anchor) <img src="docs/p.png"> [d](../e.md#part) [m](mailto:x@y)'
    assert relative_links(probe) == ["docs/a.md", "../e.md#part", "docs/p.png"]


# -- the reference names every command and every config key ---------------------------------------

REFERENCE = DOCS / "reference"


def reference_text() -> str:
    return "\n".join(page.read_text(encoding="utf-8") for page in sorted(REFERENCE.glob("*.md")))


def listed_commands() -> list[str]:
    """Every command `dispatch --help` lists, and the subcommands each group's --help lists ("users add")."""
    import click

    from dispatch.cli import main

    def walk(group: click.Group, ctx: click.Context, prefix: str) -> Iterator[str]:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            yield prefix + name
            if isinstance(command, click.Group):
                yield from walk(command, click.Context(command, parent=ctx, info_name=name), f"{prefix}{name} ")

    return list(walk(main, click.Context(main, info_name="dispatch"), ""))


def names_command(reference: str, command: str) -> bool:
    """`users add ...` or `dispatch users add`, in code."""
    return re.search(rf"`(dispatch )?{re.escape(command)}[ `]", reference) is not None


def test_the_reference_names_every_command() -> None:
    commands = listed_commands()
    assert {"send", "users", "users add"} <= set(commands), commands
    reference = reference_text()
    missing = [command for command in commands if not names_command(reference, command)]
    assert not missing, f"docs/reference does not name: {', '.join(missing)}"


def test_the_command_checker_wants_the_whole_name_in_code() -> None:
    assert names_command("| `users add NAME --email ADDR` |", "users add")
    assert names_command("run `dispatch users add`", "users add")
    assert not names_command("`users` and then add", "users add")
    assert not names_command("`sender.from`", "send")


@dataclass
class Spied:
    trees: list[object]
    checked: list[tuple[object, tuple[str, ...]]]


def accepted_config_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[set[str], Spied]:
    """Every key the config reader accepts, as a path (``transport.host``, ``schedules[].cron``):
    the reader's own key check, watched while it reads a config with every section and an item in
    every list; each checked mapping is found in the parsed file to know where it sits."""
    import dispatch.config
    from dispatch.config.reader import Reader
    from dispatch.config.yamlsource import load_yaml_file
    from dispatch.errors import InputError

    spied = Spied([], [])
    check_keys = Reader.check_keys

    def watched_load(path: Path) -> object:
        tree = load_yaml_file(path)
        spied.trees.append(tree)
        return tree

    def watched_check(reader: Reader, mapping: Any, known: Sequence[str], where: str = "", reported: Sequence[str] = ()) -> None:
        spied.checked.append((mapping, tuple(known)))
        check_keys(reader, mapping, known, where, reported)

    monkeypatch.setattr(dispatch.config, "load_yaml_file", watched_load)  # the name load_settings reads it by
    monkeypatch.setattr(Reader, "check_keys", watched_check)
    config = tmp_path / "config.yaml"
    config.write_text(EVERY_SECTION, encoding="utf-8")
    with contextlib.suppress(InputError):  # the values need not be usable, only read
        dispatch.config.load_settings(config)
    [tree] = spied.trees
    where = dict(mapping_paths(tree, ""))
    return {f"{where[id(mapping)]}{key}" for mapping, known in spied.checked for key in known}, spied


def mapping_paths(node: object, path: str) -> Iterator[tuple[int, str]]:
    """(id of a mapping, the prefix its keys take): "" at the top, "transport." below, "schedules[]." in a list."""
    if isinstance(node, dict):
        yield id(node), path
        for key, value in node.items():
            yield from mapping_paths(value, f"{path}{key}.")
    elif isinstance(node, list):
        for item in node:
            yield from mapping_paths(item, f"{path[:-1]}[].")


# Every section the config reader knows, and one item in each list, so that it checks each one's keys.
EVERY_SECTION = """\
timezone: Europe/Stockholm
ledger_timeouts: {lock_seconds: 2}
sender: {from: "Rapport <rapport@example.org>"}
transport: {kind: maildir, path: var/outbox}
report: {title: Rapport, standing_sections: [{heading: Dagligen, markdown: "- x"}]}
publish: {dir: var/intranet}
schedules: [{name: daily, cron: "0 14 * * *", lists: [chefer]}]
bounces: {host: imap.example.org}
web: {listen: "127.0.0.1:8025", oidc: {issuer: "https://id.example.org"}}
accessibility: {organisation: Regionen}
dkim: {domain: example.org}
directories:
  ad: {kind: ldap, url: "ldaps://dc.example.org", bind_dn: "CN=x", base_dn: "DC=example,DC=org", password_env: X}
  entra: {kind: graph, tenant_id: t, client_id: c, client_secret_env: Y}
sync_minutes: 60
"""


def names_key(reference: str, key: str) -> bool:
    """The key's whole path in code: `transport.host`, or a path below it (`web.oidc.issuer` names `web.oidc`)."""
    return re.search(rf"`{re.escape(key)}[`.\[ ]", reference) is not None


def test_the_reference_names_every_config_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dispatch.config import settings

    keys, spied = accepted_config_keys(tmp_path, monkeypatch)
    every_key_set = {value for name, value in vars(settings).items() if name.endswith("_KEYS")}
    assert every_key_set <= {known for _, known in spied.checked}, "EVERY_SECTION above lacks a section the reader knows"
    assert {"timezone", "transport.host", "web.oidc.issuer", "schedules[].cron", "report.standing_sections[].heading"} <= keys
    reference = reference_text()
    missing = sorted(key for key in keys if not names_key(reference, key))
    assert not missing, f"docs/reference does not name: {', '.join(missing)}"


def test_the_key_checker_wants_the_whole_path_in_code() -> None:
    assert names_key("| `transport.host` |", "transport.host")
    assert names_key("`web.oidc.issuer`", "web.oidc")
    assert names_key("`schedules[].cron`", "schedules")
    assert not names_key("`transport.host`, `port`", "transport.port")
    assert not names_key("`transport.hostname`", "transport.host")
    paths = dict(mapping_paths({"a": {"b": 1}, "c": [{"d": 2}]}, ""))
    assert sorted(paths.values()) == ["", "a.", "c[]."]


def console_routes(tmp_path: Path) -> list[str]:
    """Every route the console serves, single sign-on's included (the sample project with web.oidc)."""
    from starlette.routing import Mount, Route

    from conftest import copy_project
    from dispatch.app import load_settings
    from dispatch.web import create_console

    project = copy_project(tmp_path / "project")
    secret = tmp_path / "secret"
    secret.write_text("a client secret for the routes", encoding="utf-8")
    project.set_config(web__oidc={"issuer": "https://id.example.org", "client_id": "dispatch", "client_secret_file": str(secret),
                                  "roles": {"redaktion": "editor"}})
    paths = []
    for route in create_console(load_settings(project.config_path)).routes:
        if isinstance(route, Route):
            paths.append(route.path)
        elif isinstance(route, Mount):
            paths.append(route.path + "/...")
    return sorted(set(paths))


def test_the_reference_names_every_console_route(tmp_path: Path) -> None:
    routes = console_routes(tmp_path)
    assert {"/healthz", "/editions/{day}", "/runs/{name}/stop", "/auth/callback", "/static/..."} <= set(routes)
    reference = (REFERENCE / "console.md").read_text(encoding="utf-8")
    missing = [route for route in routes if f"`{route}`" not in reference]
    assert not missing, f"docs/reference/console.md does not name: {', '.join(missing)}"
