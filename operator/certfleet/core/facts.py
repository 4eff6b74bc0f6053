"""What the operator may show about a certificate: derived from the leaf, never from the key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from certfleet.core.keys import describe_key


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """A public summary of a leaf certificate, fit for a status field, an event or a log."""

    serial: str  # lowercase hex, even number of digits, as openssl prints it (without colons)
    sha256: str  # lowercase hex SHA-256 fingerprint of the DER certificate
    not_before: datetime  # timezone-aware UTC
    not_after: datetime  # timezone-aware UTC; the certificate is valid through this second
    dns_names: tuple[str, ...]
    subject: str  # RFC 4514
    issuer: str  # RFC 4514
    key: str  # e.g. "RSA-2048", "ECDSA-secp256r1"


def certificate_facts(leaf: x509.Certificate) -> CertificateFacts:
    serial = f"{leaf.serial_number:x}"
    return CertificateFacts(
        serial=serial.zfill(len(serial) + len(serial) % 2),
        sha256=fingerprint_sha256(leaf),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        dns_names=dns_names(leaf),
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        key=describe_key(leaf.public_key()),
    )


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the certificate's DER encoding."""
    return cert.fingerprint(hashes.SHA256()).hex()


def dns_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The subjectAltName DNS names, in certificate order; empty without the extension.

    The subject CN is deliberately ignored, as browsers ignore it (RFC 6125, CA/B BR).
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.value.get_values_for_type(x509.DNSName))
