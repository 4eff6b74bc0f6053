"""HOST:PORT from flags and environment variables: one parser, one validation."""

from __future__ import annotations

import pytest

from certfleet.core.addresses import is_plain_http_to_remote, parse_host_port


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8089", ("127.0.0.1", 8089)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:443", ("::1", 443)),
        ("node-1.example.com:65535", ("node-1.example.com", 65535)),
    ],
)
def test_accepted(value: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(value) == expected


@pytest.mark.parametrize(
    "value", ["8089", ":8089", "host:", "host:http", "host:65536", "a b:80", "host/x:80", "::1:80"]
)
def test_refused_with_the_input_named(value: str) -> None:
    with pytest.raises(ValueError, match=r"HOST:PORT|65535"):
        parse_host_port(value)


@pytest.mark.parametrize(
    ("url", "remote"),
    [
        ("https://s3.example.com", False),
        ("https://10.0.0.5:9000", False),
        ("http://127.0.0.1:7070", False),
        ("http://127.1.2.3", False),
        ("http://localhost:9000/", False),
        ("HTTP://LOCALHOST.:9000", False),
        ("http://[::1]:9000", False),
        ("http://10.0.0.5:9000", True),
        ("http://minio.internal", True),
        ("http://[2001:db8::1]:80", True),
        ("http://127.0.0.1.example.com", True),
        ("http://", True),
        ("http://[::1", True),
    ],
)
def test_plain_http_to_remote(url: str, remote: bool) -> None:
    assert is_plain_http_to_remote(url) is remote
