"""PEM parsing: every accepted form, every refused one, and totality on arbitrary bytes."""

from __future__ import annotations

import base64
import pickle
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certfleet.core.errors import CertfleetError, PemError, PemProblem
from certfleet.core.pem import (
    MAX_CHAIN_LENGTH,
    MAX_PEM_BYTES,
    CertificateBundle,
    parse_bundle,
    parse_chain,
    parse_private_key,
    parse_trust_bundle,
)

from .certificates import ec_key, ed25519_key, issue, key_pem, pem, pki, rsa_key

RSA = pki("rsa")
EC = pki("ec")
RSA_LEAF = RSA.leaf("example.com")
EC_LEAF = EC.leaf("example.com")
RSA_CHAIN = pem(RSA_LEAF.cert, RSA.intermediate.cert)
EC_CHAIN = pem(EC_LEAF.cert, EC.intermediate.cert)
RSA_KEY = key_pem(RSA_LEAF.key)
EC_KEY = key_pem(EC_LEAF.key)


def armour(label: str, body: bytes) -> bytes:
    lines = base64.encodebytes(body).decode("ascii")
    return f"-----BEGIN {label}-----\n{lines}-----END {label}-----\n".encode("ascii")


def body_lines(pem_data: bytes) -> list[str]:
    """The base64 lines of a PEM input: what must never appear in a message."""
    return [
        line
        for line in pem_data.decode("ascii").splitlines()
        if line and not line.startswith("-----") and ":" not in line
    ]


# --- certificate chains ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "length"),
    [
        (RSA_CHAIN, 2),
        (EC_CHAIN, 2),
        (pem(RSA_LEAF.cert), 1),
        (pem(RSA_LEAF.cert, RSA.intermediate.cert, RSA.root.cert), 3),
        (b"# a comment openssl writes\nsubject=CN=x\n" + RSA_CHAIN + b"\ntrailing text\n", 2),
        (RSA_CHAIN.replace(b"\n", b"\r\n"), 2),
        (bytearray(RSA_CHAIN), 2),
    ],
    ids=["rsa", "ec", "leaf-only", "with-root", "text-around", "crlf", "bytearray"],
)
def test_chains_parse_in_order(data: bytes, length: int) -> None:
    chain = parse_chain(data)
    assert len(chain) == length
    assert chain[0].subject.rfc4514_string() == "CN=example.com"


def test_chain_order_is_kept() -> None:
    chain = parse_chain(RSA_CHAIN)
    assert chain == (RSA_LEAF.cert, RSA.intermediate.cert)


BROKEN_BASE64 = RSA_CHAIN.replace(RSA_CHAIN.splitlines()[3], b"!!!not base64!!!", 1)
GARBAGE_DER = armour("CERTIFICATE", b"\x30\x03\x02\x01\x01")


@pytest.mark.parametrize(
    ("data", "problem", "message"),
    [
        (b"", PemProblem.EMPTY, "empty"),
        (b" \n\t\r\n", PemProblem.EMPTY, "empty"),
        (b"hello, world", PemProblem.NO_PEM, "no PEM block"),
        (bytes(range(256)) * 4, PemProblem.NO_PEM, "no PEM block"),
        (
            b"-----BEGIN certificate-----\nAAAA\n-----END certificate-----",
            PemProblem.NO_PEM,
            "no PEM",
        ),
        (RSA_KEY, PemProblem.WRONG_BLOCK, "block 1 is a private key where a certificate belongs"),
        (RSA_CHAIN + RSA_KEY, PemProblem.WRONG_BLOCK, "block 3 is a private key"),
        (key_pem(EC_LEAF.key, "traditional"), PemProblem.WRONG_BLOCK, "private key"),
        (armour("CERTIFICATE REQUEST", b"x"), PemProblem.WRONG_BLOCK, "CERTIFICATE REQUEST"),
        (RSA_CHAIN[: len(RSA_CHAIN) // 3], PemProblem.TRUNCATED, "block 1 .* no END line"),
        (RSA_CHAIN[:-10], PemProblem.TRUNCATED, "block 2 .* no END line"),
        (RSA_CHAIN[40:], PemProblem.TRUNCATED, "END CERTIFICATE line has no BEGIN"),
        (
            RSA_CHAIN[:200] + pem(RSA.intermediate.cert),
            PemProblem.TRUNCATED,
            "no END line before the next BEGIN",
        ),
        (
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n",
            PemProblem.MALFORMED,
            "begins as CERTIFICATE but ends as PRIVATE KEY",
        ),
        (BROKEN_BASE64, PemProblem.MALFORMED, "block 1 is not a valid X.509 certificate"),
        (GARBAGE_DER, PemProblem.MALFORMED, "not a valid X.509 certificate"),
        (RSA_CHAIN + GARBAGE_DER, PemProblem.MALFORMED, "block 3"),
        (
            pem(*[RSA.intermediate.cert] * (MAX_CHAIN_LENGTH + 1)),
            PemProblem.TOO_MANY,
            f"at most {MAX_CHAIN_LENGTH}",
        ),
        (RSA_CHAIN + b"\n" * MAX_PEM_BYTES, PemProblem.TOO_LARGE, f"at most {MAX_PEM_BYTES}"),
    ],
    ids=[
        "empty",
        "whitespace",
        "text",
        "binary",
        "lowercase-label",
        "key-instead",
        "key-appended",
        "sec1-key-instead",
        "csr",
        "truncated",
        "truncated-last",
        "begin-cut",
        "unterminated-then-next",
        "label-mismatch",
        "broken-base64",
        "garbage-der",
        "garbage-third",
        "too-many",
        "too-large",
    ],
)
def test_chain_errors(data: bytes, problem: PemProblem, message: str) -> None:
    with pytest.raises(PemError, match=message) as caught:
        parse_chain(data)
    assert caught.value.problem is problem
    assert isinstance(caught.value, CertfleetError)
    for line in body_lines(RSA_KEY) + body_lines(key_pem(EC_LEAF.key, "traditional")):
        assert line not in str(caught.value)


def test_pem_errors_survive_pickling() -> None:
    error = PemError(PemProblem.TRUNCATED, "block 1 has no END line")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.problem, str(copy)) == (error.problem, str(error))


def test_chain_must_be_bytes() -> None:
    with pytest.raises(TypeError):
        parse_chain(RSA_CHAIN.decode())  # type: ignore[arg-type]


def test_trust_bundles_may_be_long() -> None:
    many = pem(*[RSA.root.cert, EC.root.cert] * MAX_CHAIN_LENGTH)
    assert len(parse_trust_bundle(many)) == 2 * MAX_CHAIN_LENGTH
    with pytest.raises(PemError) as caught:
        parse_trust_bundle(RSA_KEY)
    assert caught.value.problem is PemProblem.WRONG_BLOCK


# --- private keys -------------------------------------------------------------------------

EC_PARAMS = armour("EC PARAMETERS", b"\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07")


@pytest.mark.parametrize(
    ("data", "kind", "label"),
    [
        (key_pem(rsa_key()), rsa.RSAPrivateKey, b"BEGIN PRIVATE KEY"),
        (key_pem(rsa_key(), "traditional"), rsa.RSAPrivateKey, b"BEGIN RSA PRIVATE KEY"),
        (key_pem(ec_key()), ec.EllipticCurvePrivateKey, b"BEGIN PRIVATE KEY"),
        (key_pem(ec_key(), "traditional"), ec.EllipticCurvePrivateKey, b"BEGIN EC PRIVATE KEY"),
        (EC_PARAMS + key_pem(ec_key(), "traditional"), ec.EllipticCurvePrivateKey, b"EC PARAM"),
        (b"comment\n" + key_pem(rsa_key()).replace(b"\n", b"\r\n"), rsa.RSAPrivateKey, b"\r\n"),
    ],
    ids=["rsa-pkcs8", "rsa-pkcs1", "ec-pkcs8", "ec-sec1", "ec-params-first", "crlf-comment"],
)
def test_keys_parse(data: bytes, kind: type, label: bytes) -> None:
    assert label in data  # the sample really is in the format the id claims
    key = parse_private_key(data)
    assert isinstance(key, kind)


def test_ed25519_key_parses_for_the_strength_check_to_judge() -> None:
    assert parse_private_key(key_pem(ed25519_key())) is not None


LEGACY_ENCRYPTED = rsa_key().private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.BestAvailableEncryption(b"secret"),
)
X25519 = x25519.X25519PrivateKey.generate().private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)
KEY_BODY = RSA_KEY.split(b"\n")[5]
MALFORMED_KEY = RSA_KEY.replace(KEY_BODY, KEY_BODY[::-1], 1)


@pytest.mark.parametrize(
    ("data", "problem", "message"),
    [
        (b"", PemProblem.EMPTY, "private key is empty"),
        (b"not a key", PemProblem.NO_PEM, "no PEM block"),
        (EC_PARAMS, PemProblem.NO_PEM, "no PRIVATE KEY block"),
        (RSA_CHAIN, PemProblem.WRONG_BLOCK, "certificate where a private key belongs"),
        (RSA_KEY + pem(RSA_LEAF.cert), PemProblem.WRONG_BLOCK, "block 2 is a certificate"),
        (armour("PUBLIC KEY", b"x"), PemProblem.WRONG_BLOCK, "PUBLIC KEY, not a private key"),
        (RSA_KEY + EC_KEY, PemProblem.MULTIPLE_KEYS, "found 2 private keys"),
        (key_pem(rsa_key(), "encrypted"), PemProblem.ENCRYPTED, "encrypted"),
        (LEGACY_ENCRYPTED, PemProblem.ENCRYPTED, "encrypted"),
        (RSA_KEY[:-40], PemProblem.TRUNCATED, "no END line"),
        (MALFORMED_KEY, PemProblem.MALFORMED, r"block 1 \(PRIVATE KEY\) is malformed"),
        (armour("RSA PRIVATE KEY", b"\x30\x00"), PemProblem.MALFORMED, "malformed"),
        (armour("OPENSSH PRIVATE KEY", b"openssh-key-v1\x00"), PemProblem.UNSUPPORTED, "OPENSSH"),
        (armour("DSA PRIVATE KEY", b"x"), PemProblem.UNSUPPORTED, "DSA PRIVATE KEY"),
        (X25519, PemProblem.UNSUPPORTED, "X25519 cannot serve TLS"),
        (RSA_KEY + b" " * MAX_PEM_BYTES, PemProblem.TOO_LARGE, "at most"),
    ],
    ids=[
        "empty",
        "text",
        "only-ec-params",
        "chain-instead",
        "key-and-cert",
        "public-key",
        "two-keys",
        "encrypted-pkcs8",
        "encrypted-legacy",
        "truncated",
        "malformed-body",
        "malformed-der",
        "openssh",
        "dsa",
        "x25519",
        "too-large",
    ],
)
def test_key_errors(data: bytes, problem: PemProblem, message: str) -> None:
    with pytest.raises(PemError, match=message) as caught:
        parse_private_key(data)
    assert caught.value.problem is problem
    # Nothing of the key in the message, nothing in a chained cause.
    for line in body_lines(RSA_KEY) + body_lines(EC_KEY) + body_lines(MALFORMED_KEY):
        assert line not in str(caught.value)
    assert caught.value.__cause__ is None


# --- bundles -----------------------------------------------------------------------------


def test_bundle_parses_both_files() -> None:
    bundle = parse_bundle(RSA_CHAIN, RSA_KEY)
    assert bundle.leaf == RSA_LEAF.cert
    assert bundle.intermediates == (RSA.intermediate.cert,)
    assert isinstance(bundle.key, rsa.RSAPrivateKey)
    assert "key" not in repr(bundle)


def test_bundle_needs_a_leaf() -> None:
    with pytest.raises(ValueError, match="leaf"):
        CertificateBundle(chain=(), key=rsa_key())


@pytest.mark.parametrize(
    ("fullchain", "privkey"), [(b"", RSA_KEY), (RSA_CHAIN, b""), (RSA_KEY, RSA_CHAIN)]
)
def test_bundle_errors_are_pem_errors(fullchain: bytes, privkey: bytes) -> None:
    with pytest.raises(PemError):
        parse_bundle(fullchain, privkey)


# --- totality: any bytes parse or raise PemError --------------------------------------------

SAMPLES = [
    RSA_CHAIN,
    EC_CHAIN,
    RSA_KEY,
    EC_KEY,
    key_pem(RSA_LEAF.key, "traditional"),
    key_pem(EC_LEAF.key, "traditional"),
    key_pem(ed25519_key()),
    X25519,
    LEGACY_ENCRYPTED,
]
DERS = [
    RSA_LEAF.cert.public_bytes(serialization.Encoding.DER),
    EC_LEAF.cert.public_bytes(serialization.Encoding.DER),
    issue(subject="bare", key=ec_key()).cert.public_bytes(serialization.Encoding.DER),
    *(base64.b64decode(b"".join(s.splitlines()[1:-1])) for s in (RSA_KEY, EC_KEY)),
    base64.b64decode(b"".join(key_pem(EC_LEAF.key, "traditional").splitlines()[1:-1])),
    base64.b64decode(b"".join(key_pem(RSA_LEAF.key, "traditional").splitlines()[1:-1])),
]
LABELS = [
    "CERTIFICATE",
    "PRIVATE KEY",
    "RSA PRIVATE KEY",
    "EC PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "EC PARAMETERS",
    "X509 CRL",
]


def _flip(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        out[position % len(out)] = value
    return bytes(out)


_edits = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6)

arbitrary_pem = st.one_of(
    st.binary(max_size=600),
    st.builds(
        lambda sample, cut: sample[: cut % (len(sample) + 1)],
        st.sampled_from(SAMPLES),
        st.integers(0, 10**6),
    ),
    st.builds(_flip, st.sampled_from(SAMPLES), _edits),
    st.builds(
        lambda label, der, edits: armour(label, _flip(der, edits)),
        st.sampled_from(LABELS),
        st.sampled_from(DERS),
        _edits,
    ),
    st.builds(
        lambda label, der, cut: armour(label, der[:cut]),
        st.sampled_from(LABELS),
        st.sampled_from(DERS),
        st.integers(0, 2000),
    ),
    st.builds(armour, st.sampled_from(LABELS), st.binary(max_size=300)),
    st.lists(st.sampled_from(SAMPLES), min_size=1, max_size=4).map(b"garbage\n".join),
)

PARSERS: list[Callable[[bytes], object]] = [parse_chain, parse_trust_bundle, parse_private_key]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arbitrary_pem)
def test_parsers_accept_or_raise_pem_error_only(data: bytes) -> None:
    for parser in PARSERS:
        try:
            parser(data)
        except PemError as exc:
            assert str(exc)
            assert isinstance(exc.problem, PemProblem)
