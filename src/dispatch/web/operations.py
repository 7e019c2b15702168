"""The operator's actions: send and watch, stop and resume, urgent messages, corrections."""

from __future__ import annotations

from starlette.routing import BaseRoute


def routes() -> list[BaseRoute]:
    return []
