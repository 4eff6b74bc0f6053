"""Certificates for the agent's unit tests: one CA and leaves for any name and period."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certfleet.core.facts import certificate_facts

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
DOMAIN = "www.example.com"


@dataclass(frozen=True)
class Pair:
    fullchain: bytes
    key: bytes
    certificate: x509.Certificate

    @property
    def serial(self) -> str:
        return certificate_facts(self.certificate).serial

    @property
    def sha256(self) -> str:
        return certificate_facts(self.certificate).sha256


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@functools.cache
def _ca(other: bool = False) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    common_name = "another unit test CA" if other else "agent unit test CA"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 3000 * DAY)  # covers the real clock too
        .not_valid_after(NOW + 3000 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def ca_pem(*, other: bool = False) -> bytes:
    """The test CA (or an unrelated one) as PEM, for trust files."""
    # Called exactly as leaf() calls it: functools.cache keys on the arguments as written.
    return (_ca(True) if other else _ca())[1].public_bytes(serialization.Encoding.PEM)


def leaf(
    domain: str = DOMAIN,
    *,
    not_before: datetime = NOW - DAY,
    not_after: datetime = NOW + 89 * DAY,
) -> Pair:
    """A leaf for `domain` signed by the test CA, with the CA after it (a full chain)."""
    ca_key, ca = _ca()
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    fullchain = certificate.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(
        serialization.Encoding.PEM
    )
    return Pair(fullchain, _pem_key(key), certificate)


def roots() -> tuple[x509.Certificate, ...]:
    """What the agent trusts in these tests: the test CA that leaf() signs with."""
    return (_ca()[1],)
