from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certfleet.acme_issuer import DEFAULT_KEY_ALGORITHM, KeyAlgorithm
from certfleet.acme_issuer.keys import generate_private_key, make_csr, private_key_pem


def test_the_values_are_what_users_write() -> None:
    assert [a.value for a in KeyAlgorithm] == [
        "ECDSA-P256",
        "ECDSA-P384",
        "RSA-2048",
        "RSA-3072",
        "RSA-4096",
    ]
    assert KeyAlgorithm("RSA-3072") is KeyAlgorithm.RSA_3072
    assert DEFAULT_KEY_ALGORITHM is KeyAlgorithm.ECDSA_P256
    with pytest.raises(ValueError):
        KeyAlgorithm("RSA-1024")


@pytest.mark.parametrize(
    ("algorithm", "key_type", "size", "curve"),
    [
        (KeyAlgorithm.ECDSA_P256, ec.EllipticCurvePrivateKey, 256, "secp256r1"),
        (KeyAlgorithm.ECDSA_P384, ec.EllipticCurvePrivateKey, 384, "secp384r1"),
        (KeyAlgorithm.RSA_2048, rsa.RSAPrivateKey, 2048, None),
        (KeyAlgorithm.RSA_3072, rsa.RSAPrivateKey, 3072, None),
        (KeyAlgorithm.RSA_4096, rsa.RSAPrivateKey, 4096, None),
    ],
)
def test_each_algorithm_gives_its_key_type_and_size(
    algorithm: KeyAlgorithm, key_type: type, size: int, curve: str | None
) -> None:
    pem = private_key_pem(generate_private_key(algorithm))

    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, key_type)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    assert key.key_size == size
    if isinstance(key, ec.EllipticCurvePrivateKey):
        assert key.curve.name == curve
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        assert key.public_key().public_numbers().e == 65537


def test_every_key_is_fresh() -> None:
    first = private_key_pem(generate_private_key(KeyAlgorithm.ECDSA_P256))
    assert first != private_key_pem(generate_private_key(KeyAlgorithm.ECDSA_P256))


def test_the_csr_carries_every_name_and_the_key() -> None:
    key = generate_private_key(KeyAlgorithm.ECDSA_P256)
    csr = x509.load_pem_x509_csr(make_csr(private_key_pem(key), ["a.example.com", "b.example.com"]))

    assert csr.is_signature_valid
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["a.example.com", "b.example.com"]
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert csr.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
