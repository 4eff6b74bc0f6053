"""The ACME issuer port keeps one issuer per CA account, so its account lock is shared."""

from __future__ import annotations

from certfleet.acme_issuer import ChallengeStore, InMemoryAccountStore
from certfleet.controller.acme_issuers import AcmeIssuers


def issuers() -> AcmeIssuers:
    return AcmeIssuers(InMemoryAccountStore(), ChallengeStore(), lambda *_: None)


def test_one_issuer_per_account_is_kept() -> None:
    port = issuers()
    first = port.for_directory("https://ca.example/dir", "ops@example.com")
    assert port.for_directory("https://ca.example/dir", "ops@example.com") is first
    assert port.for_directory("https://ca.example/dir", "other@example.com") is not first
    assert port.for_directory("https://other.example/dir", "ops@example.com") is not first
    bound = port.for_directory("https://ca.example/dir", "ops@example.com", ("kid", "hmac"))
    assert bound is not first
