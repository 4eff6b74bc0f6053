"""CloudHost endpoints: plain HTTP only to this machine, unless the CloudHost says so."""

from __future__ import annotations

from typing import Any

import pytest

from certfleet.api.spec import InvalidSpecError, parse_cloudhost

CLOUDHOST: dict[str, Any] = {
    "bucket": "certs",
    "credentialsSecretRef": {"namespace": "ops", "name": "s3"},
    "encryptionKeySecretRef": {"namespace": "ops", "name": "key"},
}


@pytest.mark.parametrize(
    "endpoint",
    [None, "", "https://s3.example.com", "http://127.0.0.1:7070", "http://localhost:9000"],
)
def test_https_and_loopback_http_are_accepted(endpoint: str | None) -> None:
    config = parse_cloudhost("aws", {**CLOUDHOST, "endpoint": endpoint})
    assert config.endpoint == (endpoint or None)


def test_plain_http_to_another_host_is_refused_naming_the_fields() -> None:
    with pytest.raises(InvalidSpecError) as refused:
        parse_cloudhost("minio", {**CLOUDHOST, "endpoint": "http://10.0.0.5:9000"})
    message = str(refused.value)
    assert "CloudHost minio" in message
    assert "spec.endpoint 'http://10.0.0.5:9000'" in message
    assert "spec.allowInsecureHTTP: true" in message


def test_plain_http_to_another_host_is_accepted_when_allowed_explicitly() -> None:
    spec = {**CLOUDHOST, "endpoint": "http://minio.internal:9000", "allowInsecureHTTP": True}
    assert parse_cloudhost("minio", spec).endpoint == "http://minio.internal:9000"


@pytest.mark.parametrize("value", ["true", 1, None])
def test_allow_insecure_http_must_be_a_boolean(value: object) -> None:
    spec = {**CLOUDHOST, "endpoint": "http://10.0.0.5", "allowInsecureHTTP": value}
    with pytest.raises(InvalidSpecError, match="allowInsecureHTTP must be true or false"):
        parse_cloudhost("minio", spec)


@pytest.mark.parametrize("endpoint", ["ftp://s3.example.com", "https://", 42])
def test_an_endpoint_that_is_not_a_url_is_refused(endpoint: object) -> None:
    with pytest.raises(InvalidSpecError, match="is not a URL"):
        parse_cloudhost("aws", {**CLOUDHOST, "endpoint": endpoint})
