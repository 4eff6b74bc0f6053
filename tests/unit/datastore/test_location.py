"""The S3 key scheme and the validation of every path component."""

from __future__ import annotations

import dataclasses

import pytest

from certfleet.datastore import DatastoreLocation

VALID = {
    "bucket": "certs.example-1",
    "prefix": "certfleet/prod",
    "cloudhost": "aws-eu-1",
    "build_identifier": "build_2026.01.15-3",
    "domain": "www.example.com",
}


def make(**changes: str) -> DatastoreLocation:
    return DatastoreLocation(**{**VALID, **changes})


def test_key_layout() -> None:
    loc = make()
    base = "certfleet/prod/aws-eu-1/build_2026.01.15-3/www.example.com"
    assert loc.base_key == base
    assert loc.pointer_key == f"{base}/current.json"
    assert loc.fullchain_key(7) == f"{base}/revisions/7/fullchain.pem"
    assert loc.privkey_key(7) == f"{base}/revisions/7/privkey.pem.enc"
    assert loc.s3_uri == f"s3://certs.example-1/{base}/"
    assert str(loc) == loc.s3_uri


def test_empty_prefix_starts_at_the_cloudhost() -> None:
    loc = make(prefix="")
    assert loc.pointer_key == "aws-eu-1/build_2026.01.15-3/www.example.com/current.json"


def test_wildcard_and_idn_domains() -> None:
    assert make(domain="*.example.com").base_key.endswith("/*.example.com")
    assert make(domain="xn--bcher-kva.example").domain == "xn--bcher-kva.example"


def test_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        make().domain = "other.example"  # type: ignore[misc]


ESCAPES = ["", ".", "..", "../x", "a/b", "a\\b", "a\x00b", ".hidden", "a..b", "/abs"]


@pytest.mark.parametrize("field", ["cloudhost", "build_identifier", "domain", "bucket"])
@pytest.mark.parametrize("value", ESCAPES)
def test_path_escapes_are_rejected(field: str, value: str) -> None:
    with pytest.raises(ValueError):
        make(**{field: value})


@pytest.mark.parametrize("value", ["-x", "_x", "a b", "a" * 64, "ä", "x:y", "x%2f", "a\n", "x*"])
@pytest.mark.parametrize("field", ["cloudhost", "build_identifier"])
def test_component_grammar(field: str, value: str) -> None:
    with pytest.raises(ValueError):
        make(**{field: value})


def test_component_of_63_characters_is_accepted() -> None:
    assert make(cloudhost="a" * 63).cloudhost == "a" * 63


@pytest.mark.parametrize(
    "value",
    [
        "WWW.example.com",
        "example.com.",
        "a b.example",
        "ex ample.com",
        "a" * 64 + ".example",
        "x." * 127 + "xx",
        "exa%mple.com",
        "example.com:443",
    ],
)
def test_domain_grammar(value: str) -> None:
    with pytest.raises(ValueError):
        make(domain=value)


@pytest.mark.parametrize(
    "value", ["/certfleet", "certfleet/", "a//b", "a/../b", "a/./b", "a/.git", "a/b c", "x" * 513]
)
def test_prefix_grammar(value: str) -> None:
    with pytest.raises(ValueError):
        make(prefix=value)


@pytest.mark.parametrize("value", ["ab", "UPPER", "under_score", "-bucket", "bucket-", "b" * 64])
def test_bucket_grammar(value: str) -> None:
    with pytest.raises(ValueError):
        make(bucket=value)


def test_non_string_components_are_rejected() -> None:
    with pytest.raises(TypeError):
        make(domain=b"www.example.com")  # type: ignore[arg-type]


@pytest.mark.parametrize("revision", [0, -1, True, 2**53, "1", 1.0])
def test_bad_revisions_are_rejected(revision: object) -> None:
    with pytest.raises(ValueError):
        make().fullchain_key(revision)  # type: ignore[arg-type]
