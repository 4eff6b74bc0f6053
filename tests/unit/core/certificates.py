"""Certificates made on the spot for the tests: a CA, an intermediate and leaves.

Keys are cached (RSA generation is slow); certificates are cheap and made per test.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from certfleet.core.keys import PrivateKey

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
Kind = Literal["rsa", "ec"]


@functools.cache
def rsa_key(bits: int = 2048, n: int = 0) -> rsa.RSAPrivateKey:
    """The n-th RSA key of that size (cached: several tests need distinct keys)."""
    del n  # only part of the cache key
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.cache
def ec_key(curve: str = "secp256r1", n: int = 0) -> ec.EllipticCurvePrivateKey:
    del n
    curves: dict[str, ec.EllipticCurve] = {
        "secp256r1": ec.SECP256R1(),
        "secp384r1": ec.SECP384R1(),
        "secp521r1": ec.SECP521R1(),
        "secp256k1": ec.SECP256K1(),
    }
    return ec.generate_private_key(curves[curve])


def key_of(kind: Kind, n: int = 0) -> PrivateKey:
    return rsa_key(2048, n) if kind == "rsa" else ec_key("secp256r1", n)


@functools.cache
def ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: PrivateKey


def issue(
    *,
    subject: str,
    key: PrivateKey,
    issuer: Issued | None = None,
    dns_names: Sequence[str] = (),
    not_before: datetime = NOW - 30 * DAY,
    not_after: datetime = NOW + 60 * DAY,
    ca: bool = False,
    serial: int | None = None,
    usages: Sequence[x509.ObjectIdentifier] | None = None,
    key_usage: x509.KeyUsage | None = None,
) -> Issued:
    """A certificate for ``key``, signed by ``issuer`` (self-signed when None)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    signer_name = issuer.cert.subject if issuer else name
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(signer_name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    algorithm = None if isinstance(signer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return Issued(builder.sign(signer_key, algorithm), key)


@dataclass(frozen=True)
class Pki:
    root: Issued
    intermediate: Issued

    def leaf(
        self,
        *names: str,
        key: PrivateKey | None = None,
        not_before: datetime = NOW - 30 * DAY,
        not_after: datetime = NOW + 60 * DAY,
    ) -> Issued:
        return issue(
            subject=names[0] if names else "no-name",
            key=key if key is not None else leaf_key(self.intermediate),
            issuer=self.intermediate,
            dns_names=names,
            not_before=not_before,
            not_after=not_after,
        )


def leaf_key(issuer: Issued) -> PrivateKey:
    """The default leaf key: the issuer's algorithm, distinct from every CA key (n=9)."""
    return rsa_key(2048, 9) if isinstance(issuer.key, rsa.RSAPrivateKey) else ec_key(n=9)


@functools.cache
def pki(kind: Kind = "rsa", n: int = 0) -> Pki:
    """A root and an intermediate valid five years either side of NOW."""
    root = issue(
        subject=f"Test Root {kind} {n}",
        key=key_of(kind, 2 * n + 10),
        ca=True,
        not_before=NOW - 5 * 365 * DAY,
        not_after=NOW + 5 * 365 * DAY,
    )
    intermediate = issue(
        subject=f"Test Intermediate {kind} {n}",
        key=key_of(kind, 2 * n + 11),
        issuer=root,
        ca=True,
        not_before=NOW - 5 * 365 * DAY,
        not_after=NOW + 5 * 365 * DAY,
    )
    return Pki(root, intermediate)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key: PrivateKey, fmt: Literal["pkcs8", "traditional", "encrypted"] = "pkcs8") -> bytes:
    """PKCS#8, or traditional (PKCS#1 for RSA, SEC1 for EC), or encrypted PKCS#8."""
    formats = {
        "pkcs8": serialization.PrivateFormat.PKCS8,
        "traditional": serialization.PrivateFormat.TraditionalOpenSSL,
        "encrypted": serialization.PrivateFormat.PKCS8,
    }
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(b"secret")
        if fmt == "encrypted"
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, formats[fmt], encryption)
