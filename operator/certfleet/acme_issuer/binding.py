"""External Account Binding (RFC 8555 7.3.4): the key id and HMAC key a CA's console hands
out (ZeroSSL, Google Trust Services, ...), validated before anything is signed with them.

Both come from a user (the resource and a Secret), so they are bounded and checked here: a
key id is printable text without spaces, the HMAC key base64url (RFC 4648 section 5, as the
CAs print it) of 16 to 1024 bytes. No message quotes the HMAC key.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from certfleet.acme_issuer.errors import AcmeError
from certfleet.api.reasons import CertificateReason

MAX_KEY_ID_LENGTH = 256
MIN_HMAC_BYTES = 16  # 128 bits; the CAs hand out 32 to 64 bytes
MAX_HMAC_BYTES = 1024
_KEY_ID = re.compile(rf"[A-Za-z0-9._~:+/=-]{{1,{MAX_KEY_ID_LENGTH}}}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


class ExternalAccountBindingError(AcmeError):
    """The binding's key id or HMAC key is missing, malformed, or refused by the CA."""

    reason = CertificateReason.ExternalAccountBindingInvalid


class ExternalAccountBindingRequiredError(AcmeError):
    """The CA registers accounts only with an external account binding, and none is set."""

    reason = CertificateReason.ExternalAccountBindingRequired


@dataclass(frozen=True)
class ExternalAccountBinding:
    """EAB credentials from the CA's console: key id and the base64url HMAC key."""

    kid: str
    hmac_key_b64url: str = field(repr=False)


def parse_binding(key_id: str, hmac_key: bytes | str) -> ExternalAccountBinding:
    """The binding, or ExternalAccountBindingError naming what to fix (never the key)."""
    if not _KEY_ID.fullmatch(key_id):
        raise ExternalAccountBindingError(
            "spec.acme.externalAccountBinding.keyID must be 1 to "
            f"{MAX_KEY_ID_LENGTH} printable characters without spaces, as the CA shows it"
        )
    text = hmac_key.decode("ascii", "replace") if isinstance(hmac_key, bytes) else hmac_key
    text = text.strip()
    if len(text) > MAX_HMAC_BYTES * 2 or not _BASE64URL.fullmatch(text):
        raise ExternalAccountBindingError(
            "the external account binding's HMAC key is not base64url text (A-Z, a-z, 0-9, "
            "'-' and '_'): paste the EAB HMAC key exactly as the CA shows it"
        )
    unpadded = text.rstrip("=")
    try:
        decoded = base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    except (binascii.Error, ValueError):
        raise ExternalAccountBindingError(
            "the external account binding's HMAC key is not valid base64url"
        ) from None
    if not MIN_HMAC_BYTES <= len(decoded) <= MAX_HMAC_BYTES:
        raise ExternalAccountBindingError(
            f"the external account binding's HMAC key holds {len(decoded)} bytes; a CA's "
            f"key holds {MIN_HMAC_BYTES} to {MAX_HMAC_BYTES}: is it the whole key?"
        )
    return ExternalAccountBinding(key_id, unpadded)
