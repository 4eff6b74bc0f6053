"""PEM input: a full chain (leaf first, then intermediates) and one private key.

PEM armour is split here, so every failure gets a precise error; the DER inside each block is
left to ``cryptography``. Text outside the blocks (comments, ``openssl`` bag attributes) is
allowed, as RFC 7468 allows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization

from certfleet.core.errors import PemError, PemProblem
from certfleet.core.keys import PrivateKey, as_server_key

# A Kubernetes Secret holds at most 1 MiB, and a whole CA trust bundle fits well inside it.
MAX_PEM_BYTES = 1024 * 1024
# Real chains are 1 to 4 certificates; a longer one is a mistake (say, a trust bundle).
MAX_CHAIN_LENGTH = 10

_MARKER = re.compile(r"-----(BEGIN|END) ([A-Z0-9 ]{1,64})-----")
_CERTIFICATE = "CERTIFICATE"
_KEY_LABELS = frozenset({"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"})
# `openssl ecparam -genkey` writes the curve before the key; it carries nothing secret.
_IGNORED_IN_KEY = frozenset({"EC PARAMETERS"})


@dataclass(frozen=True, slots=True)
class CertificateBundle:
    """A parsed certificate chain and its private key. Whether they fit is for the checks."""

    chain: tuple[x509.Certificate, ...]
    key: PrivateKey = field(repr=False)  # repr would be harmless, but keep keys out of logs

    def __post_init__(self) -> None:
        if not self.chain:
            raise ValueError("a certificate bundle needs at least the leaf certificate")

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        return self.chain[1:]


def parse_chain(data: bytes) -> tuple[x509.Certificate, ...]:
    """Parse a full chain: CERTIFICATE blocks only, leaf first, at most MAX_CHAIN_LENGTH."""
    return _parse_certificates(data, "certificate chain", MAX_CHAIN_LENGTH)


def parse_trust_bundle(data: bytes) -> tuple[x509.Certificate, ...]:
    """Parse a bundle of trusted root certificates (any number, within MAX_PEM_BYTES)."""
    return _parse_certificates(data, "trust bundle", None)


def parse_private_key(data: bytes) -> PrivateKey:
    """Parse exactly one unencrypted private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).

    Error messages name the block and the problem and never include key material.
    """
    blocks = _split(data, "private key")
    keys: list[_Block] = []
    for block in blocks:
        if block.label.endswith("PRIVATE KEY"):
            keys.append(block)
        elif block.label == _CERTIFICATE:
            raise PemError(
                PemProblem.WRONG_BLOCK,
                f"private key: block {block.index} is a certificate where a private key belongs",
            )
        elif block.label not in _IGNORED_IN_KEY:
            raise PemError(
                PemProblem.WRONG_BLOCK,
                f"private key: block {block.index} is {block.label}, not a private key",
            )
    if not keys:
        raise PemError(PemProblem.NO_PEM, "private key: no PRIVATE KEY block found")
    if len(keys) > 1:
        raise PemError(
            PemProblem.MULTIPLE_KEYS,
            f"private key: found {len(keys)} private keys; exactly one is expected",
        )
    block = keys[0]
    if block.label == "ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in block.text:
        raise PemError(
            PemProblem.ENCRYPTED,
            "private key is encrypted and no password can be given; "
            "store it unencrypted (openssl pkey -in key.pem -out plain.pem)",
        )
    if block.label not in _KEY_LABELS:
        raise PemError(
            PemProblem.UNSUPPORTED,
            f"private key: {block.label} is not supported; "
            "use PKCS#8 (PRIVATE KEY), PKCS#1 (RSA PRIVATE KEY) or SEC1 (EC PRIVATE KEY)",
        )
    try:
        loaded = serialization.load_pem_private_key(block.text, password=None)
    except UnsupportedAlgorithm:
        raise PemError(
            PemProblem.UNSUPPORTED,
            f"private key ({block.label}) uses an algorithm or curve that is not supported",
        ) from None
    except Exception:
        # Never chain the cause: keep anything derived from key bytes out of tracebacks.
        # cryptography raises ValueError, TypeError and others for bad input; all mean this.
        raise PemError(
            PemProblem.MALFORMED, f"private key: block {block.index} ({block.label}) is malformed"
        ) from None
    key = as_server_key(loaded)
    if key is None:
        kind = type(loaded).__name__.removeprefix("_").removesuffix("PrivateKey")
        raise PemError(
            PemProblem.UNSUPPORTED,
            f"private key of type {kind} cannot serve TLS; use RSA or ECDSA",
        )
    return key


def parse_bundle(fullchain: bytes, privkey: bytes) -> CertificateBundle:
    """Parse the two files a webserver needs (fullchain.pem, privkey.pem) into a bundle."""
    return CertificateBundle(chain=parse_chain(fullchain), key=parse_private_key(privkey))


@dataclass(frozen=True, slots=True)
class _Block:
    index: int  # 1-based, as a person counts blocks in a file
    label: str
    text: bytes  # BEGIN line through END line, as cryptography's loaders want it


def _split(data: bytes, what: str) -> list[_Block]:
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"{what} must be bytes, not {type(data).__name__}")
    if len(data) > MAX_PEM_BYTES:
        raise PemError(
            PemProblem.TOO_LARGE,
            f"{what} is {len(data)} bytes; at most {MAX_PEM_BYTES} are accepted",
        )
    if not data.strip():
        raise PemError(PemProblem.EMPTY, f"{what} is empty")
    # latin-1 maps every byte to one character: offsets stay byte offsets, nothing fails.
    text = bytes(data).decode("latin-1")
    blocks: list[_Block] = []
    open_label: str | None = None
    open_at = 0
    for marker in _MARKER.finditer(text):
        kind, label = marker.group(1), marker.group(2)
        number = len(blocks) + 1
        if kind == "BEGIN":
            if open_label is not None:
                raise PemError(
                    PemProblem.TRUNCATED,
                    f"{what}: block {number} ({open_label}) has no END line "
                    "before the next BEGIN line; it looks truncated",
                )
            open_label, open_at = label, marker.start()
        elif open_label is None:
            raise PemError(
                PemProblem.TRUNCATED,
                f"{what}: an END {label} line has no BEGIN line; the input looks truncated",
            )
        elif label != open_label:
            raise PemError(
                PemProblem.MALFORMED,
                f"{what}: block {number} begins as {open_label} but ends as {label}",
            )
        else:
            blocks.append(_Block(number, label, text[open_at : marker.end()].encode("latin-1")))
            open_label = None
    if open_label is not None:
        raise PemError(
            PemProblem.TRUNCATED,
            f"{what}: block {len(blocks) + 1} ({open_label}) has no END line; "
            "the input looks truncated",
        )
    if not blocks:
        raise PemError(
            PemProblem.NO_PEM,
            f"{what} contains no PEM block (a line such as -----BEGIN {_CERTIFICATE}-----)",
        )
    return blocks


def _parse_certificates(data: bytes, what: str, limit: int | None) -> tuple[x509.Certificate, ...]:
    blocks = _split(data, what)
    for block in blocks:
        if block.label.endswith("PRIVATE KEY"):
            # Say what it is, never what it contains.
            raise PemError(
                PemProblem.WRONG_BLOCK,
                f"{what}: block {block.index} is a private key where a certificate belongs",
            )
        if block.label != _CERTIFICATE:
            raise PemError(
                PemProblem.WRONG_BLOCK,
                f"{what}: block {block.index} is {block.label}, not a {_CERTIFICATE}",
            )
    if limit is not None and len(blocks) > limit:
        raise PemError(
            PemProblem.TOO_MANY,
            f"{what} has {len(blocks)} certificates; at most {limit} are accepted",
        )
    return tuple(_load_certificate(block, what) for block in blocks)


def _load_certificate(block: _Block, what: str) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(block.text)
        _touch(cert)
    except UnsupportedAlgorithm as exc:
        raise PemError(
            PemProblem.UNSUPPORTED,
            f"{what}: certificate {block.index} uses an unsupported algorithm: {exc}",
        ) from exc
    except Exception as exc:
        # cryptography reports malformed DER as ValueError, but also DuplicateExtension,
        # TypeError and others, some only when a field is first read; all mean "malformed".
        raise PemError(
            PemProblem.MALFORMED,
            f"{what}: block {block.index} is not a valid X.509 certificate: {exc}",
        ) from exc
    return cert


def _touch(cert: x509.Certificate) -> None:
    """Read every field the checks use, so lazy parse errors surface here, not later."""
    _ = (
        cert.serial_number,
        cert.not_valid_before_utc,
        cert.not_valid_after_utc,
        cert.subject.rfc4514_string(),
        cert.issuer.rfc4514_string(),
        cert.public_key(),
        cert.fingerprint(hashes.SHA256()),
    )
    for extension in cert.extensions:
        _ = extension.value
