"""spec.acme's CA settings: fallback servers and the external account binding."""

from __future__ import annotations

from typing import Any

import pytest

from certfleet.api.spec import InvalidSpecError, parse_certificate_spec


def acme(**fields: Any) -> Any:
    parsed = parse_certificate_spec(
        {
            "domain": "www.example.com",
            "cloudhost": "aws",
            "buildIdentifier": "b1",
            "generationMethod": "AUTOMATIC",
            "acme": fields,
        }
    ).acme
    assert parsed is not None
    return parsed


def test_fallback_servers_follow_the_server_in_order() -> None:
    settings = acme(server="zerossl", fallbackServers=["letsencrypt", " https://ca.example/d "])
    assert settings.servers == ("zerossl", "letsencrypt", "https://ca.example/d")
    assert acme().servers == ("letsencrypt",)


def test_ordering_from_one_server_keeps_the_binding_only_for_the_first() -> None:
    binding = {"keyID": "kid-1", "hmacKeySecretRef": {"name": "eab", "key": "hmac"}}
    settings = acme(
        server="zerossl", fallbackServers=["letsencrypt"], externalAccountBinding=binding
    )
    first, second = settings.at_server(0), settings.at_server(1)
    assert (first.server, first.eab_key_id, first.eab_hmac_secret) == (
        "zerossl",
        "kid-1",
        ("eab", "hmac"),
    )
    assert (second.server, second.eab_key_id, second.eab_hmac_secret) == ("letsencrypt", None, None)
    assert first.fallback_servers == second.fallback_servers == ()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"fallbackServers": "letsencrypt"}, "fallbackServers must be a list"),
        ({"fallbackServers": ["a"] * 5}, "at most 4"),
        ({"fallbackServers": [""]}, r"fallbackServers\[0\] must name"),
        ({"fallbackServers": [7]}, r"fallbackServers\[0\] must name"),
        ({"externalAccountBinding": "kid"}, "must be an object"),
        ({"externalAccountBinding": {"keyID": "kid"}}, "hmacKeySecretRef.name"),
        (
            {"externalAccountBinding": {"keyID": "k", "hmacKeySecretRef": {"name": "eab"}}},
            "hmacKeySecretRef.key",
        ),
        (
            {
                "externalAccountBinding": {
                    "keyID": "with space",
                    "hmacKeySecretRef": {"name": "eab", "key": "hmac"},
                }
            },
            "keyID must be the CA's key id",
        ),
        (
            {"externalAccountBinding": {"hmacKeySecretRef": {"name": "eab", "key": "hmac"}}},
            "keyID",
        ),
    ],
)
def test_bad_ca_settings_are_refused_naming_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpecError, match=message):
        acme(**fields)
