"""The ACME issuer port: one issuer per CA account and namespace, so an account (and its
EAB binding) is never shared between namespaces, and the binding is validated first."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from certfleet.acme_issuer import ChallengeStore, InMemoryAccountStore, parse_binding
from certfleet.acme_issuer.binding import ExternalAccountBindingError
from certfleet.api.reasons import CertificateReason
from certfleet.api.spec import parse_certificate_spec
from certfleet.controller.acme_issuers import AcmeIssuers

HMAC = base64.urlsafe_b64encode(b"k" * 32).rstrip(b"=")
BINDING = {"keyID": "kid-1", "hmacKeySecretRef": {"name": "eab", "key": "hmac"}}


def issuers(secrets: dict[tuple[str, str, str], bytes] | None = None) -> AcmeIssuers:
    known = secrets or {}
    return AcmeIssuers(InMemoryAccountStore(), ChallengeStore(), lambda *where: known.get(where))


def spec(**acme: Any) -> Any:
    return parse_certificate_spec(
        {
            "domain": "www.example.com",
            "cloudhost": "aws",
            "buildIdentifier": "b1",
            "generationMethod": "AUTOMATIC",
            "acme": {"server": "https://ca.example/dir", **acme},
        }
    )


def test_one_issuer_per_account_is_kept() -> None:
    port = issuers()
    first = port.for_directory("https://ca.example/dir", "ops@example.com")
    assert port.for_directory("https://ca.example/dir", "ops@example.com") is first
    assert port.for_directory("https://ca.example/dir", "other@example.com") is not first
    assert port.for_directory("https://other.example/dir", "ops@example.com") is not first
    binding = parse_binding("kid", HMAC)
    bound = port.for_directory("https://ca.example/dir", "ops@example.com", binding)
    assert bound is not first


def test_each_namespace_has_its_own_account_and_binding() -> None:
    port = issuers()
    binding = parse_binding("kid-1", HMAC)
    team_a = port.for_directory("https://ca.example/dir", "ops@x.example", binding, "team-a")
    team_b = port.for_directory("https://ca.example/dir", "ops@x.example", binding, "team-b")
    assert team_a is not team_b
    assert team_a.account != team_b.account
    assert team_a.account.eab_key_id == team_b.account.eab_key_id == "kid-1"
    assert team_a._account_lock is not team_b._account_lock
    # The same account asked for again, through a new port (a new reconciliation): one lock.
    again = issuers().for_directory("https://ca.example/dir", "ops@x.example", binding, "team-a")
    assert again._account_lock is team_a._account_lock


def test_the_binding_comes_from_the_namespace_s_secret_and_is_validated() -> None:
    port = issuers({("team-a", "eab", "hmac"): HMAC + b"\n"})
    binding = port._binding(spec(externalAccountBinding=BINDING), "team-a")
    assert binding is not None and binding.kid == "kid-1"
    assert binding.hmac_key_b64url == HMAC.decode()
    assert HMAC.decode() not in repr(binding)
    with pytest.raises(ExternalAccountBindingError, match="team-b/eab has no key 'hmac'") as no:
        port._binding(spec(externalAccountBinding=BINDING), "team-b")
    assert no.value.reason == CertificateReason.ExternalAccountBindingInvalid


@pytest.mark.parametrize(
    "hmac_key",
    [
        b"not base64url!",
        b"c2hvcnQ",  # 5 bytes
        b"a+b/" * 10,  # standard base64, not base64url
        b"A" * 5000,
        b"\xff\xfe",
    ],
)
def test_a_malformed_hmac_key_is_refused_without_quoting_it(hmac_key: bytes) -> None:
    port = issuers({("team-a", "eab", "hmac"): hmac_key})
    with pytest.raises(ExternalAccountBindingError) as refused:
        port._binding(spec(externalAccountBinding=BINDING), "team-a")
    assert refused.value.reason == CertificateReason.ExternalAccountBindingInvalid
    assert hmac_key.decode("ascii", "replace")[:20] not in str(refused.value)
    assert "HMAC key" in str(refused.value)


@pytest.mark.parametrize("key_id", ["", "has space", "x" * 257, "tab\t", "ünïcode"])
def test_a_malformed_key_id_is_refused(key_id: str) -> None:
    with pytest.raises(ExternalAccountBindingError, match="keyID"):
        parse_binding(key_id, HMAC)


def test_a_padded_hmac_key_is_accepted_and_the_padding_dropped() -> None:
    padded = base64.urlsafe_b64encode(b"k" * 31)
    assert padded.endswith(b"=")
    assert parse_binding("kid", padded).hmac_key_b64url == padded.decode().rstrip("=")
