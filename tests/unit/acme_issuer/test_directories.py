from __future__ import annotations

import pytest

from certfleet.acme_issuer import AcmeError, InvalidAcmeServerError, resolve_directory_url


@pytest.mark.parametrize(
    ("server", "url"),
    [
        ("letsencrypt", "https://acme-v02.api.letsencrypt.org/directory"),
        ("letsencrypt-staging", "https://acme-staging-v02.api.letsencrypt.org/directory"),
        ("zerossl", "https://acme.zerossl.com/v2/DV90"),
        (" LetsEncrypt ", "https://acme-v02.api.letsencrypt.org/directory"),
        (None, "https://acme-v02.api.letsencrypt.org/directory"),
        ("", "https://acme-v02.api.letsencrypt.org/directory"),
        ("https://127.0.0.1:14000/dir", "https://127.0.0.1:14000/dir"),
        ("https://acme.example.com/directory", "https://acme.example.com/directory"),
        ("HTTPS://acme.example.com/directory", "HTTPS://acme.example.com/directory"),
    ],
)
def test_known_names_and_https_urls_resolve(server: str | None, url: str) -> None:
    assert resolve_directory_url(server) == url


@pytest.mark.parametrize(
    "server",
    [
        "http://acme.example.com/directory",
        "ftp://acme.example.com/",
        "letsencrypt-prod",
        "acme.example.com/directory",
        "https://",
        "https:///directory",
        "https://acme.example.com:99999/dir",
        "https://acme.example.com:0/dir",
        "https://acme.example.com/dir ectory",
        "file:///etc/passwd",
    ],
)
def test_anything_else_is_refused(server: str) -> None:
    with pytest.raises(InvalidAcmeServerError) as refused:
        resolve_directory_url(server)
    assert isinstance(refused.value, AcmeError)
    assert isinstance(refused.value, ValueError)


def test_the_error_names_the_choices() -> None:
    with pytest.raises(InvalidAcmeServerError, match="letsencrypt, letsencrypt-staging, zerossl"):
        resolve_directory_url("http://acme.example.com/directory")


def test_credentials_in_the_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(InvalidAcmeServerError) as refused:
        resolve_directory_url("https://user:s3cret@acme.example.com/dir")
    assert "s3cret" not in str(refused.value)


def test_a_long_value_is_shown_bounded() -> None:
    with pytest.raises(InvalidAcmeServerError) as refused:
        resolve_directory_url("x" * 5000)
    assert len(str(refused.value)) < 400
