"""Key types certfleet handles, and how to describe and compare them without revealing them."""

from __future__ import annotations

from typing import TypeAlias

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)

# Keys that can sign a TLS handshake. Whether one is *acceptable* is a policy check
# (checks.check_key_strength); parsing only refuses what cannot be a server key at all.
PrivateKey: TypeAlias = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


def as_server_key(key: PrivateKeyTypes) -> PrivateKey | None:
    """Narrow a key loaded by cryptography to the types a TLS server can use, or None."""
    if isinstance(
        key,
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        return key
    return None


def public_key_info(key: CertificatePublicKeyTypes) -> bytes:
    """DER SubjectPublicKeyInfo: equal bytes mean the same public key, whatever its type."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def describe_key(key: CertificatePublicKeyTypes | PrivateKey) -> str:
    """A short public description such as ``RSA-2048`` or ``ECDSA-secp256r1``."""
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"ECDSA-{key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey | ed448.Ed448PrivateKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA-{key.key_size}"
    return type(key).__name__
