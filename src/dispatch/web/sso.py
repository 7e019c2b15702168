"""Single sign-on (OpenID Connect) for the console: the routes and middleware it adds.

Nothing is added until ``web.oidc`` is configured (see docs/reference/console.md, "Single sign-on"). Then
``/auth/login`` sends the browser to the organisation's identity provider (authorization code
flow with PKCE S256, a state and a nonce, through authlib) and ``/auth/callback`` takes it
back: the code is exchanged for tokens, the ID token is verified (a signature of the algorithms
``web.oidc.id_token_algorithms`` names, whatever the provider lists; the issuer; an audience
that includes our client id; nonce; expiry), and the person's claims decide their role. From there on they have
the console's ordinary signed session, like a local account. The protocol is here; who gets
in, and the audit log, are ``app``'s (``app.sso_user``). Signing out of an account that
only single sign-on uses also signs out at the provider (RP-initiated logout), when it offers that.
"""

from __future__ import annotations

import html
import logging
import re  # not wording: strips control characters from a provider's error before it is recorded
import ssl
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx2
from authlib.integrations.starlette_client import (  # type: ignore[import-untyped]
    OAuth,
    OAuthError,
    StarletteOAuth2App,
)
from joserfc.errors import JoseError
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from dispatch import app
from dispatch.errors import ConsoleError
from dispatch.values import Fact
from dispatch.web import pages
from dispatch.web.console import Console, forbidden, render
from dispatch.web.pages import safe_next
from dispatch.web.sessions import load_secret

LOG = logging.getLogger("dispatch.web.sso")
CALLBACK = "/auth/callback"
COOKIE = "dispatch_sso"  # the flow's state; the console's own session stays in dispatch_session
FLOW_SECONDS = 15 * 60  # time to sign in at the provider (MFA included) before the state expires
MAX_DETAIL = 400  # claim values in the audit log: Entra ID can send a couple of hundred groups


def middleware(web: app.WebSettings) -> list[Middleware]:
    """authlib keeps the flow's state, nonce and PKCE verifier in ``request.session``: a cookie of
    its own, signed with the console's key (Starlette's salt is not the console sessions', so one
    cookie can never pass for the other), sent only to /auth/*, and SameSite=Lax because the
    provider's redirect back to the callback is a cross-site navigation, which a Strict cookie
    would miss."""
    if web.oidc is None:
        return []
    return [Middleware(SessionMiddleware, secret_key=load_secret(web).decode(), session_cookie=COOKIE,
                       max_age=FLOW_SECONDS, path="/auth", same_site="lax", https_only=web.secure)]


def routes(console: Console) -> list[BaseRoute]:
    if console.web.oidc is None:
        return []
    sso = SingleSignOn(console.web, console.web.oidc)
    console.templates.globals["sso_label"] = console.web.oidc.label  # login.html shows the button
    console.templates.globals["logout_action"] = "/auth/logout"  # base.html's "Logga ut" goes through sso.logout
    return [Route("/auth/login", sso.start, name="sso_login"), Route(CALLBACK, sso.callback, name="sso_callback"),
            Route("/auth/logout", sso.logout, methods=["POST"], name="sso_logout")]


class _Client(StarletteOAuth2App):  # type: ignore[misc]
    """authlib's client, but the ID token's algorithms are ours: authlib takes them from the
    discovery document, and one that lists "none" would make an unsigned token pass."""

    algorithms: tuple[str, ...] = ("RS256",)

    async def load_server_metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = await super().load_server_metadata()
        metadata["id_token_signing_alg_values_supported"] = list(self.algorithms)
        return metadata


class SingleSignOn:
    """One provider, one client registration, for the life of the console."""

    def __init__(self, web: app.WebSettings, oidc: app.OidcSettings) -> None:
        self.web = web
        self.oidc = oidc
        self._secret = app.read_oidc_secret(oidc)  # at start-up: a missing secret stops `dispatch web` there
        context = ssl.create_default_context()  # TLS to the provider is always verified
        if oidc.ca_file:
            try:
                context.load_verify_locations(cafile=str(oidc.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConsoleError(f"cannot load web.oidc.ca_file {oidc.ca_file}: {exc}") from None
        client_cls = type("PinnedClient", (_Client,), {"algorithms": oidc.id_token_algorithms})
        self.client: Any = OAuth().register(
            name="dispatch", client_id=oidc.client_id, client_secret=self._secret, client_cls=client_cls,
            server_metadata_url=oidc.issuer.rstrip("/") + "/.well-known/openid-configuration",
            client_kwargs={"scope": oidc.scopes, "code_challenge_method": "S256", "verify": context, "timeout": 15.0},
        )

    def callback_url(self, request: Request) -> str:
        if self.web.base_url:
            return self.web.base_url.rstrip("/") + CALLBACK
        return str(request.url_for("sso_callback"))

    async def start(self, request: Request) -> Response:
        """``/auth/login?next=PATH``: a link, not a form: the console's CSP (form-action 'self')
        would stop a form whose answer redirects to the provider."""
        console: Console = request.app.state.console
        request.session.clear()  # one flow at a time per browser: an abandoned one is forgotten
        request.session["next"] = safe_next(request.query_params.get("next"))
        try:
            metadata = await self.client.load_server_metadata()
            issuer = str(metadata.get("issuer", ""))
            if issuer.rstrip("/") != self.oidc.issuer.rstrip("/"):
                # OpenID Connect Discovery 4.3: the document must be the issuer's own.
                raise ValueError(f"its discovery document names the issuer {issuer!r}")
            response: Response = await self.client.authorize_redirect(request, self.callback_url(request))
            return response
        except (httpx2.HTTPError, ValueError, KeyError) as exc:
            self.client.server_metadata.pop("_loaded_at", None)  # ask again next time
            LOG.error("single sign-on unavailable: the identity provider %s: %s", self.oidc.issuer, self._scrub(_said(exc)))
            return render(console, "error.html", 503, user=None, session=None, now=console.now(), kept_text="",
                          heading="Inloggningen fungerar inte just nu",
                          message="Organisationens inloggningstjänst svarar inte. Försök igen om en stund"
                                  + (", eller logga in med ett lokalt konto." if self.web.local_accounts else "."))

    async def callback(self, request: Request) -> Response:
        console: Console = request.app.state.console
        now = console.now()
        remote = request.client.host if request.client else ""
        target = safe_next(request.session.get("next"))
        try:
            metadata = await self.client.load_server_metadata()
            # The issuer, and an audience that includes us: authlib alone accepts a token for
            # another client when its azp names ours.
            options = {"iss": {"essential": True, "values": [metadata["issuer"]]},
                       "aud": {"essential": True, "values": [self.oidc.client_id]}}
            token = await self.client.authorize_access_token(request, claims_options=options)
            claims = await self._claims(token)
        except OAuthError as exc:  # also the state that matches no flow of this browser (MismatchingStateError)
            reason = f"{exc.error}: {exc.description}" if exc.description else str(exc.error)
            return await self._failed(console, now, remote, reason)
        except JoseError as exc:
            return await self._failed(console, now, remote, f"the ID token is not valid: {exc}")
        except (httpx2.HTTPError, ValueError, KeyError) as exc:
            return await self._failed(console, now, remote, f"the identity provider did not answer: {_said(exc)}")
        finally:
            request.session.clear()  # the flow is over, whatever happened: the cookie goes
        return await self._admit(console, claims, target, now, remote)

    async def _claims(self, token: dict[str, Any]) -> dict[str, Any]:
        """The ID token's claims, with what it lacks from the UserInfo endpoint: some providers
        put profile, email and group claims only there (OpenID Connect Core 5.4)."""
        claims = dict(token.get("userinfo") or {})
        if not claims.get("sub"):
            raise OAuthError(error="invalid_token", description="the provider sent no ID token")
        wanted = (self.oidc.claim, "email", "preferred_username")
        metadata = await self.client.load_server_metadata()
        if any(key not in claims for key in wanted) and metadata.get("userinfo_endpoint"):
            info = await self.client.userinfo(token=token)
            if info.get("sub") == claims["sub"]:  # Core 5.3.4: otherwise the answer is not about this person
                for key, value in info.items():
                    claims.setdefault(key, value)
        return claims

    async def _admit(self, console: Console, claims: dict[str, Any], target: str, now: datetime, remote: str) -> Response:
        claim = self.oidc.claim
        values = app.claim_values(claims, claim)
        subject = f"{self.oidc.issuer}|{claims['sub']}"  # who the person is; names change and clean up alike
        try:
            name = app.sso_name(claims)
        except app.SSORefused as exc:
            return await self._failed(console, now, remote, str(exc))
        role = app.sso_role(values, self.oidc.roles)
        if role is None:
            detail = Fact.of("audit_detail.no_console_role", groups=_clean(f"{claim} {values}"))
            refused = name
            name = await console.unit(lambda unit: app.sso_no_role(unit, refused, subject, detail, now, remote=remote))
            LOG.warning("single sign-on refused for %s: none of the %s values %s maps to a role in web.oidc.roles",
                        name, claim, _clean(str(values)))
            return forbidden(console, "Du är inloggad hos organisationen, men ditt konto har ingen roll i rapportkonsolen "
                                      "(du finns inte i någon av de grupper som ger åtkomst). Be den som förvaltar konsolen "
                                      "om åtkomst.")
        # Only an address the provider has verified: anyone may type any address into their
        # profile at many providers, and the console sends test mail to it.
        email = claims.get("email") if claims.get("email_verified") is True and isinstance(claims.get("email"), str) else ""
        try:
            user = await console.unit(lambda unit: app.sso_user(unit, name, str(email), role, now, remote=remote,
                                                                subject=subject))
        except app.SSOHeld as exc:
            LOG.warning("single sign-on held for an operator: %s", exc)
            return forbidden(console, f"Ditt namn hos organisationen ({name}) liknar ett annat kontos namn i rapportkonsolen, "
                                      f"så ditt konto har lagts upp som {exc.held} och väntar på att den som förvaltar "
                                      "konsolen godkänner det. Kontakta den som förvaltar konsolen.")
        except app.SSORefused as exc:
            LOG.warning("single sign-on refused for %s: %s", name, exc)
            return forbidden(console, "Ditt konto får inte logga in i rapportkonsolen med organisationens inloggning "
                                      "(kontot är spärrat, eller namnet hör till ett lokalt konto). Kontakta den som "
                                      "förvaltar konsolen.")
        response = _continue_to(target)
        await console.start_session(response, user.name, now)
        return response

    async def logout(self, request: Request) -> Response:
        """The console's own sign-out (pages.logout: the session, the audit log), then, for an
        account only single sign-on uses, on to the provider's end_session_endpoint (OpenID
        Connect RP-Initiated Logout 1.0), which signs the person out there too and sends them
        back to the sign-in page: otherwise the next "Logga in" would need no password at all."""
        console: Console = request.app.state.console
        session = console.sessions.read(request, console.now())
        user = await console.unit(lambda unit: unit.ledger.user(session.user)) if session else None
        response = await pages.logout(request)
        if response.status_code != 303 or user is None or user.password_hash is not None:
            return response  # refused (e.g. CSRF), or a local account: the provider has no session of theirs
        try:
            endpoint = (await self.client.load_server_metadata()).get("end_session_endpoint")
        except (httpx2.HTTPError, ValueError) as exc:
            LOG.warning("signed %s out of the console only: the identity provider %s: %s", user.name, self.oidc.issuer,
                        self._scrub(_said(exc)))
            return response
        if isinstance(endpoint, str) and endpoint.startswith("https://"):
            back = (self.web.base_url.rstrip("/") + "/login") if self.web.base_url else str(request.url_for("login"))
            # No id_token_hint (the console keeps no ID token): client_id names us instead, so
            # the provider can check post_logout_redirect_uri against our registration.
            separator = "&" if "?" in endpoint else "?"
            response.headers["location"] = endpoint + separator + urlencode(
                {"client_id": self.oidc.client_id, "post_logout_redirect_uri": back, "ui_locales": "sv"})
        return response

    async def _failed(self, console: Console, now: datetime, remote: str, reason: str) -> Response:
        reason = _clean(self._scrub(reason))
        await console.unit(lambda unit: app.sso_failed(unit, reason, now, remote=remote))
        LOG.warning("single sign-on failed%s: %s", f" from {remote}" if remote else "", reason)
        return forbidden(console, "Inloggningen med organisationens konto kunde inte slutföras (den var för gammal, "
                                  "redan använd eller ändrad på vägen). Börja om från inloggningssidan.")

    def _scrub(self, text: str) -> str:
        """Nothing a provider or library says ends up showing the client secret."""
        return text.replace(self._secret, "[client secret]") if self._secret else text


def _continue_to(target: str) -> HTMLResponse:
    """A page that moves on to ``target`` by itself. Not a redirect: the browser arrived here
    from the provider (a cross-site navigation), and a redirect would keep it cross-site, so
    the SameSite=Strict session cookie set here would not be sent with it and the person would
    land on the sign-in page again. A meta refresh is a navigation of this site's own."""
    shown = html.escape(target, quote=True)
    body = (f'<!doctype html><html lang="sv"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0; url={shown}">'
            f'<title>Inloggad</title></head><body><p>Du är inloggad. <a href="{shown}">Fortsätt</a></p></body></html>')
    return HTMLResponse(body)


def _clean(text: str) -> str:
    """One line, of bounded length: an error description in the callback's query is anyone's
    text, and must not forge lines in the log."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text)[:MAX_DETAIL]


def _said(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
