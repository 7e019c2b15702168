"""The validated, immutable settings (what config.py reads config.yaml into)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

from dispatch.errors import display_path

DEFAULT_RETRY_MINUTES = (1, 2, 5, 10, 30)
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# A name with at least one dot, of labels that start and end with a letter or digit; or an
# address literal. Relays (and spam filters) look for a dot: a bare host name ('vm') fails.
FQDN = re.compile(r"^(?=.{4,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}$"
                  r"|^\[(?:\d{1,3}(?:\.\d{1,3}){3}|IPv6:[0-9A-Fa-f:.]+)\]$")

# The keys each mapping of the config may hold; any other key is reported with the
# nearest of these as a hint. bounces, web, sender.return_path and sender.verp are the
# design contract's (docs: ../shared/DESIGN.md), known here before their features exist.
TOP_KEYS = (
    "timezone", "reports_dir", "recipients_dir", "templates_dir", "ledger", "lease_seconds", "ledger_timeouts", "approval",
    "sender", "transport", "notify", "publish", "schedules", "report", "bounces", "web", "accessibility", "dkim",
    "directories", "sync_minutes",
)
LEDGER_TIMEOUT_KEYS = ("lock_seconds", "statement_seconds", "idle_in_transaction_seconds", "keepalive_seconds",
                        "connect_seconds")
SENDER_KEYS = ("from", "reply_to", "return_path", "verp")
TRANSPORT_KEYS = (
    "kind", "path", "host", "port", "security", "username", "password_env", "password_file", "auth",
    "token_command", "ca_file", "connections", "rate_per_minute", "recipients_per_message",
    "timeout_seconds", "retry_minutes", "retry_window_hours", "ehlo_name",
)
REPORT_KEYS = ("title", "subject", "headline_subject", "preheader", "list_id", "standing_sections")
STANDING_KEYS = ("heading", "markdown", "urgent", "in_email")
PUBLISH_KEYS = ("dir", "base_url", "on_send")
DKIM_KEYS = ("domain", "selector", "key_file")
SCHEDULE_KEYS = ("name", "cron", "lists", "deadline", "approval_deadline")
BOUNCES_KEYS = (
    "host", "port", "security", "username", "password_env", "password_file", "auth", "token_command",
    "ca_file", "folder", "processed_folder", "quarantine_folder", "max_message_bytes", "interval_minutes",
)
WEB_KEYS = ("listen", "base_url", "idle_minutes", "absolute_hours", "session_secret_env", "session_secret_file",
             "forwarded_allow_ips", "local_accounts", "password_hashing", "password_check_memory_mb", "oidc")
# directories: NAME: {kind: ldap, ...} or {kind: graph, ...} (config/directories.py reads them)
LDAP_KEYS = ("kind", "url", "bind_dn", "password_env", "password_file", "base_dn", "ca_file", "timeout_seconds")
GRAPH_KEYS = ("kind", "tenant_id", "client_id", "client_secret_env", "client_secret_file", "authority", "graph_url",
              "ca_file", "timeout_seconds")
# The argon2id profiles for console passwords (app.passwords makes the hashers): "standard" is
# RFC 9106's second recommended profile, "light" OWASP's minimum for argon2id.
PASSWORD_HASHING = ("standard", "light")
OIDC_KEYS = ("issuer", "client_id", "client_secret_env", "client_secret_file", "claim", "roles", "scopes", "ca_file",
              "label", "id_token_algorithms")
# The ID token signatures web.oidc.id_token_algorithms may name: the provider's published keys
# verify them. Never "none" (no signature), nor HS256 and kin (keyed with the client secret,
# which the console also holds, so they prove nothing about who made the token).
OIDC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


@dataclass(frozen=True)
class Sender:
    name: str
    address: str
    reply_to: str | None
    return_path: str | None = None  # envelope sender for bounces (None: the From address)
    verp: bool = False

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


@dataclass(frozen=True)
class TransportSettings:
    kind: str = "maildir"
    path: Path = Path("var/outbox")
    host: str = "127.0.0.1"
    port: int = 25
    security: str = "none"
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    auth: str = "password"
    token_command: str | None = None
    ca_file: Path | None = None
    connections: int = 1
    rate_per_minute: int = 0
    recipients_per_message: int = 1
    timeout_seconds: float = 60.0
    retry_minutes: tuple[float, ...] = DEFAULT_RETRY_MINUTES
    retry_window_hours: float = 24.0
    # The name given in EHLO (RFC 5321 4.1.1.1: fully qualified): the configured one, or ""
    # for the transport to choose when it is made (the system's name, else ``ehlo_fallback``,
    # the sender's domain). Not looked up here: the lookup may ask DNS, which every command
    # would then wait for, `status` included.
    ehlo_name: str = ""
    ehlo_fallback: str = ""

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Schedule:
    name: str
    cron: str
    lists: tuple[str, ...]
    deadline: str | None = None
    approval_deadline: str | None = None


@dataclass(frozen=True)
class StandingSection:
    heading: str
    markdown: str
    # Urgent messages carry only the standing sections marked for them, optionally shortened.
    urgent_markdown: str | None = None
    # False: on the intranet page only (reference a reader looks up there, not every day in the inbox).
    in_email: bool = True


@dataclass(frozen=True)
class ReportSettings:
    title: str
    subject: str
    preheader: str
    list_id: str
    standing_sections: tuple[StandingSection, ...]
    # The subject of an edition whose front matter has a 'headline' (the day's news).
    headline_subject: str = "{{ date_short }}: {{ headline }}"


@dataclass(frozen=True)
class PublishSettings:
    dir: Path
    base_url: str | None
    on_send: bool = False


@dataclass(frozen=True)
class DkimSettings:
    """DKIM signing of every report message (off without a dkim: section). The private key
    itself is never here: only the file that holds it, read when a message is prepared."""

    domain: str  # d=: the TXT record is at SELECTOR._domainkey.DOMAIN
    selector: str  # s=
    key_file: Path  # PEM, PKCS#1 or PKCS#8, the owner's only (0600)


@dataclass(frozen=True)
class BounceSettings:
    """The bounce mailbox, read over IMAP by `dispatch bounces` and every ``interval_minutes``
    by `serve`. The password itself is never here (password_env, password_file or a token)."""

    host: str | None = None
    port: int = 993
    security: str = "tls"
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    auth: str = "password"
    token_command: str | None = None
    ca_file: Path | None = None
    folder: str = "INBOX"
    processed_folder: str | None = None  # None: "Processed"
    quarantine_folder: str = "Quarantine"  # what cannot be read: too large, nested too deep
    max_message_bytes: int = 1_000_000  # read at most this much of a message; a longer one is quarantined
    interval_minutes: float = 15


@dataclass(frozen=True)
class OidcSettings:
    """Single sign-on with OpenID Connect (the organisation's identity provider, e.g. Entra ID).
    The client secret itself is never here: only where to read it (environment or file)."""

    issuer: str  # discovery at ISSUER/.well-known/openid-configuration
    client_id: str
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    claim: str = "groups"  # the claim that holds the user's groups or roles
    roles: tuple[tuple[str, str], ...] = ()  # (claim value, console role); a tuple keeps the settings immutable
    scopes: str = "openid profile email"
    ca_file: Path | None = None  # a private CA for the provider's TLS (added to the system's; TLS is always verified)
    label: str = "Logga in med organisationens konto"  # the sign-in page's button
    # The only signatures an ID token may carry, whatever the provider's discovery document lists
    # (a document that lists "none" must not make an unsigned token acceptable).
    id_token_algorithms: tuple[str, ...] = ("RS256",)


@dataclass(frozen=True)
class WebSettings:
    """The editor console (``dispatch web``, or hosted by ``serve``)."""

    listen: str = "127.0.0.1:8025"
    base_url: str | None = None  # https://... makes the session cookie Secure
    idle_minutes: float = 30  # a session unused this long ends (the page warns before)
    absolute_hours: float = 10  # and any session ends this long after sign-in
    session_secret_env: str | None = None  # the key that signs sessions; shared by every node
    session_secret_file: Path | None = None  # (neither: one is made in the state directory)
    forwarded_allow_ips: str | None = None  # the reverse proxy whose X-Forwarded-* headers are trusted
    local_accounts: bool = True  # sign-in with the console's own accounts (break-glass beside SSO)
    password_hashing: str = "standard"  # the argon2id profile for new hashes (app.passwords.HASHING)
    password_check_memory_mb: int = 128  # memory for password checks at once (64 MiB each; app.passwords)
    oidc: OidcSettings | None = None  # None: no single sign-on

    @property
    def secure(self) -> bool:
        return bool(self.base_url and self.base_url.startswith("https://"))


ACCESSIBILITY_KEYS = ("organisation", "contact_email", "contact_phone", "response_days", "known_gaps", "assessed",
                      "reviewed")


@dataclass(frozen=True)
class LdapDirectory:
    """A directory read over LDAP (Active Directory, OpenLDAP): ``ldaps://``, or ``ldap://`` with
    StartTLS; certificates always verified (``ca_file`` adds a private CA). The bind password is
    never here: only where to find it (``password_env`` or ``password_file``)."""

    name: str  # the key under directories:
    url: str
    bind_dn: str
    base_dn: str
    password_env: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    timeout_seconds: float = 30.0
    kind: str = "ldap"


@dataclass(frozen=True)
class GraphDirectory:
    """Microsoft Entra ID through Microsoft Graph, with the client-credentials flow. The client
    secret is never here: only where to find it. ``authority`` and ``graph_url`` are overridable
    for national clouds (and for the tests' local server)."""

    name: str  # the key under directories:
    tenant_id: str
    client_id: str
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    authority: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    ca_file: Path | None = None
    timeout_seconds: float = 30.0
    kind: str = "graph"


@dataclass(frozen=True)
class AccessibilitySettings:
    """The organisation's details for the accessibility statement ("tillgänglighetsredogörelse")
    the console and the intranet copy publish; the statement's structure is the program's."""

    organisation: str = "Regionen"
    contact_email: str | None = None
    contact_phone: str | None = None
    response_days: int = 10  # working days to answer a report of a problem
    known_gaps: tuple[str, ...] = ()
    assessed: date | None = None  # when the service was last assessed
    reviewed: date | None = None  # when the statement was last reviewed ("uppdaterades senast"); None: the config's date
    configured: bool = False  # the config has an accessibility: section

    @property
    def has_contact(self) -> bool:
        """The statement names a way to report a problem (the law asks for one)."""
        return bool(self.contact_email or self.contact_phone)


@dataclass(frozen=True)
class LedgerTimeouts:
    """``ledger_timeouts:``: limits on the service's own PostgreSQL sessions, in seconds (0: none)."""

    lock_seconds: float = 2.0  # a lock wait gives up (adding recipients tries again)
    statement_seconds: float = 120.0
    idle_in_transaction_seconds: float = 15.0  # a frozen node's session ends, its locks with it
    keepalive_seconds: float = 30.0  # TCP keepalives on both ends; a vanished peer is dropped in about twice this
    connect_seconds: float = 10.0


@dataclass(frozen=True)
class Settings:
    path: Path
    timezone: ZoneInfo
    reports_dir: Path
    recipients_dir: Path
    templates_dir: Path
    ledger_url: str
    sender: Sender
    transport: TransportSettings
    report: ReportSettings
    publish: PublishSettings
    notify: tuple[str, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    lease_seconds: float = 600.0  # claimed rows return to the queue this long after a node stops renewing
    ledger_timeouts: LedgerTimeouts = field(default_factory=lambda: LedgerTimeouts())  # PostgreSQL only
    approval: str = "front_matter"  # or "four_eyes": a recorded approval of the current content by another person
    bounces: BounceSettings | None = None  # None: no bounces: section
    web: WebSettings | None = None  # None: no web: section
    dkim: DkimSettings | None = None  # None: no dkim: section, messages go out unsigned
    accessibility: AccessibilitySettings = field(default_factory=AccessibilitySettings)
    directories: dict[str, LdapDirectory | GraphDirectory] = field(default_factory=dict)  # directories: by name
    sync_minutes: float = 60.0  # serve syncs directory lists this often (and 30 minutes before each slot)
    line_of: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def scheduled_lists(self) -> tuple[str, ...]:
        """Every list named in any schedule, in first-seen order."""
        seen: dict[str, None] = {}
        for schedule in self.schedules:
            for name in schedule.lists:
                seen.setdefault(name)
        return tuple(seen)

    def where(self, dotted_key: str) -> str:
        """``config.yaml:LINE`` of a key, for messages about its value."""
        return f"{display_path(self.path)}:{self.line_of.get(dotted_key, 1)}"


def default_templates_dir() -> Path:
    """The templates shipped inside the wheel, or those of a source checkout."""
    packaged = Path(__file__).resolve().parents[1] / "_templates" / "email"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "templates" / "email"
