"""Domain names: what specs and file paths may contain, and how certificate names match."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certfleet.core.domains import domain_matches, validate_domain
from certfleet.core.errors import CertfleetError, InvalidDomainError

LONG_LABEL = "a" * 63
NAME_253 = ".".join(["a" * 61] * 4) + ".abcde"
assert len(NAME_253) == 253


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("example.com", "example.com"),
        ("WWW.Example.COM", "www.example.com"),
        ("a-b.c-d.example", "a-b.c-d.example"),
        ("123.example.com", "123.example.com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("XN--Bcher-KVA.example", "xn--bcher-kva.example"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("*.example.com", "*.example.com"),
        ("*.Bücher.example", "*.xn--bcher-kva.example"),
        (f"{LONG_LABEL}.example", f"{LONG_LABEL}.example"),
        (NAME_253, NAME_253),
    ],
)
def test_valid_domains_are_normalised(name: str, expected: str) -> None:
    assert validate_domain(name) == expected


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("example.com/evil", "path separator"),
        ("../etc", "path separator|starts with a dot"),
        ("a\\b.com", "path separator"),
        ("..", "starts with a dot"),
        (".example.com", "starts with a dot"),
        ("example..com", "empty label"),
        ("example.com.", "ends with a dot"),
        ("exa\x00mple.com", "NUL"),
        ("exa mple.com", "whitespace"),
        ("example.com\n", "whitespace"),
        ("exa\u200bmple.com", "control|IDNA"),
        ("example", "single label"),
        ("localhost", "single label"),
        ("*.com", "single label after"),
        ("192.168.0.1", "all-numeric"),
        ("-example.com", "letters, digits and inner hyphens"),
        ("example-.com", "letters, digits and inner hyphens"),
        ("ex_ample.com", "letters, digits and inner hyphens"),
        ("ab--cd.example", "IDNA reserves"),
        ("xn--zzzzzzzzz.example", "not a valid IDNA A-label"),
        ("*", "wildcard"),
        ("**.example.com", "wildcard"),
        ("w*.example.com", "wildcard"),
        ("www.*.example.com", "wildcard"),
        ("example.*", "wildcard"),
        (f"{LONG_LABEL}a.example", "at most 63"),
        (NAME_253 + "x", "at most 253"),
        ("a\u2215b.example", "IDNA"),  # division slash, a look-alike of /
        ("\uff41\uff0f\uff42.example", "IDNA"),  # fullwidth a/b: / under UTS 46
        ("x" * 5000, "longer than"),
    ],
)
def test_invalid_domains_are_rejected(name: str, why: str) -> None:
    with pytest.raises(InvalidDomainError, match=why):
        validate_domain(name)


def test_wildcards_can_be_refused() -> None:
    with pytest.raises(InvalidDomainError, match="wildcard"):
        validate_domain("*.example.com", allow_wildcard=False)
    assert validate_domain("www.example.com", allow_wildcard=False) == "www.example.com"


def test_non_string_is_rejected() -> None:
    with pytest.raises(InvalidDomainError, match="string"):
        validate_domain(b"example.com")  # type: ignore[arg-type]


def test_invalid_domain_error_is_a_certfleet_error() -> None:
    assert issubclass(InvalidDomainError, CertfleetError)


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("example.com", "example.com", True),
        ("EXAMPLE.com", "example.COM", True),
        ("example.com.", "example.com", True),  # absolute form in a certificate
        ("example.com", "www.example.com", False),
        ("*.example.com", "www.example.com", True),
        ("*.example.com", "WWW.EXAMPLE.COM", True),
        ("*.example.com", "example.com", False),  # wildcard needs one label
        ("*.example.com", "a.b.example.com", False),  # and exactly one
        ("*.example.com", "*.example.com", True),  # a wildcard spec needs the same wildcard
        ("*.example.com", "*.a.example.com", False),
        ("www.example.com", "*.example.com", False),
        ("w*.example.com", "www.example.com", False),  # partial wildcards are not honoured
        ("*.*.example.com", "a.b.example.com", False),
        ("*.xn--bcher-kva.example", "www.Bücher.example", True),
        ("xn--bcher-kva.example", "bücher.example", True),
        ("bücher.example", "xn--bcher-kva.example", True),
        ("*.example.com", ".example.com", False),
        ("", "example.com", False),
        ("example.com", "", False),
        ("\udcff.example", "example.com", False),  # not encodable: matches nothing
    ],
)
def test_domain_matches(pattern: str, name: str, matches: bool) -> None:
    assert domain_matches(pattern, name) is matches


SAFE = re.compile(r"(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)+")


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=80),
        st.text(alphabet="abcXYZ019-._*/\\\x00 üß\u3002\uff0e", max_size=40),
        st.lists(st.from_regex(r"[a-zA-Z0-9*ü-]{0,8}", fullmatch=True), max_size=5).map(".".join),
    )
)
def test_validation_is_total_and_path_safe(name: str) -> None:
    """Any text is either a safe, idempotent normal form or an InvalidDomainError."""
    try:
        result = validate_domain(name)
    except InvalidDomainError:
        return
    assert SAFE.fullmatch(result), result
    assert len(result) <= 253
    assert ".." not in result and "/" not in result and "\x00" not in result
    assert not result.startswith(".")
    assert validate_domain(result) == result
    assert domain_matches(result, name)
