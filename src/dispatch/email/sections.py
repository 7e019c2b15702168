"""How an edition's body splits into its lead and its '## ' sections.

Its own module because both the edition (which builds the sections) and the editorial
checks (which must find sections exactly as the edition does) need it, and the edition
already depends on the checks.
"""

from __future__ import annotations

import re

_HEADING = re.compile(r"^##\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")


def split_sections(body: str, first_line: int) -> tuple[str, list[tuple[str, int, str]]]:
    """The text before the first '## ' heading, and (heading, line, markdown) per section."""
    lead: list[str] = []
    sections: list[tuple[str, int, list[str]]] = []
    in_fence = False
    for offset, line in enumerate(body.splitlines()):
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            sections.append((match.group(1).strip(), first_line + offset, []))
        elif sections:
            sections[-1][2].append(line)
        else:
            lead.append(line)
    return "\n".join(lead), [(h, n, "\n".join(lines).strip("\n") + "\n") for h, n, lines in sections]
