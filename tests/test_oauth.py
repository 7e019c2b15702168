"""Issue 11: OAuth2 submission (SASL XOAUTH2), against a real aiosmtpd server with TLS.

The server's XOAUTH2 mechanism is a handler method ``auth_XOAUTH2``: aiosmtpd's
``authenticator`` callback only sees mechanisms it decodes itself (PLAIN, LOGIN).
Token commands are small Python scripts that count their runs in a file, so
"fetched again exactly once" is a number the test reads, not a guess.
"""

from __future__ import annotations

import base64
import json
import shlex
import ssl
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from conftest import Project, RecordingHandler, SMTPServer, start_server
from dispatch.config import TransportSettings
from dispatch.delivery.oauth import (
    BARE_TOKEN_LIFETIME_SECONDS,
    EXPIRY_MARGIN_SECONDS,
    CommandTokenSource,
    parse_token_output,
    xoauth2_string,
)
from dispatch.delivery.transport import SMTPTransport
from dispatch.errors import AuthenticationError

MAILBOX = "rapport@example.org"
VALID = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.VALID-access-token-4711.c2lnbmF0dXJl"
STALE = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.STALE-access-token-0815.c2lnbmF0dXJl"


# -- the server side -----------------------------------------------------------------


@dataclass
class XOAuth2Handler(RecordingHandler):
    """RecordingHandler plus an XOAUTH2 mechanism that accepts only ``valid`` tokens for
    ``MAILBOX``. ``refusal`` is the reply to anything else (Exchange answers 535 5.7.3
    at once); ``gmail_style`` first sends a 334 JSON error challenge, as Gmail does."""

    valid: set[str] = field(default_factory=lambda: {VALID})
    refusal: str = "535 5.7.3 Authentication unsuccessful"
    refusals: list[str] = field(default_factory=list)  # per attempt, overrides ``refusal`` while non-empty
    gmail_style: bool = False
    auth_attempts: list[tuple[str, str]] = field(default_factory=list)  # (user, token)

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> Any:
        from aiosmtpd.smtp import MISSING, AuthResult

        if len(args) == 2:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except ValueError:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        else:
            response = await server.challenge_auth("")
            if response is MISSING:
                return AuthResult(success=False, handled=True)
            blob = response
        user, token = _parse_xoauth2(blob)
        with self.lock:
            self.auth_attempts.append((user, token))
            refusal = self.refusals.pop(0) if self.refusals else self.refusal
        if user == MAILBOX and token in self.valid:
            return AuthResult(success=True, auth_data=user)
        if self.gmail_style:
            error = json.dumps({"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"})
            await server.challenge_auth(error)  # the client answers with an empty line
        return AuthResult(success=False, handled=False, message=refusal)


def _parse_xoauth2(blob: bytes) -> tuple[str, str]:
    """``user=U\\x01auth=Bearer T\\x01\\x01`` -> (U, T); anything else -> ("", "")."""
    parts = blob.decode("utf-8", "replace").split("\x01")
    if len(parts) != 4 or parts[2:] != ["", ""] or not parts[0].startswith("user=") or not parts[1].startswith("auth=Bearer "):
        return "", ""
    return parts[0][len("user="):], parts[1][len("auth=Bearer "):]


@dataclass
class TLSRelay:
    server: SMTPServer
    handler: XOAuth2Handler
    ca_file: Path


@pytest.fixture
def tls_relay(tmp_path: Path) -> Iterator[TLSRelay]:
    """A submission server with STARTTLS from a test CA, AUTH only after TLS, MAIL only after AUTH."""
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    handler = XOAuth2Handler()
    controller, server = start_server(handler, tls_context=context, require_starttls=True,
                                      auth_require_tls=True, auth_required=True)
    try:
        yield TLSRelay(server, handler, ca_file)
    finally:
        controller.stop()


# -- token commands ------------------------------------------------------------------

TOKEN_SCRIPT = r'''
import json, sys, time
from pathlib import Path
counter, outputs = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
runs = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(runs))
step = outputs[min(runs, len(outputs)) - 1]
time.sleep(step.get("sleep", 0))
sys.stderr.write(step.get("stderr", ""))
sys.stdout.write(step.get("stdout", ""))
sys.exit(step.get("exit", 0))
'''


@dataclass
class TokenCommand:
    command: str
    counter: Path

    @property
    def runs(self) -> int:
        return int(self.counter.read_text()) if self.counter.exists() else 0


def token_command(tmp_path: Path, *steps: dict[str, Any], name: str = "token") -> TokenCommand:
    """A command that, on its n-th run, does steps[n-1] (the last step repeats):
    prints ``stdout``/``stderr``, sleeps ``sleep`` seconds, exits with ``exit``."""
    script = tmp_path / f"{name}.py"
    script.write_text(TOKEN_SCRIPT, encoding="utf-8")
    outputs = tmp_path / f"{name}.json"
    outputs.write_text(json.dumps(list(steps)), encoding="utf-8")
    counter = tmp_path / f"{name}.count"
    command = " ".join(shlex.quote(str(p)) for p in (sys.executable, script, counter, outputs))
    return TokenCommand(command, counter)


def msal_json(token: str, expires_in: int = 3599) -> dict[str, Any]:
    """What MSAL's acquire_token_for_client returns, printed as JSON."""
    return {"stdout": json.dumps({"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in, "access_token": token})}


def _assert_token_nowhere(project: Project, *outputs: str) -> None:
    secrets = [VALID, STALE, base64.b64encode(xoauth2_string(MAILBOX, VALID).encode()).decode(),
               base64.b64encode(xoauth2_string(MAILBOX, STALE).encode()).decode()]
    for output in outputs:
        for secret in secrets:
            assert secret not in output
    ledger_files = list((project.root / "var").glob("ledger.db*"))
    assert ledger_files, "the ledger was written"
    for path in ledger_files:
        content = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in content


def use_oauth_relay(project: Project, relay: TLSRelay, command: TokenCommand, **extra: Any) -> None:
    project.use_smtp(relay.server, security="starttls", ca_file=str(relay.ca_file), username=MAILBOX,
                     auth="xoauth2", token_command=command.command, **extra)


# -- acceptance, through the CLI -----------------------------------------------------


def test_send_with_xoauth2_delivers_the_sample_edition(project: Project, tls_relay: TLSRelay, tmp_path: Path) -> None:
    command = token_command(tmp_path, msal_json(VALID))
    use_oauth_relay(project, tls_relay, command)
    result = project.run("send", "--date", "2024-11-17")
    assert result.returncode == 0, result.stderr
    handler = tls_relay.handler
    assert handler.reports(), "the sample edition was delivered"
    counts = project.status()["counts"]
    assert counts["sent"] == len(handler.reports()) and counts["pending"] == counts["failed"] == 0
    assert handler.auth_attempts and set(handler.auth_attempts) == {(MAILBOX, VALID)}
    # Two connections and the completion summary share one token: fetched once.
    assert command.runs == 1
    _assert_token_nowhere(project, result.stdout, result.stderr)


def test_only_a_valid_token_is_accepted(tls_relay: TLSRelay, tmp_path: Path) -> None:
    wrong = token_command(tmp_path, msal_json(STALE), name="wrong")
    with pytest.raises(AuthenticationError) as refused:
        _transport(tls_relay, wrong.command).connect()
    assert "535 5.7.3" in str(refused.value)
    assert STALE not in str(refused.value)
    assert tls_relay.handler.auth_attempts == [(MAILBOX, STALE), (MAILBOX, STALE)]

    right = token_command(tmp_path, msal_json(VALID), name="right")
    connection = _transport(tls_relay, right.command).connect()
    try:
        outcome = connection.send(MAILBOX, ["someone@example.org"], b"Subject: x\r\n\r\nhej\r\n")
    finally:
        connection.close()
    assert outcome["someone@example.org"].state.value == "sent"


@pytest.mark.slow  # a CLI send; fast twin: test_rejected_token_is_forgotten_once
def test_stale_token_is_fetched_again_exactly_once(project: Project, tls_relay: TLSRelay, tmp_path: Path) -> None:
    # The first token claims an hour of life but the server no longer takes it (revoked,
    # or the clocks disagree): only the 535 tells. Two connections see it at once.
    command = token_command(tmp_path, msal_json(STALE), msal_json(VALID))
    use_oauth_relay(project, tls_relay, command, connections=2)
    result = project.run("send", "--date", "2024-11-17")
    assert result.returncode == 0, result.stderr
    assert command.runs == 2, "one fetch, one refetch, however many connections were refused"
    assert tls_relay.handler.reports()
    tokens = [token for _, token in tls_relay.handler.auth_attempts]
    assert STALE in tokens and tokens[-1] == VALID
    _assert_token_nowhere(project, result.stdout, result.stderr)


@pytest.mark.slow  # a CLI send; fast twin: test_454_is_retried_with_a_fresh_token
def test_expired_token_is_replaced_after_one_refetch(project: Project, tls_relay: TLSRelay, tmp_path: Path) -> None:
    # The command hands out a token that has already expired (a stale cache in the
    # operator's script): it is tried once, refused, and replaced by one new fetch.
    command = token_command(tmp_path, msal_json(STALE, expires_in=-30), msal_json(VALID))
    use_oauth_relay(project, tls_relay, command, connections=1)
    result = project.run("send", "--date", "2024-11-17")
    assert result.returncode == 0, result.stderr
    assert command.runs == 2
    assert [t for _, t in tls_relay.handler.auth_attempts][:2] == [STALE, VALID]
    assert tls_relay.handler.reports()
    _assert_token_nowhere(project, result.stdout, result.stderr)


def test_token_always_refused_fails_clearly_and_sends_nothing(project: Project, tls_relay: TLSRelay, tmp_path: Path) -> None:
    command = token_command(tmp_path, msal_json(STALE))
    use_oauth_relay(project, tls_relay, command)
    result = project.run("send", "--date", "2024-11-17")
    assert result.returncode == 3, result.stderr
    assert "XOAUTH2 authentication failed twice" in result.stderr
    assert "535 5.7.3" in result.stderr and "token_command" in result.stderr
    handler = tls_relay.handler
    assert handler.received == [] and handler.mail_times == [] and handler.rcpt_log == []
    status = project.status()
    counts = status["counts"]
    assert counts["sent"] == counts["failed"] == 0 and counts["pending"] + counts["deferred"] > 0, \
        "nobody lost: waiting for the next run"
    assert command.runs >= 2, "it did fetch again before giving up"
    _assert_token_nowhere(project, result.stdout, result.stderr)


@pytest.mark.parametrize("security, expected", [("none", "unencrypted"), ("starttls", "does not offer STARTTLS")])
def test_xoauth2_without_tls_is_refused_before_auth(project: Project, tmp_path: Path, security: str, expected: str) -> None:
    # This server would take AUTH XOAUTH2 in plain text; the client must not offer it.
    handler = XOAuth2Handler()
    controller, server = start_server(handler, auth_require_tls=False)
    command = token_command(tmp_path, msal_json(VALID))
    try:
        project.use_smtp(server, security=security, username=MAILBOX, auth="xoauth2", token_command=command.command)
        result = project.run("send", "--date", "2024-11-17")
    finally:
        controller.stop()
    assert result.returncode == 3, result.stderr
    assert expected in result.stderr
    assert handler.auth_attempts == [] and handler.received == []
    assert command.runs == 0, "no token is even fetched for a connection that cannot carry it"
    _assert_token_nowhere(project, result.stdout, result.stderr)


# -- replies, in process -------------------------------------------------------------


def _transport(relay: TLSRelay, command: str, username: str = MAILBOX) -> SMTPTransport:
    settings = TransportSettings(kind="smtp", host=relay.server.host, port=relay.server.port, security="starttls",
                                 username=username, auth="xoauth2", token_command=command, ca_file=relay.ca_file,
                                 timeout_seconds=10)
    return SMTPTransport(settings, token_source=CommandTokenSource(command, settings.endpoint))


def test_454_is_retried_with_a_fresh_token(tls_relay: TLSRelay, tmp_path: Path) -> None:
    tls_relay.handler.refusals = ["454 4.7.0 Temporary authentication failure"]
    command = token_command(tmp_path, msal_json(STALE), msal_json(VALID))
    _transport(tls_relay, command.command).connect().close()
    assert command.runs == 2


def test_gmail_style_error_challenge_then_refetch(tls_relay: TLSRelay, tmp_path: Path) -> None:
    tls_relay.handler.gmail_style = True
    tls_relay.handler.refusal = "535 5.7.8 Username and Password not accepted"
    command = token_command(tmp_path, msal_json(STALE), msal_json(VALID))
    _transport(tls_relay, command.command).connect().close()
    assert command.runs == 2


def test_550_5_7_30_is_explained_and_not_retried(tls_relay: TLSRelay, tmp_path: Path) -> None:
    tls_relay.handler.refusal = "550 5.7.30 Basic authentication is not supported for Client Submission"
    command = token_command(tmp_path, msal_json(STALE))
    with pytest.raises(AuthenticationError) as refused:
        _transport(tls_relay, command.command).connect()
    assert "Basic auth is disabled for this tenant" in str(refused.value)
    assert command.runs == 1 and len(tls_relay.handler.auth_attempts) == 1


def test_xoauth2_without_username_is_refused(tls_relay: TLSRelay, tmp_path: Path) -> None:
    command = token_command(tmp_path, msal_json(VALID))
    with pytest.raises(AuthenticationError, match=r"needs transport\.username"):
        _transport(tls_relay, command.command, username="").connect()
    assert command.runs == 0 and tls_relay.handler.auth_attempts == []


def test_server_without_xoauth2_is_named(tmp_path: Path) -> None:
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    # A plain handler: aiosmtpd offers only its built-in LOGIN and PLAIN.
    controller, server = start_server(RecordingHandler(), tls_context=context, auth_require_tls=True,
                                      authenticator=lambda *args: None)
    command = token_command(tmp_path, msal_json(VALID))
    try:
        with pytest.raises(AuthenticationError, match="does not offer AUTH XOAUTH2"):
            _transport(TLSRelay(server, XOAuth2Handler(), ca_file), command.command).connect()
    finally:
        controller.stop()
    assert command.runs == 0


# -- the token command ---------------------------------------------------------------


def test_command_failure_shows_stderr_but_no_secret(tmp_path: Path) -> None:
    leaked = "eyJhbGciOiJSUzI1NiJ9.cmVmcmVzaC10b2tlbi1zZWNyZXQ.c2lnbmF0dXJlLXNlY3JldA"
    command = token_command(tmp_path, {"exit": 1, "stdout": VALID,
                                       "stderr": f"AADSTS7000215: Invalid client secret provided. cached={leaked}\n"})
    source = CommandTokenSource(command.command, "smtp.office365.com:587")
    with pytest.raises(AuthenticationError) as failed:
        source.token()
    message = str(failed.value)
    assert "smtp.office365.com:587" in message and "exited with status 1" in message and "AADSTS7000215" in message
    assert leaked not in message and VALID not in message


@pytest.mark.parametrize("stdout, reason", [
    ("", "printed nothing"),
    (f"Token: {VALID}\n", "not a single token"),
    (f'{{"access_token": "{VALID}"', "not valid JSON"),
    (json.dumps({"token": VALID}), "no 'access_token'"),
    (json.dumps({"access_token": VALID, "expires_on": "next tuesday"}), "neither epoch seconds nor an ISO time"),
])
def test_unusable_output_is_explained_without_echoing_it(tmp_path: Path, stdout: str, reason: str) -> None:
    command = token_command(tmp_path, {"stdout": stdout})
    with pytest.raises(AuthenticationError, match=reason) as failed:
        CommandTokenSource(command.command, "relay:587").token()
    assert VALID not in str(failed.value)


def test_missing_command_and_timeout(tmp_path: Path) -> None:
    with pytest.raises(AuthenticationError, match="not found"):
        CommandTokenSource(str(tmp_path / "no-such-command"), "relay:587").token()
    slow = token_command(tmp_path, {"sleep": 5, "stdout": VALID})
    with pytest.raises(AuthenticationError, match=r"no token within 0\.5 seconds"):
        CommandTokenSource(slow.command, "relay:587", timeout=0.5).token()
    with pytest.raises(AuthenticationError, match="empty"):
        CommandTokenSource("  ", "relay:587")


def test_parallel_connections_share_one_fetch(tmp_path: Path) -> None:
    command = token_command(tmp_path, {"sleep": 0.3, **msal_json(VALID)})
    source = CommandTokenSource(command.command, "relay:587")
    tokens: list[str] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        tokens.append(source.token())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tokens == [VALID] * 8
    assert command.runs == 1 and source.fetches == 1


def test_rejected_token_is_forgotten_once(tmp_path: Path) -> None:
    command = token_command(tmp_path, msal_json(STALE), msal_json(VALID))
    source = CommandTokenSource(command.command, "relay:587")
    assert source.token() == STALE
    source.invalidate(STALE)
    assert source.token() == VALID
    source.invalidate(STALE)  # a second connection refused with the old token: no new fetch
    assert source.token() == VALID
    assert command.runs == 2


def test_cache_expiry_in_injected_time(tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    command = token_command(tmp_path, msal_json(STALE, expires_in=3600), msal_json(VALID, expires_in=3600))
    source = CommandTokenSource(command.command, "relay:587", clock=lambda: now[0])
    assert source.token() == STALE
    now[0] += 3600 - EXPIRY_MARGIN_SECONDS - 1
    assert source.token() == STALE and command.runs == 1, "still well within its life"
    now[0] += 1
    assert source.token() == VALID and command.runs == 2, "refetched shortly before expiry"


# -- parsing -------------------------------------------------------------------------

T0 = 1_700_000_000.0


def test_bare_token_gets_a_conservative_lifetime() -> None:
    token = parse_token_output(f"  {VALID}\n", T0)
    assert token.value == VALID
    assert token.refresh_at == T0 + BARE_TOKEN_LIFETIME_SECONDS - EXPIRY_MARGIN_SECONDS
    assert VALID not in repr(token)


@pytest.mark.parametrize("payload, expires_at", [
    ({"access_token": VALID, "expires_in": 3599}, T0 + 3599),
    ({"access_token": VALID, "expires_in": "3599"}, T0 + 3599),
    ({"access_token": VALID, "expires_on": T0 + 4000}, T0 + 4000),
    ({"access_token": VALID, "expires_on": str(int(T0 + 4000))}, T0 + 4000),
    ({"access_token": VALID, "expires_on": "2023-11-14T23:13:20Z"}, T0 + 3600),
    ({"access_token": VALID, "expires_on": "2023-11-15T00:13:20+01:00"}, T0 + 3600),
    # The Azure CLI's own JSON: accessToken, expires_on as epoch seconds.
    ({"accessToken": VALID, "expiresOn": "2023-11-14 23:13:20.000000", "expires_on": int(T0 + 1000), "tokenType": "Bearer"}, T0 + 1000),
    ({"access_token": VALID}, T0 + BARE_TOKEN_LIFETIME_SECONDS),
])
def test_json_expiry_forms(payload: dict[str, Any], expires_at: float) -> None:
    token = parse_token_output(json.dumps(payload), T0)
    assert token.value == VALID
    assert token.refresh_at == expires_at - EXPIRY_MARGIN_SECONDS


def test_short_lived_and_expired_tokens_are_still_used_once() -> None:
    short = parse_token_output(json.dumps({"access_token": VALID, "expires_in": 120}), T0)
    assert short.refresh_at == T0 + 60, "a two-minute token is used for a minute, not refetched at once"
    expired = parse_token_output(json.dumps({"access_token": VALID, "expires_in": -30}), T0)
    assert expired.refresh_at == T0, "the server decides; the next request fetches again"


def test_xoauth2_initial_response() -> None:
    assert xoauth2_string("a@b.se", "tok") == "user=a@b.se\x01auth=Bearer tok\x01\x01"
