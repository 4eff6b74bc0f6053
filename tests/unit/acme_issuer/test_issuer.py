"""What AcmeIssuer decides before it talks to any CA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import metadata

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certfleet.acme_issuer import (
    AcmeError,
    AcmeIssuer,
    AcmeRejectedError,
    AcmeUnavailableError,
    ChallengeStore,
    ExternalAccountBinding,
    InMemoryAccountStore,
    IssuedCertificate,
    KeyAlgorithm,
)
from certfleet.acme_issuer import issuer as issuer_module
from certfleet.acme_issuer.issuer import _check_certificate
from certfleet.acme_issuer.keys import generate_private_key, private_key_pem

# Nothing listens here: a test that reached the network would fail with AcmeUnavailableError.
UNREACHABLE = "https://127.0.0.1:9/directory"


def _issuer(**options: object) -> AcmeIssuer:
    return AcmeIssuer(UNREACHABLE, InMemoryAccountStore(), ChallengeStore(), **options)  # type: ignore[arg-type]


def test_wildcards_are_refused_before_any_order() -> None:
    with pytest.raises(AcmeRejectedError, match=r"\*\.example\.com.*DNS-01"):
        _issuer().issue(["www.example.com", "*.example.com"])


@pytest.mark.parametrize("names", [[], [""], [" ", "."]])
def test_no_names_is_a_programming_error(names: list[str]) -> None:
    with pytest.raises(ValueError, match="no names"):
        _issuer().issue(names)


def test_the_deadline_must_be_positive() -> None:
    with pytest.raises(ValueError, match="deadline"):
        _issuer().issue(["www.example.com"], deadline=0)


def test_secrets_stay_out_of_reprs() -> None:
    binding = ExternalAccountBinding(kid="kid-1", hmac_key_b64url="c2VjcmV0LWhtYWM")
    assert "c2VjcmV0LWhtYWM" not in repr(binding)
    issued = IssuedCertificate(fullchain_pem=b"CHAIN", private_key_pem=b"PRIVATE")
    assert "PRIVATE" not in repr(issued)


def test_a_binding_can_be_given_as_a_pair() -> None:
    issuer = _issuer(external_account_binding=("kid-1", "c2VjcmV0"))
    assert issuer.external_account_binding == ExternalAccountBinding("kid-1", "c2VjcmV0")


def test_the_user_agent_names_certfleet_and_the_library() -> None:
    agent = _issuer().user_agent
    assert agent.startswith("certfleet/")
    assert "acme-python/" in agent


def _self_signed(key_pem: bytes, names: list[str]) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem() -> bytes:
    return private_key_pem(generate_private_key(KeyAlgorithm.ECDSA_P256))


def test_a_certificate_with_our_key_and_names_passes() -> None:
    key_pem = _key_pem()
    chain = _self_signed(key_pem, ["a.example.com", "B.example.com"])
    _check_certificate(chain, key_pem, ["a.example.com", "b.example.com"], "a.example.com")


def test_a_certificate_for_another_key_is_refused() -> None:
    chain = _self_signed(_key_pem(), ["a.example.com"])
    with pytest.raises(AcmeError, match="another key") as refused:
        _check_certificate(chain, _key_pem(), ["a.example.com"], "a.example.com")
    assert "PRIVATE" not in str(refused.value)


def test_a_certificate_missing_a_name_is_refused() -> None:
    key_pem = _key_pem()
    chain = _self_signed(key_pem, ["a.example.com"])
    with pytest.raises(AcmeError, match=r"without b\.example\.com"):
        _check_certificate(chain, key_pem, ["a.example.com", "b.example.com"], "a.example.com")


def test_something_that_is_no_certificate_is_refused() -> None:
    with pytest.raises(AcmeError, match="no usable certificate"):
        _check_certificate(b"<html>oops</html>", _key_pem(), ["a.example.com"], "a.example.com")


def test_an_unreachable_ca_is_unavailable_and_the_tokens_stay_clean() -> None:
    store = ChallengeStore()
    issuer = AcmeIssuer(UNREACHABLE, InMemoryAccountStore(), store)
    with pytest.raises(AcmeUnavailableError, match=r"at directory for www\.example\.com"):
        issuer.issue(["www.example.com"], deadline=10)
    assert len(store) == 0


def test_the_package_metadata_is_read_once_not_per_issuer(monkeypatch: pytest.MonkeyPatch) -> None:
    issuer_module._default_user_agent.cache_clear()
    calls: list[str] = []
    real = metadata.version

    def version(name: str) -> str:
        calls.append(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)
    agents = {_issuer().user_agent for _ in range(5)}
    assert len(agents) == 1
    assert len(calls) <= 2  # certfleet's and acme's version, once
