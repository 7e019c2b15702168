"""Single sign-on (OpenID Connect) for the console: the routes and middleware it adds.

Nothing is added until ``web.oidc`` is configured (see README, "Single sign-on")."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from dispatch.config import WebSettings


def routes(web: WebSettings) -> list[BaseRoute]:
    return []


def middleware(web: WebSettings) -> list[Middleware]:
    return []
