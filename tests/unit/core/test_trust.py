"""Verified chains: each bad chain, as the policy sees it with trust roots, and its reason.

The trust check is cryptography's X.509 verifier (core.checks.check_trust); these rows are the
chains a person or an attacker could hand certfleet, and the reason each must be refused with
(or that it is fine: cross-signs, extra certificates, a root included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from certfleet.core.checks import Reason, check_trust
from certfleet.core.policy import Failure, Valid, evaluate
from certfleet.core.trust import (
    MAX_TRUST_BUNDLE_BYTES,
    TrustBundleError,
    combine,
    parse_trust_bundle,
)

from .certificates import DAY, NOW, Issued, ec_key, issue, key_pem, pem, pki

NAME = "shop.example.com"
EC = pki("ec")
OTHER = pki("ec", 1)  # a CA nobody trusts
ROOTS = (EC.root.cert,)


def leaf(issuer: Issued = EC.intermediate, name: str = NAME, **options: object) -> Issued:
    return issue(subject=name, key=ec_key(n=9), issuer=issuer, dns_names=[name], **options)  # type: ignore[arg-type]


def no_cert_sign() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


# A CA renamed its root: the new root B, and B cross-signed by the old root A (the way
# ISRG Root X1 was signed by DST Root CA X3). Clients trusting either reach the leaf.
ROOT_A = issue(subject="Old Root", key=ec_key(n=40), ca=True, not_before=NOW - 900 * DAY)
ROOT_B = issue(subject="New Root", key=ec_key(n=41), ca=True, not_before=NOW - 90 * DAY)
B_BY_A = issue(subject="New Root", key=ec_key(n=41), issuer=ROOT_A, ca=True)
CROSS_INTERMEDIATE = issue(subject="Issuing CA", key=ec_key(n=42), issuer=ROOT_B, ca=True)
WEAK_CA = issue(
    subject="CA that may not sign", key=ec_key(n=43), issuer=EC.root, ca=True,
    key_usage=no_cert_sign(),
)  # fmt: skip
EXPIRED_INTERMEDIATE = issue(
    subject=EC.intermediate.cert.subject.rfc4514_string().removeprefix("CN="),
    key=EC.intermediate.key,
    issuer=EC.root,
    ca=True,
    not_before=NOW - 100 * DAY,
    not_after=NOW - DAY,
)


@dataclass(frozen=True)
class Row:
    id: str
    chain: Sequence[Issued]
    reason: Reason | None  # None: valid
    fragment: str = ""
    roots: Sequence[x509.Certificate] = ROOTS
    key: object = field(default=None)


def rows() -> list[Row]:
    good = leaf()
    return [
        Row("valid", [good, EC.intermediate], None),
        Row("valid-root-included", [good, EC.intermediate, EC.root], None),
        Row(
            "valid-extra-certificate-after-the-path",
            [good, EC.intermediate, EC.root, OTHER.root],
            Reason.BrokenChain,  # the links are checked first: an unrelated tail is broken
            "was issued by",
        ),
        Row(
            "valid-cross-signed-trusting-the-old-root",
            [leaf(CROSS_INTERMEDIATE), CROSS_INTERMEDIATE, B_BY_A],
            None,
            roots=(ROOT_A.cert,),
        ),
        Row(
            "valid-cross-signed-trusting-the-new-root",
            [leaf(CROSS_INTERMEDIATE), CROSS_INTERMEDIATE, B_BY_A],
            None,
            roots=(ROOT_B.cert,),
        ),
        Row(
            "self-signed",
            [issue(subject=NAME, key=ec_key(n=9), dns_names=[NAME])],
            Reason.UntrustedChain,
            "does not lead to any of the 1 trusted root",
        ),
        Row(
            "leaf-only-for-a-ca-with-an-intermediate",
            [good],
            Reason.UntrustedChain,
            f"its top was issued by '{EC.intermediate.cert.subject.rfc4514_string()}'",
        ),
        Row("reversed-chain", [EC.root, EC.intermediate, good], Reason.BrokenChain, "reverse"),
        Row(
            "client-auth-only",
            [leaf(usages=[ExtendedKeyUsageOID.CLIENT_AUTH]), EC.intermediate],
            Reason.NotForServers,
            "does not include serverAuth",
        ),
        Row(
            "ca-true-leaf",
            [leaf(ca=True), EC.intermediate],
            Reason.NotForServers,
            "CA:TRUE",
        ),
        Row(
            "expired-leaf",
            [leaf(not_before=NOW - 100 * DAY, not_after=NOW - DAY), EC.intermediate],
            Reason.Expired,
            "the leaf certificate expired",
        ),
        Row(
            "not-yet-valid-leaf",
            [leaf(not_before=NOW + DAY, not_after=NOW + 90 * DAY), EC.intermediate],
            Reason.NotYetValid,
            "the leaf certificate is not valid before",
        ),
        Row(
            "expired-intermediate",
            [leaf(EXPIRED_INTERMEDIATE, not_before=NOW - 50 * DAY), EXPIRED_INTERMEDIATE],
            Reason.Expired,
            "certificate 2 of the chain",
        ),
        Row(
            "wrong-name",
            [leaf(name="other.example.com"), EC.intermediate],
            Reason.NameMismatch,
            "does not cover shop.example.com",
        ),
        Row(
            "wrong-key",
            [good, EC.intermediate],
            Reason.KeyMismatch,
            "does not belong",
            key=ec_key(n=8),
        ),
        Row(
            "an-untrusted-cas-chain",
            [leaf(OTHER.intermediate), OTHER.intermediate, OTHER.root],
            Reason.UntrustedChain,
            "does not lead",
        ),
        Row(
            "issuer-may-not-sign-certificates",
            [leaf(WEAK_CA), WEAK_CA],
            Reason.UntrustedChain,
            "keyCertSign",
        ),
        Row(
            "intermediate-is-not-a-ca",
            [leaf(leaf(name="fake-ca.example.com")), leaf(name="fake-ca.example.com")],
            Reason.BrokenChain,
            "is not a CA certificate",
        ),
        Row("empty-trust-bundle", [good, EC.intermediate], Reason.UntrustedChain, "empty", ()),
    ]


ROWS = rows()


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_each_chain_gets_its_reason(row: Row) -> None:
    key = row.key or row.chain[0].key
    verdict = evaluate(
        pem(*(issued.cert for issued in row.chain)),
        key_pem(key),  # type: ignore[arg-type]
        names=[NAME],
        now=NOW,
        trust_roots=row.roots,
    )
    if row.reason is None:
        assert isinstance(verdict, Valid), verdict
    else:
        assert isinstance(verdict, Failure), verdict
        assert verdict.reason is row.reason, verdict
        assert row.fragment in verdict.message, verdict.message


def test_without_roots_an_untrusted_chain_passes_and_with_them_it_does_not() -> None:
    """The trust check is the only difference: nothing else refuses another CA's chain."""
    chain = [leaf(OTHER.intermediate).cert, OTHER.intermediate.cert]
    assert check_trust(chain, ROOTS, NOW, NAME) is not None
    assert check_trust(chain, (OTHER.root.cert,), NOW, NAME) is None


def test_a_wildcard_name_is_verified_through_a_name_it_covers() -> None:
    wildcard = issue(
        subject="*.example.com",
        key=ec_key(n=9),
        issuer=EC.intermediate,
        dns_names=["*.example.com"],
    )
    assert check_trust([wildcard.cert, EC.intermediate.cert], ROOTS, NOW, "*.example.com") is None


def test_an_expired_root_in_the_bundle_is_reported_as_expired() -> None:
    old_root = issue(
        subject="Short Root", key=ec_key(n=44), ca=True, not_before=NOW - 90 * DAY,
        not_after=NOW - DAY,
    )  # fmt: skip
    issued = leaf(old_root, not_before=NOW - 50 * DAY, not_after=NOW + 50 * DAY)
    found = check_trust([issued.cert], (old_root.cert,), NOW, NAME)
    assert found is not None and found.reason is Reason.Expired
    assert "'CN=Short Root'" in found.message


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check_trust([leaf().cert], ROOTS, NOW.replace(tzinfo=None), NAME)


# --- bundles --------------------------------------------------------------------------------


def test_a_bundle_parses_to_its_certificates() -> None:
    assert parse_trust_bundle(pem(EC.root.cert, OTHER.root.cert), "x") == (
        EC.root.cert,
        OTHER.root.cert,
    )


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "not a list of PEM certificates"),
        (b"garbage", "not a list of PEM certificates"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a list"),
        (b"x" * (MAX_TRUST_BUNDLE_BYTES + 1), "more than the"),
    ],
    ids=["empty", "garbage", "bad-base64-der", "huge"],
)
def test_a_bad_bundle_is_refused_without_quoting_it(data: bytes, problem: str) -> None:
    with pytest.raises(TrustBundleError, match=problem) as raised:
        parse_trust_bundle(data, "the-source")
    assert "the-source" in str(raised.value)
    assert "garbage" not in str(raised.value)


def test_combined_roots_keep_their_order_once_each() -> None:
    assert combine([EC.root.cert], [OTHER.root.cert, EC.root.cert]) == (
        EC.root.cert,
        OTHER.root.cert,
    )
