"""The policy chain: every reason through `evaluate`, the order, and the Valid verdict."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from certfleet.core.checks import Reason
from certfleet.core.clock import rfc3339
from certfleet.core.errors import InvalidDomainError
from certfleet.core.pem import parse_bundle
from certfleet.core.policy import Failure, Valid, evaluate, evaluate_bundle, fit_to_serve
from certfleet.core.renewal import DEFAULT_RENEW_BEFORE, RenewalRule

from .certificates import DAY, NOW, Kind, Pki, ec_key, issue, key_pem, pem, pki, rsa_key

KINDS: list[Kind] = ["rsa", "ec"]
NAMES = ["example.com", "www.example.com"]
SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class Case:
    """What a store holds, and the verdict expected for it."""

    reason: Reason | None
    fullchain: bytes | None
    privkey: bytes | None
    fragment: str
    now: datetime = NOW
    trust: bool = False


def good(
    ca: Pki, not_before: datetime = NOW - 30 * DAY, not_after: datetime = NOW + 60 * DAY
) -> tuple[bytes, bytes]:
    leaf = ca.leaf(*NAMES, not_before=not_before, not_after=not_after)
    return pem(leaf.cert, ca.intermediate.cert), key_pem(leaf.key, "traditional")


def cases(kind: Kind) -> list[Case]:
    ca, other = pki(kind), pki("ec" if kind == "rsa" else "rsa")
    chain, key = good(ca)
    weak = issue(subject="example.com", key=rsa_key(1024), issuer=ca.intermediate, dns_names=NAMES)
    wrong_name = ca.leaf("example.org")
    leaf = ca.leaf(*NAMES)
    as_ca = issue(
        subject="example.com", key=leaf.key, issuer=ca.intermediate, dns_names=NAMES, ca=True
    )
    client_only = issue(
        subject="example.com",
        key=leaf.key,
        issuer=ca.intermediate,
        dns_names=NAMES,
        usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    return [
        Case(Reason.Missing, None, key, "no certificate chain"),
        Case(Reason.Missing, b"", key, "no certificate chain"),
        Case(Reason.Missing, chain, None, "no private key"),
        Case(Reason.Missing, chain, b"", "no private key"),
        Case(Reason.InvalidPEM, b"garbage", key, "certificate chain contains no PEM block"),
        Case(Reason.InvalidPEM, key, key, "a private key where a certificate belongs"),
        Case(Reason.InvalidPEM, chain, chain, "certificate where a private key belongs"),
        Case(Reason.InvalidPEM, chain, key[:-30], "truncated"),
        Case(
            Reason.BrokenChain,
            pem(ca.intermediate.cert, leaf.cert),
            key_pem(leaf.key),
            "reverse order",
        ),
        Case(Reason.KeyMismatch, chain, key_pem(ec_key(n=4)), "does not belong"),
        Case(Reason.WeakKey, pem(weak.cert), key_pem(weak.key), "RSA-1024"),
        Case(
            Reason.NameMismatch,
            pem(wrong_name.cert, ca.intermediate.cert),
            key_pem(wrong_name.key),
            "does not cover example.com, www.example.com; it covers example.org",
        ),
        Case(
            Reason.NotForServers,
            pem(as_ca.cert, ca.intermediate.cert),
            key_pem(leaf.key),
            "is a CA certificate",
        ),
        Case(
            Reason.NotForServers,
            pem(client_only.cert, ca.intermediate.cert),
            key_pem(leaf.key),
            "does not include serverAuth",
        ),
        Case(
            Reason.BrokenChain, pem(ca.leaf(*NAMES).cert, other.intermediate.cert), key, "issued by"
        ),
        Case(Reason.UntrustedChain, pem(ca.leaf(*NAMES).cert), key, "does not lead", trust=True),
        Case(Reason.NotYetValid, chain, key, "is not valid before", now=NOW - 31 * DAY),
        Case(Reason.Expired, chain, key, "expired at", now=NOW + 61 * DAY),
        Case(
            Reason.RenewalDue,
            chain,
            key,
            "renewal is due since 2030-07-24T12:00:00Z (7 days before expiry, "
            "spec.renewBeforeSeconds); the certificate expires at 2030-07-31T12:00:00Z",
            now=NOW + 53 * DAY,
        ),
        Case(
            None,
            chain,
            key,
            "valid until 2030-07-31T12:00:00Z, renew at 2030-07-24T12:00:00Z "
            "(7 days before expiry, spec.renewBeforeSeconds)",
        ),
        Case(None, chain, key, "renew at", trust=True),
    ]


CASES = [(kind, case) for kind in KINDS for case in cases(kind)]


@pytest.mark.parametrize(
    ("kind", "case"),
    CASES,
    ids=[f"{kind}-{case.reason or 'Valid'}-{i}" for i, (kind, case) in enumerate(CASES)],
)
def test_evaluate(kind: Kind, case: Case) -> None:
    verdict = evaluate(
        case.fullchain,
        case.privkey,
        names=NAMES,
        now=case.now,
        trust_roots=[pki(kind).root.cert] if case.trust else None,
    )
    if case.reason is None:
        assert isinstance(verdict, Valid), verdict
        assert verdict.ok
    else:
        assert isinstance(verdict, Failure), verdict
        assert verdict.reason is case.reason, verdict
        assert not verdict.ok
    assert case.fragment in verdict.message
    assert_no_key_material(verdict.message)


def test_every_reason_is_exercised() -> None:
    for kind in KINDS:
        assert {case.reason for case in cases(kind)} == {*Reason, None}


def assert_no_key_material(message: str) -> None:
    for key in (rsa_key(2048, 9), ec_key(n=9), ec_key(n=4), rsa_key(1024)):
        for data in (key_pem(key), key_pem(key, "traditional")):
            for line in data.decode().splitlines()[1:-1]:
                assert line not in message


@pytest.mark.parametrize("kind", KINDS)
def test_valid_verdict(kind: Kind) -> None:
    chain, key = good(pki(kind))
    verdict = evaluate(chain, key, names=["WWW.example.com"], now=NOW)
    assert isinstance(verdict, Valid)
    assert verdict.not_after == NOW + 60 * DAY
    # 90-day certificate: 7 days before expiry (day 83), the user's setting.
    assert verdict.renew_at == NOW - 30 * DAY + 83 * DAY
    assert verdict.renewal.rule is RenewalRule.RenewBefore
    assert verdict.facts.dns_names == tuple(NAMES)
    assert verdict.facts.not_after == verdict.not_after


def test_renewal_parameters_pass_through() -> None:
    chain, key = good(pki("rsa"))
    late = evaluate(chain, key, names=NAMES, now=NOW, renew_before=DEFAULT_RENEW_BEFORE)
    assert isinstance(late, Valid)
    early = evaluate(chain, key, names=NAMES, now=NOW, renew_before=61 * DAY)
    assert isinstance(early, Failure) and early.reason is Reason.RenewalDue
    assert "(61 days before expiry, spec.renewBeforeSeconds)" in early.message
    assert early.renewal is not None and early.renewal.rule is RenewalRule.RenewBefore
    ari = evaluate(chain, key, names=NAMES, now=NOW, ari_window=(NOW - DAY, NOW + DAY))
    assert isinstance(ari, Failure) and ari.reason is Reason.RenewalDue
    assert ari.renew_at == NOW
    assert f"since {rfc3339(NOW)} (the CA's renewal window, RFC 9773)" in ari.message
    assert ari.renewal is not None and ari.renewal.rule is RenewalRule.AcmeRenewalInfo
    assert fit_to_serve(ari)
    assert ari.facts is not None


@pytest.mark.parametrize(
    ("now", "verdict", "words"),
    [
        (NOW + 4 * DAY - SECOND, Valid, "renew at 2030-06-05T12:00:00Z (2/3 of its 6-day"),
        (NOW + 4 * DAY, Failure, "renewal is due since 2030-06-05T12:00:00Z (2/3 of its 6-day"),
    ],
)
def test_a_certificate_shorter_than_the_margin_renews_at_two_thirds_and_says_so(
    now: datetime, verdict: type, words: str
) -> None:
    chain, key = good(pki("ec"), not_before=NOW, not_after=NOW + 6 * DAY)
    judged = evaluate(chain, key, names=NAMES, now=now)
    assert isinstance(judged, verdict), judged
    assert words in judged.message
    assert "lifetime: renewBeforeSeconds is not shorter than the lifetime)" in judged.message


def test_the_first_failure_wins() -> None:
    ca = pki("rsa")
    chain, _ = good(ca, not_before=NOW - 100 * DAY, not_after=NOW - 10 * DAY)
    # Expired and with the wrong key: the key is reported, as it comes first.
    verdict = evaluate(chain, key_pem(ec_key(n=4)), names=NAMES, now=NOW)
    assert isinstance(verdict, Failure) and verdict.reason is Reason.KeyMismatch
    # Expired and for other names: the names come first.
    verdict = evaluate(chain, good(ca)[1], names=["other.example"], now=NOW)
    assert isinstance(verdict, Failure) and verdict.reason is Reason.NameMismatch
    # Expired and due: expired, which is not usable.
    verdict = evaluate(chain, good(ca)[1], names=NAMES, now=NOW)
    assert isinstance(verdict, Failure) and verdict.reason is Reason.Expired
    assert not fit_to_serve(verdict)
    assert verdict.facts is not None and verdict.renew_at is None


def test_unparsed_failures_have_no_facts() -> None:
    verdict = evaluate(b"garbage", b"garbage", names=NAMES, now=NOW)
    assert isinstance(verdict, Failure) and verdict.facts is None


def test_evaluate_bundle() -> None:
    chain, key = good(pki("ec"))
    assert isinstance(evaluate_bundle(parse_bundle(chain, key), names=NAMES, now=NOW), Valid)
    missing = evaluate_bundle(None, names=NAMES, now=NOW)
    assert isinstance(missing, Failure) and missing.reason is Reason.Missing


@pytest.mark.parametrize("fullchain", [None, b"", b"garbage", good(pki("rsa"))[0]])
def test_spec_errors_raise_whatever_the_store_holds(fullchain: bytes | None) -> None:
    with pytest.raises(InvalidDomainError):
        evaluate(fullchain, good(pki("rsa"))[1], names=["example.com", "bad/name"], now=NOW)


def test_spec_errors_raise_without_a_bundle() -> None:
    with pytest.raises(InvalidDomainError):
        evaluate_bundle(None, names=["bad/name"], now=NOW)


def test_names_must_not_be_a_single_string() -> None:
    chain, key = good(pki("rsa"))
    with pytest.raises(TypeError, match="sequence"):
        evaluate(chain, key, names="example.com", now=NOW)


def test_naive_clock_is_refused() -> None:
    chain, key = good(pki("rsa"))
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(chain, key, names=NAMES, now=NOW.replace(tzinfo=None))


def test_untrusted_needs_roots() -> None:
    chain, key = good(pki("rsa"))
    roots: list[x509.Certificate] = [pki("ec").root.cert]
    verdict = evaluate(chain, key, names=NAMES, now=NOW, trust_roots=roots)
    assert isinstance(verdict, Failure) and verdict.reason is Reason.UntrustedChain
    assert evaluate(chain, key, names=NAMES, now=NOW).ok
