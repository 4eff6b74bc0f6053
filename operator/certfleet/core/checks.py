"""Single checks on a parsed certificate: each returns None (passed) or a Finding.

A Finding carries a stable ``Reason`` (for the status condition, the event and a metric
label) and a message for people. Messages describe certificates and keys by their public
attributes only; they never contain key material.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from certfleet.core.clock import rfc3339
from certfleet.core.domains import domain_matches, validate_domain
from certfleet.core.facts import dns_names
from certfleet.core.keys import PrivateKey, describe_key, public_key_info

MIN_RSA_BITS = 2048
# What browsers accept on a server certificate; P-521 is absent from Chrome's list.
ACCEPTED_CURVES = frozenset({"secp256r1", "secp384r1"})
_SHOWN_NAMES = 10  # keep messages readable for certificates with hundreds of names


class Reason(StrEnum):
    """Why a certificate is not (or no longer) acceptable. Values are part of the API."""

    Missing = "Missing"
    InvalidPEM = "InvalidPEM"
    KeyMismatch = "KeyMismatch"
    WeakKey = "WeakKey"
    NameMismatch = "NameMismatch"
    NotForServers = "NotForServers"  # a CA certificate, or one whose usage excludes servers
    BrokenChain = "BrokenChain"
    UntrustedChain = "UntrustedChain"
    NotYetValid = "NotYetValid"
    Expired = "Expired"
    RenewalDue = "RenewalDue"


@dataclass(frozen=True, slots=True)
class Finding:
    reason: Reason
    message: str


def check_leaf_first(chain: Sequence[x509.Certificate]) -> Finding | None:
    """A full chain starts with the leaf. Checked before the key, so a reversed chain is
    reported as what it is, not as a key that does not match its first certificate."""
    if len(chain) > 1 and _is_ca(chain[0]) and not _is_ca(chain[-1]):
        return Finding(
            Reason.BrokenChain,
            "the chain is in reverse order: a full chain starts with the leaf, followed by the "
            "certificate that issued it",
        )
    return None


def check_server_certificate(leaf: x509.Certificate) -> Finding | None:
    """The leaf is an end-entity certificate that may serve TLS: not a CA (basicConstraints
    CA:FALSE or absent) and, when it names its usages (extendedKeyUsage), serverAuth is one."""
    if _is_ca(leaf):
        return Finding(
            Reason.NotForServers,
            "the leaf certificate is a CA certificate (basicConstraints CA:TRUE); a webserver "
            "needs an end-entity certificate",
        )
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usages:
        return None
    return Finding(
        Reason.NotForServers,
        "the leaf certificate's extendedKeyUsage does not include serverAuth "
        f"(it has {', '.join(sorted(u.dotted_string for u in usages)) or 'none'})",
    )


def check_key_matches(leaf: x509.Certificate, key: PrivateKey) -> Finding | None:
    """The private key is the one the leaf certificate was issued for."""
    leaf_key = leaf.public_key()
    if public_key_info(leaf_key) == public_key_info(key.public_key()):
        return None
    return Finding(
        Reason.KeyMismatch,
        f"the private key ({describe_key(key)}) does not belong to the leaf certificate "
        f"(whose key is {describe_key(leaf_key)})",
    )


def check_key_strength(
    leaf: x509.Certificate, *, min_rsa_bits: int = MIN_RSA_BITS
) -> Finding | None:
    """The leaf's key algorithm and size are acceptable for a public web server."""
    key = leaf.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size >= min_rsa_bits:
            return None
        detail = f"at least {min_rsa_bits} bits are required"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name in ACCEPTED_CURVES:
            return None
        detail = "accepted curves are secp256r1 (P-256) and secp384r1 (P-384)"
    else:
        detail = "only RSA and ECDSA keys work with browsers"
    return Finding(Reason.WeakKey, f"the leaf certificate's key is {describe_key(key)}; {detail}")


def check_names(leaf: x509.Certificate, names: Iterable[str]) -> Finding | None:
    """The leaf covers every name (the domain and each alternative name).

    Names are validated and normalised first (InvalidDomainError for a bad spec, which is
    the caller's error, not the certificate's). The certificate may cover more names.
    """
    wanted = list(dict.fromkeys(validate_domain(name) for name in names))
    present = dns_names(leaf)
    missing = [name for name in wanted if not any(domain_matches(p, name) for p in present)]
    if not missing:
        return None
    if not present:
        return Finding(
            Reason.NameMismatch,
            f"the certificate has no DNS names (subjectAltName), so it does not cover "
            f"{_listing(missing)}",
        )
    return Finding(
        Reason.NameMismatch,
        f"the certificate does not cover {_listing(missing)}; it covers {_listing(present)}",
    )


def check_chain_links(chain: Sequence[x509.Certificate]) -> Finding | None:
    """Each certificate is signed by the next one, and each of those is a CA."""
    for index in range(len(chain) - 1):
        child, parent = chain[index], chain[index + 1]
        if child.issuer != parent.subject:
            return Finding(
                Reason.BrokenChain,
                f"{_which(index, child)} was issued by {_name(child.issuer)}, but the next "
                f"certificate is {_name(parent.subject)}{_order_hint(chain)}",
            )
        if not _signed_by(child, parent):
            return Finding(
                Reason.BrokenChain,
                f"the signature of {_which(index, child)} does not verify with the key of "
                f"the next certificate, {_name(parent.subject)}",
            )
        if not _is_ca(parent):
            return Finding(
                Reason.BrokenChain,
                f"{_which(index + 1, parent)} signs the certificate before it "
                "but is not a CA certificate",
            )
    return None


def check_trust(
    chain: Sequence[x509.Certificate],
    trust_roots: Sequence[x509.Certificate],
    now: datetime,
    name: str,
) -> Finding | None:
    """The chain leads to one of ``trust_roots`` as a TLS client sees it, for ``name``.

    The path is built by cryptography's X.509 verifier (RFC 5280 and the Web PKI's rules),
    not by hand: certificates beyond the path and cross-signed intermediates, as a CA's
    answer may hold, are fine; every CA on the path must be a CA that may sign. A private
    CA's habits TLS clients accept (no keyUsage, no key identifiers) are accepted too.

    A chain that verifies at a moment when all its certificates are valid, but not at
    ``now``, is judged on its dates (NotYetValid, Expired, a root from the bundle included),
    so an expired certificate is called expired, not untrusted.
    """
    now = _aware(now)
    if not trust_roots:
        return Finding(Reason.UntrustedChain, "the trust bundle is empty; nothing is trusted")
    try:
        subject = x509.DNSName(name.replace("*", "certfleet-trust-check", 1))
    except ValueError:
        return Finding(Reason.UntrustedChain, f"{name!r} cannot be verified as a server name")
    store = Store(list(trust_roots))
    try:
        _verify(chain, store, now, subject)
        return None
    except VerificationError as error:
        problem = _verification_problem(error)
    moment = max(cert.not_valid_before_utc for cert in chain)
    if moment != now and moment <= min(cert.not_valid_after_utc for cert in chain):
        try:
            path = _verify(chain, store, moment, subject)
        except VerificationError:
            pass
        else:
            dated = check_not_yet_valid(path, now) or check_expired(path, now)
            if dated is not None:
                return dated
    return Finding(
        Reason.UntrustedChain,
        f"the chain does not lead to any of the {len(trust_roots)} trusted root certificates; "
        f"its top was issued by {_name(chain[-1].issuer)}{problem}",
    )


def _may_sign_certificates(
    _policy: Policy, _cert: x509.Certificate, usage: x509.KeyUsage | None
) -> None:
    if usage is not None and not usage.key_cert_sign:
        raise ValueError("its keyUsage does not allow signing certificates (keyCertSign)")


# The Web PKI's rules, minus what a private CA commonly leaves out and TLS clients accept.
_CA_EXTENSIONS = (
    ExtensionPolicy.webpki_defaults_ca()
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _may_sign_certificates)
    .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
    .may_be_present(x509.SubjectKeyIdentifier, Criticality.AGNOSTIC, None)
)
_LEAF_EXTENSIONS = ExtensionPolicy.webpki_defaults_ee().may_be_present(
    x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None
)
_MAX_PROBLEM_CHARS = 300


def _verify(
    chain: Sequence[x509.Certificate], store: Store, moment: datetime, subject: x509.DNSName
) -> list[x509.Certificate]:
    """The verified path, leaf first and the trusted root last; raises VerificationError."""
    verifier = (
        PolicyBuilder()
        .store(store)
        .time(moment)
        .extension_policies(ca_policy=_CA_EXTENSIONS, ee_policy=_LEAF_EXTENSIONS)
        .build_server_verifier(subject)
    )
    return verifier.verify(chain[0], list(chain[1:]))


def _verification_problem(error: VerificationError) -> str:
    """The verifier's words, when they say more than "no path": " (what failed)"."""
    problem = str(error).removeprefix("validation failed: ")
    problem = problem.removeprefix("candidates exhausted: ")
    if "no interior errors" in problem or "exceeds max depth" in problem:
        return ""
    if len(problem) > _MAX_PROBLEM_CHARS:
        problem = problem[:_MAX_PROBLEM_CHARS] + "..."
    return f" ({problem})"


def check_not_yet_valid(chain: Sequence[x509.Certificate], now: datetime) -> Finding | None:
    """No certificate of the chain starts being valid after ``now``."""
    now = _aware(now)
    for index, cert in enumerate(chain):
        if now < cert.not_valid_before_utc:
            return Finding(
                Reason.NotYetValid,
                f"{_which(index, cert)} is not valid before "
                f"{rfc3339(cert.not_valid_before_utc)} (now: {rfc3339(now)})",
            )
    return None


def check_expired(chain: Sequence[x509.Certificate], now: datetime) -> Finding | None:
    """No certificate of the chain has expired at ``now`` (notAfter itself is still valid)."""
    now = _aware(now)
    for index, cert in enumerate(chain):
        if now > cert.not_valid_after_utc:
            return Finding(
                Reason.Expired,
                f"{_which(index, cert)} expired at {rfc3339(cert.not_valid_after_utc)} "
                f"(now: {rfc3339(now)})",
            )
    return None


def _signed_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except Exception:
        # ValueError (names differ), InvalidSignature, TypeError or UnsupportedAlgorithm
        # (an issuer key that cannot sign): all mean "not issued by this one".
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    if cert.version is x509.Version.v1:
        return True  # old v1 roots predate extensions; they are CAs by definition
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca


def _order_hint(chain: Sequence[x509.Certificate]) -> str:
    if len(chain) > 1 and _is_ca(chain[0]):
        return "; a full chain starts with the leaf, followed by the certificate that issued it"
    return ""


def _which(index: int, cert: x509.Certificate) -> str:
    if index == 0:
        return "the leaf certificate"
    return f"certificate {index + 1} of the chain ({_name(cert.subject)})"


def _name(name: x509.Name) -> str:
    return f"'{name.rfc4514_string()}'"


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN_NAMES])
    more = len(names) - _SHOWN_NAMES
    return f"{shown} and {more} more" if more > 0 else shown


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got naive {moment.isoformat()}")
    return moment
