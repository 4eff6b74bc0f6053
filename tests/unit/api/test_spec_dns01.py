"""DNS-01 settings in the specs: parsed, validated, bounded."""

from __future__ import annotations

from typing import Any

import pytest

from certfleet.api.spec import (
    Dns01Settings,
    InvalidSpecError,
    parse_certificate_spec,
    parse_cloudhost,
)

BASE: dict[str, Any] = {
    "domain": "example.com",
    "alternativeNames": ["*.example.com"],
    "cloudhost": "sandbox",
    "buildIdentifier": "build-1",
    "generationMethod": "AUTOMATIC",
}
CLOUDHOST: dict[str, Any] = {
    "bucket": "certs",
    "credentialsSecretRef": {"namespace": "ops", "name": "s3"},
    "encryptionKeySecretRef": {"namespace": "ops", "name": "key"},
}


def test_a_resource_names_its_provider_and_a_secret_of_its_own_namespace() -> None:
    acme = {
        "challengeType": "DNS-01",
        "dns01": {"provider": "cloudflare", "secretRef": {"name": "cf", "namespace": "other"}},
    }
    spec = parse_certificate_spec({**BASE, "acme": acme})
    assert spec.acme is not None and spec.acme.challenge_type == "DNS-01"
    # A namespace given here is ignored: a resource reads only its own namespace's Secrets.
    assert spec.acme.dns01 == Dns01Settings("cloudflare", "cf", None)


def test_a_cloudhost_names_the_secrets_namespace() -> None:
    dns01 = {"provider": "rfc2136", "secretRef": {"namespace": "ops", "name": "tsig"}}
    config = parse_cloudhost("sandbox", {**CLOUDHOST, "dns01": dns01})
    assert config.dns01 == Dns01Settings("rfc2136", "tsig", "ops")
    with pytest.raises(InvalidSpecError, match="namespace"):
        parse_cloudhost("sandbox", {**CLOUDHOST, "dns01": {**dns01, "secretRef": {"name": "x"}}})


@pytest.mark.parametrize(
    ("acme", "field"),
    [
        ({"challengeType": "TLS-ALPN-01"}, "challengeType"),
        ({"challengeType": "DNS-01", "dns01": "cloudflare"}, "dns01"),
        ({"dns01": {"provider": "Cloud Flare", "secretRef": {"name": "x"}}}, "provider"),
        ({"dns01": {"provider": "x" * 41, "secretRef": {"name": "x"}}}, "provider"),
        ({"dns01": {"provider": "cloudflare", "secretRef": {"name": "../x"}}}, "secretRef"),
        ({"dns01": {"provider": "cloudflare"}}, "secretRef"),
    ],
)
def test_bad_dns01_settings_are_refused(acme: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpecError, match=field):
        parse_certificate_spec({**BASE, "acme": acme})
