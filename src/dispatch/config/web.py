"""The config's sections for the console: web (listen address, sessions, password hashing,
single sign-on) and the accessibility statement; each checks its keys, kinds and ranges,
with line numbers, as config_sections does for the sending side."""

from __future__ import annotations

from datetime import date

from dispatch.config.reader import Reader
from dispatch.config.settings import (
    ACCESSIBILITY_KEYS,
    OIDC_ALGORITHMS,
    OIDC_KEYS,
    PASSWORD_HASHING,
    WEB_KEYS,
    AccessibilitySettings,
    OidcSettings,
    WebSettings,
)
from dispatch.config.yamlsource import LineDict, LineList
from dispatch.values import Role


def read_web(reader: Reader, raw: LineDict) -> WebSettings | None:
    """The contract's editor console: known keys, strings, and a listen address HOST:PORT."""
    section = reader.section(raw, "web", WEB_KEYS)
    if not isinstance(raw.get("web"), LineDict):
        return None
    listen = reader.text(section, "listen", "127.0.0.1:8025", "web.")
    host, colon, port = listen.rpartition(":")
    if not (colon and host and port.isdigit() and 1 <= int(port) <= 65535):
        reader.problem(section.line_of("listen"), f"'web.listen' must be HOST:PORT with a port from 1 to 65535, not {listen!r}")
        listen = "127.0.0.1:8025"
    base_url = reader.text(section, "base_url", None, "web.")
    if base_url is not None and not base_url.startswith(("https://", "http://")):
        reader.problem(section.line_of("base_url"), f"'web.base_url' must start with https:// (or http://), not {base_url!r}")
    idle = reader.number(section, "idle_minutes", (int, float), 30.0, "web.", low=1, high=24 * 60, rule="minutes from 1 to 1440")
    absolute = reader.number(section, "absolute_hours", (int, float), 10.0, "web.", low=1, high=72, rule="hours from 1 to 72")
    return WebSettings(
        listen=listen, base_url=base_url, idle_minutes=float(idle), absolute_hours=float(absolute),
        session_secret_env=reader.text(section, "session_secret_env", None, "web."),
        session_secret_file=reader.relative(reader.text(section, "session_secret_file", None, "web.")),
        forwarded_allow_ips=reader.text(section, "forwarded_allow_ips", None, "web."),
        local_accounts=bool(reader.get(section, "local_accounts", bool, True, "web.")),
        password_hashing=_read_password_hashing(reader, section),
        # 64 MiB is one check with the standard profile: the least that lets anyone sign in.
        password_check_memory_mb=int(reader.number(section, "password_check_memory_mb", int, 128, "web.", low=64,
                                                   high=1024 * 1024, rule="megabytes from 64 (one check) up")),
        oidc=_read_oidc(reader, section),
    )


def _read_password_hashing(reader: Reader, section: LineDict) -> str:
    profile = reader.text(section, "password_hashing", "standard", "web.")
    if profile not in PASSWORD_HASHING:
        reader.problem(section.line_of("password_hashing"),
                       f"'web.password_hashing' must be {' or '.join(PASSWORD_HASHING)}, not {profile!r}")
        return "standard"
    return str(profile)


def _read_oidc(reader: Reader, web: LineDict) -> OidcSettings | None:
    """web.oidc, single sign-on: where the provider is, who the console is to it, where its
    secret is kept (never the secret itself), and which claim values give which role."""
    section = reader.section(web, "oidc", OIDC_KEYS, "web.", reported=("client_secret",))
    if not isinstance(web.get("oidc"), LineDict):
        return None
    p = "web.oidc."
    at = web.line_of("oidc")  # where a missing key would go
    if "client_secret" in section:  # the value is never read, so no message can show it
        reader.problem(section.line_of("client_secret"),
                       "secrets do not belong in the config file: remove 'client_secret' and set 'client_secret_env' "
                       "(the name of an environment variable) or 'client_secret_file' instead")
    issuer = reader.text(section, "issuer", None, p)
    if issuer is None:
        reader.problem(at, "'web.oidc' needs 'issuer', e.g. https://login.microsoftonline.com/TENANT/v2.0")
    elif not issuer.startswith("https://"):
        # The provider's answers decide who may approve what goes out: only over verified TLS.
        reader.problem(section.line_of("issuer"), f"'web.oidc.issuer' must start with https://, not {issuer!r}")
    client_id = reader.text(section, "client_id", None, p)
    if client_id is None:
        reader.problem(at, "'web.oidc' needs 'client_id' (the console's application id at the provider)")
    secret_env = reader.text(section, "client_secret_env", None, p)
    secret_file = reader.relative(reader.text(section, "client_secret_file", None, p))
    if secret_env is not None and secret_file is not None:
        reader.problem(section.line_of("client_secret_file"), "'web.oidc': set client_secret_env or client_secret_file, not both")
    elif secret_env is None and secret_file is None and "client_secret" not in section:
        reader.problem(at, "'web.oidc' needs 'client_secret_env' (the name of an environment variable) or 'client_secret_file'")
    scopes = reader.text(section, "scopes", "openid profile email", p)
    if "openid" not in scopes.split():
        reader.problem(section.line_of("scopes"), f"'web.oidc.scopes' must include openid, not {scopes!r}")
    return OidcSettings(
        issuer=issuer or "", client_id=client_id or "", client_secret_env=secret_env, client_secret_file=secret_file,
        claim=reader.text(section, "claim", "groups", p), roles=_oidc_roles(reader, section, at), scopes=scopes,
        ca_file=reader.relative(reader.text(section, "ca_file", None, p)),
        label=reader.text(section, "label", "Logga in med organisationens konto", p),
        id_token_algorithms=_oidc_algorithms(reader, section),
    )


def _oidc_algorithms(reader: Reader, section: LineDict) -> tuple[str, ...]:
    """web.oidc.id_token_algorithms: one name or a list, each a signature the provider's keys
    verify (OIDC_ALGORITHMS); default RS256, which every provider supports. Each wrong name is
    reported at its own line."""
    value = reader.get(section, "id_token_algorithms", (str, list), "RS256", "web.oidc.")
    names = [value] if isinstance(value, str) else list(value)
    if not names:
        reader.problem(section.line_of("id_token_algorithms"),
                       f"'web.oidc.id_token_algorithms' must name at least one of {', '.join(OIDC_ALGORITHMS)}")
    good = []
    for index, name in enumerate(names):
        if name in OIDC_ALGORITHMS:
            good.append(str(name))
            continue
        line = value.line_of(index) if isinstance(value, LineList) else section.line_of("id_token_algorithms")
        reader.problem(line, f"'web.oidc.id_token_algorithms': {name!r} is not allowed; use {', '.join(OIDC_ALGORITHMS)} "
                             "(never none, nor HS256 and its kin, which anyone holding the client secret can make)")
    return tuple(good) if good and len(good) == len(names) else ("RS256",)


def _oidc_roles(reader: Reader, section: LineDict, at: int) -> tuple[tuple[str, str], ...]:
    """web.oidc.roles: claim value -> editor, approver or operator, each problem at its line."""
    roles = reader.get(section, "roles", dict, None, "web.oidc.")
    if not roles:
        if roles is not None or section.get("roles") is None:  # (not a mapping at all: reader.get said so)
            reader.problem(section.line_of("roles") if "roles" in section else at,
                           "'web.oidc.roles' must map claim values to roles, e.g. "
                           "{rapport-redaktorer: editor, rapport-godkannare: approver}")
        return ()
    mapped = []
    for value, role in roles.items():
        line = roles.line_of(value) if isinstance(roles, LineDict) else section.line_of("roles")
        if not isinstance(value, str):
            reader.problem(line, f"'web.oidc.roles': the claim value {value!r} must be text; quote it")
        elif not isinstance(role, str) or Role.named(role) is None:
            reader.problem(line, f"'web.oidc.roles': {value!r} maps to {role!r}, which is not a role; "
                                 f"use one of {', '.join(Role)}")
        else:
            mapped.append((value, str(role)))
    return tuple(mapped)


def read_accessibility(reader: Reader, raw: LineDict) -> AccessibilitySettings:
    """The organisation's details for the accessibility statement."""
    section = reader.section(raw, "accessibility", ACCESSIBILITY_KEYS)
    p = "accessibility."
    gaps = reader.get(section, "known_gaps", list, [], p)
    if not all(isinstance(gap, str) and gap.strip() for gap in gaps):
        reader.problem(section.line_of("known_gaps"), "'accessibility.known_gaps' must be a list of sentences (what is not "
                                                      "accessible yet, and why)")
        gaps = []
    assessed = _date(reader, section, "assessed")
    reviewed = _date(reader, section, "reviewed")
    # Where a warning about the statement points: its section, or web: when it has none.
    reader.lines.setdefault("accessibility", raw.line_of("accessibility" if "accessibility" in raw else "web"))
    email = reader.text(section, "contact_email", None, p)
    if email is not None and "@" not in email:
        reader.problem(section.line_of("contact_email"), f"'accessibility.contact_email' must be an address, not {email!r}")
    return AccessibilitySettings(
        organisation=reader.text(section, "organisation", "Regionen", p), contact_email=email,
        contact_phone=reader.text(section, "contact_phone", None, p),
        response_days=int(reader.number(section, "response_days", int, 10, p, low=1, high=90, rule="working days from 1 to 90")),
        known_gaps=tuple(g.strip() for g in gaps), assessed=assessed, reviewed=reviewed,
        configured="accessibility" in raw,
    )


def _date(reader: Reader, section: LineDict, key: str) -> date | None:
    value = reader.get(section, key, (date, str), None, "accessibility.")
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            reader.problem(section.line_of(key), f"'accessibility.{key}' must be a date like 2026-12-01, not {value!r}")
            return None
    return value if isinstance(value, date) else None
