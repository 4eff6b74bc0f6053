"""Each check alone: what passes, what fails, with which reason and message."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from cryptography import x509

from certfleet.core.checks import (
    Finding,
    Reason,
    check_chain_links,
    check_expired,
    check_key_matches,
    check_key_strength,
    check_names,
    check_not_yet_valid,
    check_trust,
)
from certfleet.core.errors import InvalidDomainError
from certfleet.core.keys import PrivateKey

from .certificates import (
    DAY,
    NOW,
    Kind,
    ec_key,
    ed25519_key,
    issue,
    key_pem,
    pki,
    rsa_key,
)

RSA = pki("rsa")
EC = pki("ec")
KINDS: list[Kind] = ["rsa", "ec"]


def assert_finding(found: Finding | None, reason: Reason, *fragments: str) -> None:
    assert found is not None, f"expected {reason}"
    assert found.reason is reason
    for fragment in fragments:
        assert fragment in found.message


# --- key matches the leaf ---------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_own_key_matches(kind: Kind) -> None:
    leaf = pki(kind).leaf("example.com")
    assert check_key_matches(leaf.cert, leaf.key) is None


@pytest.mark.parametrize(
    ("kind", "other", "described"),
    [
        ("rsa", rsa_key(2048, 1), "RSA-2048"),
        ("rsa", ec_key(), "ECDSA-secp256r1"),
        ("ec", ec_key(n=1), "ECDSA-secp256r1"),
        ("ec", rsa_key(2048, 1), "RSA-2048"),
    ],
)
def test_wrong_key_is_a_mismatch(kind: Kind, other: PrivateKey, described: str) -> None:
    leaf = pki(kind).leaf("example.com")
    found = check_key_matches(leaf.cert, other)
    assert_finding(found, Reason.KeyMismatch, f"private key ({described})", "does not belong")
    assert found is not None
    for line in key_pem(other).decode().splitlines()[1:-1]:
        assert line not in found.message


# --- key algorithm and size ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "min_bits", "problem"),
    [
        (rsa_key(2048), 2048, None),
        (rsa_key(1024), 2048, "RSA-1024; at least 2048 bits"),
        (rsa_key(2048), 3072, "RSA-2048; at least 3072 bits"),
        (ec_key("secp256r1"), 2048, None),
        (ec_key("secp384r1"), 2048, None),
        (ec_key("secp521r1"), 2048, "ECDSA-secp521r1; accepted curves"),
        (ec_key("secp256k1"), 2048, "ECDSA-secp256k1; accepted curves"),
        (ed25519_key(), 2048, "Ed25519; only RSA and ECDSA"),
    ],
    ids=["rsa2048", "rsa1024", "rsa2048-min3072", "p256", "p384", "p521", "k256", "ed25519"],
)
def test_key_strength(key: PrivateKey, min_bits: int, problem: str | None) -> None:
    leaf = issue(subject="example.com", key=key, issuer=RSA.intermediate)
    found = check_key_strength(leaf.cert, min_rsa_bits=min_bits)
    if problem is None:
        assert found is None
    else:
        assert_finding(found, Reason.WeakKey, problem)


# --- names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("covered", "wanted", "problem"),
    [
        (["example.com"], ["example.com"], None),
        (["example.com", "www.example.com"], ["www.example.com", "example.com"], None),
        (["example.com", "www.example.com", "extra.example.com"], ["example.com"], None),
        (["EXAMPLE.com"], ["example.COM"], None),
        (["*.example.com"], ["www.example.com", "api.example.com"], None),
        (["*.example.com"], ["*.example.com"], None),
        (["*.example.com", "example.com"], ["example.com", "*.example.com", "w.example.com"], None),
        (["xn--bcher-kva.example"], ["Bücher.example"], None),
        (["example.com"], [], None),
        (
            ["example.com"],
            ["www.example.com"],
            "does not cover www.example.com; it covers example.com",
        ),
        (
            ["example.com"],
            ["example.com", "a.example.com", "b.example.com"],
            "a.example.com, b.exa",
        ),
        (["*.example.com"], ["example.com"], "does not cover example.com"),
        (["*.example.com"], ["a.b.example.com"], "does not cover a.b.example.com"),
        (["www.example.com"], ["*.example.com"], "does not cover *.example.com"),
        (["example.org"], ["example.com"], "it covers example.org"),
        ([], ["example.com"], "no DNS names (subjectAltName)"),
        (["example.com"], [f"n{i}.example.com" for i in range(15)], "n9.example.com and 5 more"),
    ],
)
def test_names(covered: list[str], wanted: list[str], problem: str | None) -> None:
    leaf = RSA.leaf(*covered) if covered else issue(subject="x", key=rsa_key(), issuer=RSA.root)
    found = check_names(leaf.cert, wanted)
    if problem is None:
        assert found is None
    else:
        assert_finding(found, Reason.NameMismatch, problem)


def test_an_invalid_spec_name_is_the_callers_error() -> None:
    with pytest.raises(InvalidDomainError):
        check_names(RSA.leaf("example.com").cert, ["../etc"])


# --- chain links --------------------------------------------------------------------------

FORGED_INTERMEDIATE = issue(  # same name as RSA's intermediate, another key
    subject=RSA.intermediate.cert.subject.rfc4514_string().removeprefix("CN="),
    key=rsa_key(2048, 5),
    issuer=RSA.root,
    ca=True,
)
NOT_A_CA = RSA.leaf("parent.example.com")


@pytest.mark.parametrize(
    ("chain", "problem"),
    [
        ([RSA.leaf("a.example").cert], None),
        ([RSA.leaf("a.example").cert, RSA.intermediate.cert], None),
        ([RSA.leaf("a.example").cert, RSA.intermediate.cert, RSA.root.cert], None),
        ([EC.leaf("a.example").cert, EC.intermediate.cert], None),
        ([EC.leaf("a.example").cert, RSA.intermediate.cert], "the leaf certificate was issued by"),
        ([RSA.leaf("a.example").cert, RSA.root.cert], "but the next certificate is"),
        (
            [RSA.intermediate.cert, RSA.leaf("a.example").cert],
            "a full chain starts with the leaf",
        ),
        (
            [
                issue(subject="a.example", key=rsa_key(), issuer=FORGED_INTERMEDIATE).cert,
                RSA.intermediate.cert,
            ],
            "signature of the leaf certificate does not verify",
        ),
        (
            [RSA.leaf("a.example").cert, FORGED_INTERMEDIATE.cert, RSA.root.cert],
            "signature of the leaf certificate does not verify",
        ),
        (
            [issue(subject="c.example", key=rsa_key(), issuer=NOT_A_CA).cert, NOT_A_CA.cert],
            "certificate 2 of the chain ('CN=parent.example.com') signs",
        ),
    ],
    ids=[
        "leaf-only",
        "rsa",
        "with-root",
        "ec",
        "foreign-intermediate",
        "intermediate-missing",
        "reversed",
        "forged-signature",
        "forged-intermediate",
        "parent-not-ca",
    ],
)
def test_chain_links(chain: list[x509.Certificate], problem: str | None) -> None:
    found = check_chain_links(chain)
    if problem is None:
        assert found is None
    else:
        assert_finding(found, Reason.BrokenChain, problem)


# --- trust ------------------------------------------------------------------------------

REISSUED_ROOT = issue(  # same name and key as RSA's root, other dates: trusted alike
    subject=RSA.root.cert.subject.rfc4514_string().removeprefix("CN="),
    key=RSA.root.key,
    ca=True,
    not_before=NOW - DAY,
    not_after=NOW + 100 * DAY,
)


@pytest.mark.parametrize(
    ("chain", "roots", "problem"),
    [
        ([RSA.leaf("a.example").cert, RSA.intermediate.cert], [RSA.root.cert], None),
        ([RSA.leaf("a.example").cert, RSA.intermediate.cert, RSA.root.cert], [RSA.root.cert], None),
        ([RSA.leaf("a.example").cert, RSA.intermediate.cert], [EC.root.cert, RSA.root.cert], None),
        ([RSA.leaf("a.example").cert], [RSA.intermediate.cert], None),
        ([RSA.leaf("a.example").cert, RSA.intermediate.cert], [REISSUED_ROOT.cert], None),
        ([EC.leaf("a.example").cert, EC.intermediate.cert], [EC.root.cert], None),
        (
            [RSA.leaf("a.example").cert, RSA.intermediate.cert],
            [EC.root.cert],
            "any of the 1 trusted root certificates; its top was issued by 'CN=Test Root rsa 0'",
        ),
        ([RSA.leaf("a.example").cert], [RSA.root.cert], "its top was issued by"),
        (
            [RSA.leaf("a.example").cert, EC.intermediate.cert, EC.root.cert],
            [EC.root.cert],
            "does not lead",
        ),
        ([RSA.leaf("a.example").cert, RSA.intermediate.cert], [], "the trust bundle is empty"),
    ],
    ids=[
        "via-intermediate",
        "root-included",
        "second-root",
        "anchored-at-intermediate",
        "reissued-root",
        "ec",
        "other-root",
        "intermediate-missing",
        "broken-link-to-trusted",
        "empty-bundle",
    ],
)
def test_trust(
    chain: list[x509.Certificate], roots: Sequence[x509.Certificate], problem: str | None
) -> None:
    found = check_trust(chain, roots, NOW, "a.example")
    if problem is None:
        assert found is None
    else:
        assert_finding(found, Reason.UntrustedChain, problem)


# --- validity dates -----------------------------------------------------------------------

SECOND = timedelta(seconds=1)
LEAF = RSA.leaf("a.example", not_before=NOW - DAY, not_after=NOW + DAY)
OLD_INTERMEDIATE = issue(
    subject="Old Intermediate",
    key=rsa_key(2048, 3),
    issuer=RSA.root,
    ca=True,
    not_before=NOW - 10 * DAY,
    not_after=NOW - 5 * DAY,
)
YOUNG_INTERMEDIATE = issue(
    subject="Young Intermediate",
    key=rsa_key(2048, 3),
    issuer=RSA.root,
    ca=True,
    not_before=NOW + 5 * DAY,
    not_after=NOW + 10 * DAY,
)


@pytest.mark.parametrize(
    ("chain", "now", "reason", "problem"),
    [
        ([LEAF.cert, RSA.intermediate.cert], NOW, None, ""),
        ([LEAF.cert], NOW - DAY, None, ""),  # notBefore itself is valid
        ([LEAF.cert], NOW + DAY, None, ""),  # and so is notAfter
        ([LEAF.cert], NOW - DAY - SECOND, Reason.NotYetValid, "the leaf certificate is not valid"),
        ([LEAF.cert], NOW + DAY + SECOND, Reason.Expired, "the leaf certificate expired at"),
        ([LEAF.cert], NOW + 30 * DAY, Reason.Expired, "2030-06-02T12:00:00Z (now: 2030-07-01"),
        (
            [LEAF.cert, OLD_INTERMEDIATE.cert],
            NOW,
            Reason.Expired,
            "certificate 2 of the chain ('CN=Old Intermediate') expired",
        ),
        (
            [LEAF.cert, YOUNG_INTERMEDIATE.cert],
            NOW,
            Reason.NotYetValid,
            "certificate 2 of the chain ('CN=Young Intermediate') is not valid before",
        ),
    ],
)
def test_validity_dates(
    chain: list[x509.Certificate], now: datetime, reason: Reason | None, problem: str
) -> None:
    found = check_not_yet_valid(chain, now) or check_expired(chain, now)
    if reason is None:
        assert found is None
    else:
        assert_finding(found, reason, problem)


@pytest.mark.parametrize("check", [check_not_yet_valid, check_expired])
def test_validity_needs_an_aware_clock(check: object) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check([LEAF.cert], NOW.replace(tzinfo=None))  # type: ignore[operator]


def test_reason_values_are_their_names() -> None:
    # The values go into status conditions and metric labels: CamelCase, stable.
    assert all(reason.value == reason.name for reason in Reason)
