"""Certificate private keys (a fresh one per issuance) and the CSR that carries the names."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from acme import crypto_util
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes


class KeyAlgorithm(StrEnum):
    """The key types certfleet issues certificates for; values are what users write."""

    ECDSA_P256 = "ECDSA-P256"
    ECDSA_P384 = "ECDSA-P384"
    RSA_2048 = "RSA-2048"
    RSA_3072 = "RSA-3072"
    RSA_4096 = "RSA-4096"


# Small, fast handshakes, and accepted by every client that matters today.
DEFAULT_KEY_ALGORITHM = KeyAlgorithm.ECDSA_P256

_CURVES: dict[KeyAlgorithm, ec.EllipticCurve] = {
    KeyAlgorithm.ECDSA_P256: ec.SECP256R1(),
    KeyAlgorithm.ECDSA_P384: ec.SECP384R1(),
}
_RSA_BITS: dict[KeyAlgorithm, int] = {
    KeyAlgorithm.RSA_2048: 2048,
    KeyAlgorithm.RSA_3072: 3072,
    KeyAlgorithm.RSA_4096: 4096,
}


def generate_private_key(algorithm: KeyAlgorithm) -> CertificateIssuerPrivateKeyTypes:
    if algorithm in _CURVES:
        return ec.generate_private_key(_CURVES[algorithm])
    return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[algorithm])


def private_key_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    """Unencrypted PEM PKCS#8: what webservers read as privkey.pem (encryption at rest is the
    datastore's job)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_csr(key_pem: bytes, names: Sequence[str]) -> bytes:
    """A PEM CSR for `names` (all as subjectAltNames), signed with the key in `key_pem`."""
    return crypto_util.make_csr(key_pem, list(names))
