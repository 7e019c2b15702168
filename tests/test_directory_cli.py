"""The directory-list commands as a user runs them (`recipients sync`, `diff`, `accept`, and the
listing beside them), against the local Graph server: the fast twins of test_directory_slapd.py's
command-line runs, with their exit codes and what they print."""

from __future__ import annotations

import json

import yaml

from conftest import Project
from graphserver import GraphServer, graph_fixture, graph_server_fixture, user  # noqa: F401  (fixtures)

GROUP = "2b7c5a1e-9d3f-4c8b-a6e2-0f1d2c3b4a59"


def graph_project(project: Project, graph: GraphServer, members: int = 10) -> None:
    config = yaml.safe_load(project.config_path.read_text(encoding="utf-8"))
    config["directories"] = {"entra": graph.config_entry()}
    project.config_path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    (project.root / "recipients/chefer.csv").unlink()
    (project.root / "recipients/chefer.yaml").write_text(f"name: Chefer\nsource: entra\ngroup: {GROUP}\n", encoding="utf-8")
    graph.tenant.groups[GROUP] = [user(n) for n in range(1, members + 1)]


def test_sync_diff_accept_and_the_listing(project: Project, graph: GraphServer) -> None:
    graph_project(project, graph)
    never = project.run("recipients", "chefer")
    assert never.returncode == 1 and "no accepted snapshot yet: run 'dispatch recipients sync chefer'" in never.stderr

    first = project.run("recipients", "sync")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[0] == "chefer: accepted snapshot 1: 10 members"
    unchanged = project.run("recipients", "sync", "chefer")
    assert unchanged.returncode == 0 and unchanged.stdout.strip() == "chefer: unchanged, snapshot 1: 10 members"

    graph.tenant.groups[GROUP] = [user(n) for n in range(1, 12)]  # one more: accepted and listed
    grown = project.run("recipients", "sync")
    assert grown.returncode == 0
    assert grown.stdout.splitlines() == ["chefer: accepted snapshot 2: 11 members; 1 added, 0 removed",
                                         "  + person.11@region.example.se  Person 11"]

    graph.tenant.groups[GROUP] = [user(n) for n in range(1, 9)]  # 3 of 11 gone: 27.3 %
    held = project.run("recipients", "sync")
    assert held.returncode == 3
    [line] = held.stderr.splitlines()
    assert line.startswith("chefer: held snapshot 3: 8 members; 0 added, 3 removed: 27.3 % smaller than the last "
                           "accepted snapshot (11 -> 8 members; the limit is 10 %); sends use snapshot 2;")
    diff = project.run("recipients", "diff", "chefer")
    assert diff.returncode == 0
    assert [row for row in diff.stdout.splitlines() if row[:2] in ("+ ", "- ")] == [
        f"- person.{n}@region.example.se  Person {n}" for n in (10, 11, 9)]
    assert diff.stdout.splitlines()[-1] == "0 added, 3 removed"
    listed = json.loads(project.run("recipients", "chefer", "--json", "--members").stdout)
    [chefer] = listed["lists"]
    assert chefer["snapshot"] == "2" and chefer["members"] == 11 and len(chefer["addresses"]) == 11

    accepted = project.run("recipients", "accept", "chefer", "--by", "Olle")
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.strip() == ("chefer: snapshot 3 accepted by Olle: 8 members (0 added, 3 removed); "
                                       "sends use it from now on")
    nothing = project.run("recipients", "accept", "chefer", "--by", "Olle")
    assert nothing.returncode == 1 and "no held change to accept" in nothing.stderr
    assert json.loads(project.run("recipients", "chefer", "--json").stdout)["lists"][0]["snapshot"] == "3"
    sent = project.run("send", "--date", "2024-11-17")
    assert sent.returncode == 0, sent.stderr
    assert "  directory lists: chefer snapshot 3" in project.run("history").stdout.splitlines()


def test_names_that_are_no_directory_list_exit_1(project: Project, graph: GraphServer) -> None:
    graph_project(project, graph)
    unknown = project.run("recipients", "sync", "nobody")
    assert unknown.returncode == 1 and "unknown recipient list 'nobody'" in unknown.stderr
    by_hand = project.run("recipients", "diff", "politisk-ledning")
    assert by_hand.returncode == 1 and "politisk-ledning is not a directory list" in by_hand.stderr
    listing = project.run("recipients", "politisk-ledning")  # the listing, as before the subcommands
    assert listing.returncode == 0 and listing.stdout.startswith("politisk-ledning  Politisk ledning: 11 members")
    helped = project.run("recipients", "--help")
    assert helped.returncode == 0 and all(word in helped.stdout for word in ("sync", "diff", "accept"))


def test_a_directory_that_refuses_is_one_line_naming_it_and_exit_3(project: Project, graph: GraphServer) -> None:
    graph_project(project, graph)
    assert project.run("recipients", "sync").returncode == 0
    graph.secret_file.write_text("not-the-secret\n", encoding="utf-8")
    refused = project.run("recipients", "sync")
    assert refused.returncode == 3
    [line] = refused.stderr.splitlines()
    assert line.startswith(f"chefer: sync failed: {graph.url}") and line.endswith("; sends use snapshot 1")
    assert "not-the-secret" not in refused.stdout + refused.stderr


def test_sync_without_directory_lists_says_so(project: Project) -> None:
    nothing = project.run("recipients", "sync")
    assert nothing.returncode == 0 and nothing.stdout == ""
    assert nothing.stderr.strip() == "no directory lists to sync (a list file names its directory with 'source:')"
