"""The config's dkim: section: which domain and selector sign, and the file that holds the key.

Only names are read here. The key file itself is read (its permissions checked, the key
parsed) when a message is prepared: `dispatch status` run by an operator who may not read
the service's private key must still work.
"""

from __future__ import annotations

import re

from dispatch.config.reader import Reader
from dispatch.config.settings import DKIM_KEYS, FQDN, DkimSettings
from dispatch.config.yamlsource import LineDict

# RFC 6376 3.1: a selector is one or more DNS labels separated by dots.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
SELECTOR = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")


def read_dkim(reader: Reader, raw: LineDict) -> DkimSettings | None:
    section = reader.section(raw, "dkim", DKIM_KEYS, reported=("key", "private_key"))
    if not isinstance(raw.get("dkim"), LineDict):
        return None
    p = "dkim."
    at = raw.line_of("dkim")  # where a missing key would go
    for inline in ("key", "private_key"):
        if inline in section:  # the value is never read, so no message can show it
            reader.problem(section.line_of(inline), f"secrets do not belong in the config file: remove '{inline}' and "
                                                    "set 'key_file' (a file only the user running dispatch can read)")
    domain = reader.text(section, "domain", None, p)
    if domain is None:
        reader.problem(at, "'dkim' needs 'domain' (the d= of the signature, e.g. the domain of sender.from)")
    elif not FQDN.match(domain) or domain.startswith("["):
        reader.problem(section.line_of("domain"), f"'dkim.domain' must be a domain name like example.org, not {domain!r}")
    selector = reader.text(section, "selector", None, p)
    if selector is None:
        reader.problem(at, "'dkim' needs 'selector' (the s= of the signature: the public key is published as "
                           "a TXT record at SELECTOR._domainkey.DOMAIN)")
    elif not SELECTOR.match(selector):
        reader.problem(section.line_of("selector"), "'dkim.selector' must be a DNS label (letters, digits and '-', "
                                                    f"dot-separated), not {selector!r}")
    key_file = reader.relative(reader.text(section, "key_file", None, p))
    if key_file is None:
        reader.problem(at, "'dkim' needs 'key_file' (the private key in PEM, readable by the user running dispatch only)")
    if domain is None or selector is None or key_file is None:
        return None
    return DkimSettings(domain=domain, selector=selector, key_file=key_file)
