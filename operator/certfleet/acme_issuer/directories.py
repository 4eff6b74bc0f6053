"""Which ACME directory `spec.acme.server` names: a well-known CA by name, or an https:// URL."""

from __future__ import annotations

from types import MappingProxyType
from urllib.parse import urlsplit

from certfleet.acme_issuer.errors import InvalidAcmeServerError

KNOWN_DIRECTORIES = MappingProxyType(
    {
        "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
        "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
        "zerossl": "https://acme.zerossl.com/v2/DV90",
    }
)
DEFAULT_SERVER = "letsencrypt"


def resolve_directory_url(server: str | None) -> str:
    """The directory URL for a server name or URL; None or blank means Let's Encrypt."""
    value = (server or "").strip() or DEFAULT_SERVER
    known = KNOWN_DIRECTORIES.get(value.lower())
    if known is not None:
        return known
    names = ", ".join(KNOWN_DIRECTORIES)
    try:
        parts = urlsplit(value)
        port = parts.port  # parses, so a malformed port is refused here, not at issuance
    except ValueError:
        parts, port = None, None
    # Plain http would let anyone on the path read and alter the ACME exchange.
    if parts is None or parts.scheme.lower() != "https" or not parts.hostname:
        raise InvalidAcmeServerError(
            f"ACME server {_shown(value)} is not one of {names} nor an https:// directory URL"
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidAcmeServerError("an ACME directory URL must not carry credentials")
    if any(ch.isspace() for ch in value) or port == 0:
        raise InvalidAcmeServerError(f"ACME directory URL {_shown(value)} is malformed")
    return value


def _shown(value: str) -> str:
    # The value comes from a user's resource: quote it, bounded, so a status stays readable.
    return repr(value[:200] + ("..." if len(value) > 200 else ""))
