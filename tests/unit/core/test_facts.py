"""The public summary of a leaf certificate."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes

from certfleet.core.facts import certificate_facts, dns_names

from .certificates import DAY, NOW, ec_key, issue, pki, rsa_key


def test_facts_describe_the_leaf() -> None:
    ca = pki("ec")
    leaf = issue(
        subject="example.com",
        key=ec_key(n=9),
        issuer=ca.intermediate,
        dns_names=["example.com", "www.example.com"],
        serial=0xABC,
        not_before=NOW - DAY,
        not_after=NOW + 89 * DAY,
    )
    facts = certificate_facts(leaf.cert)
    assert facts.serial == "0abc"  # even number of digits, as openssl prints serials
    assert facts.sha256 == leaf.cert.fingerprint(hashes.SHA256()).hex()
    assert len(facts.sha256) == 64
    assert facts.not_before == NOW - DAY
    assert facts.not_after == NOW + 89 * DAY
    assert facts.dns_names == ("example.com", "www.example.com")
    assert facts.subject == "CN=example.com"
    assert facts.issuer == "CN=Test Intermediate ec 0"
    assert facts.key == "ECDSA-secp256r1"


def test_serial_digits_are_kept_even() -> None:
    leaf = issue(subject="x", key=rsa_key(), serial=0x1234)
    assert certificate_facts(leaf.cert).serial == "1234"
    assert certificate_facts(leaf.cert).key == "RSA-2048"


def test_no_subject_alternative_names_means_no_dns_names() -> None:
    # The CN is not a DNS name to certfleet, as it is not to browsers.
    assert dns_names(issue(subject="example.com", key=rsa_key()).cert) == ()
