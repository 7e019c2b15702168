"""The concrete parts, named in one place: which ledger, which transport, the secrets they
need, the sending policy and the sender, all from the settings."""

from __future__ import annotations

import getpass
import os
from datetime import timedelta
from pathlib import Path

from dispatch.config import Settings
from dispatch.config.credentials import SecretUnavailable
from dispatch.config.credentials import read_secret as secret_from
from dispatch.config.settings import GraphDirectory, LdapDirectory, OidcSettings
from dispatch.delivery.pipeline import SendPolicy, Transport
from dispatch.delivery.transport import MaildirTransport, SMTPTransport
from dispatch.email.dkim import KeyFileError, Signer, read_key
from dispatch.email.message import Envelope, list_address
from dispatch.errors import AuthenticationError, ConsoleError, DirectoryError, InputError, Problem, display_path
from dispatch.recipients.directory import DirectorySource


def secrets_ready(settings: Settings) -> None:
    """Every secret the config names exists (without reading it out); InputError if not, so
    that nothing is published or sent that could not be finished."""
    from dispatch.config import secret_problems

    problems = secret_problems(settings, for_send=True)
    if problems:
        raise InputError(problems)


def signer(settings: Settings) -> Signer | None:
    """The DKIM signer the config asks for (None without dkim:). The key file is read now,
    each time an edition is prepared, so that a key replaced on disk is used from the next
    send on, and a key file that cannot serve stops the send (InputError at dkim.key_file's
    line) before anything goes out."""
    if settings.dkim is None:
        return None
    try:
        key = read_key(settings.dkim.key_file)
    except KeyFileError as exc:
        line = settings.line_of.get("dkim.key_file", 1)
        raise InputError([Problem.of(display_path(settings.path), line, "dkim.key_file", detail=str(exc))]) from exc
    return Signer(domain=settings.dkim.domain, selector=settings.dkim.selector, key=key)


def read_secret(settings: Settings) -> str | None:
    t = settings.transport
    if t.password_env:
        value = os.environ.get(t.password_env)
        if value is None:
            raise AuthenticationError(t.endpoint, f"the environment variable {t.password_env} (transport.password_env) is not set")
        return value
    if t.password_file:
        try:
            return t.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AuthenticationError(t.endpoint, f"cannot read transport.password_file: {exc.strerror}") from None
    return None


def read_oidc_secret(oidc: OidcSettings) -> str:
    """The console's client secret at the identity provider, from web.oidc.client_secret_env or
    _file. Read when the console starts, so a missing one stops it there with a message that
    names where it was looked for (never any part of the value)."""
    try:
        return secret_from(oidc.client_secret_env, oidc.client_secret_file)
    except SecretUnavailable as missing:
        file = oidc.client_secret_file
        said = {"env": f"${oidc.client_secret_env} (web.oidc.client_secret_env) is not set or empty; "
                       "export the client secret from the identity provider in it",
                "unreadable": f"{file}: cannot read web.oidc.client_secret_file: {missing.detail}",
                "empty": f"{file} (web.oidc.client_secret_file) is empty; put the client secret in it",
                "none": "web.oidc needs client_secret_env or client_secret_file"}[missing.reason]
        raise ConsoleError(said) from None


def open_transport(settings: Settings) -> Transport:
    t = settings.transport
    if t.kind == "maildir":
        return MaildirTransport(t.path)
    token_source = None
    if t.auth == "xoauth2":
        from dispatch.delivery.oauth import CommandTokenSource

        if not t.token_command:
            raise AuthenticationError(t.endpoint, "transport.auth is xoauth2 but transport.token_command is not set")
        token_source = CommandTokenSource(t.token_command, t.endpoint)
    password = read_secret(settings) if t.username and t.auth == "password" else None
    return SMTPTransport(t, password=password, token_source=token_source)


def send_policy(settings: Settings, linger: timedelta = timedelta(0), *, by_hand: bool = False) -> SendPolicy:
    """``by_hand``: a person runs this send (the command line). It retries at once what waits
    for a later attempt, and does not sit out a pause that someone has to fix; the service
    (``by_hand=False``) keeps to the backoff and waits pauses out until its deadline."""
    t = settings.transport
    return SendPolicy(
        connections=t.connections, recipients_per_message=t.recipients_per_message,
        rate_per_minute=t.rate_per_minute, retry_minutes=t.retry_minutes,
        retry_window=timedelta(hours=t.retry_window_hours), linger=linger,
        lease=timedelta(seconds=settings.lease_seconds),
        retry_now=by_hand, wait_out_pauses=not by_hand,
    )


def envelope(settings: Settings) -> Envelope:
    sender = settings.sender
    return Envelope(
        sender=sender.address,
        from_name=sender.name,
        from_address=sender.address,
        reply_to=sender.reply_to,
        list_name=settings.report.title,
        list_address=list_address(settings.report.list_id, sender.domain),
    )


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def phone_check_unavailable() -> str | None:
    """Why the message cannot be measured at a phone's width here (no Chromium), or None.
    check says so rather than pass it over in silence: an editor must not take a skipped
    check for a passed one."""
    from dispatch.email.screenshots import INSTALL_FIX, ChromiumMissing, find_chromium

    try:
        find_chromium()
    except ChromiumMissing:
        configured = os.environ.get("DISPATCH_CHROMIUM")
        where = f"DISPATCH_CHROMIUM={configured!r} is not an executable" if configured else "headless Chromium was not found"
        return f"{where}; {INSTALL_FIX}"
    return None


def directory_source(directory: LdapDirectory | GraphDirectory) -> DirectorySource:
    """The source that reads one directory of ``directories:``, its secret read now (from the
    environment or a file, never from config.yaml; a missing one is a DirectoryError naming
    where it was looked for, never any part of a value)."""
    if isinstance(directory, LdapDirectory):
        from dispatch.recipients.ldap import LdapSource

        server = directory.url
        secret = _directory_secret(directory.name, server, "password", directory.password_env, directory.password_file)
        return LdapSource(directory, secret)
    from dispatch.recipients.graph import GraphSource

    return GraphSource(directory)  # it reads its client secret itself, when it asks for a token


def _directory_secret(name: str, server: str, what: str, env: str | None, file: Path | None) -> str:
    setting = f"directories.{name}"
    try:
        return secret_from(env, file)
    except SecretUnavailable as missing:
        shown = display_path(file) if file else ""
        said = {"env": f"${env} ({setting}.{what}_env) is not set or empty; export the {what} in it",
                "unreadable": f"cannot read {setting}.{what}_file {shown}: {missing.detail}",
                "empty": f"{setting}.{what}_file {shown} is empty; put the {what} in it",
                "none": f"no {what}: set {setting}.{what}_env or {setting}.{what}_file"}[missing.reason]
        raise DirectoryError(name, server, said) from None
