"""Trust roots: the CA certificates every served chain must lead to (pure: PEM in, roots out).

A certificate is trusted when it chains to the system roots (Mozilla's list as shipped by
certifi, the same in the image, on a VM and on a build machine) or to a CloudHost's trust
bundle (a private CA, the test bed's pebble). The programs read the files; this module only
parses and bounds them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from certfleet.core.errors import CertfleetError
from certfleet.core.facts import fingerprint_sha256

# certifi's bundle is about 300 KiB; a Secret holds at most 1 MiB.
MAX_TRUST_BUNDLE_BYTES = 2 * 1024 * 1024
MAX_TRUST_ROOTS = 2000

Roots = tuple[x509.Certificate, ...]


class TrustBundleError(CertfleetError):
    """A trust bundle that cannot be used: not PEM, too large, no certificate in it."""


def parse_trust_bundle(pem: bytes, source: str) -> Roots:
    """The certificates of a PEM bundle; ``source`` names it in the error (never its bytes)."""
    if len(pem) > MAX_TRUST_BUNDLE_BYTES:
        raise TrustBundleError(
            f"the trust bundle {source} holds {len(pem)} bytes, more than the "
            f"{MAX_TRUST_BUNDLE_BYTES} allowed"
        )
    try:
        with warnings.catch_warnings():
            # A few old roots (certifi has one) carry a negative serial: still a root.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            roots = tuple(x509.load_pem_x509_certificates(pem))
    except ValueError:
        raise TrustBundleError(
            f"the trust bundle {source} is not a list of PEM certificates"
        ) from None
    if len(roots) > MAX_TRUST_ROOTS:
        raise TrustBundleError(
            f"the trust bundle {source} holds {len(roots)} certificates, more than "
            f"{MAX_TRUST_ROOTS}"
        )
    return roots


def combine(*bundles: Iterable[x509.Certificate]) -> Roots:
    """One set of roots, in order, each certificate once."""
    seen: set[str] = set()
    combined = []
    for bundle in bundles:
        for root in bundle:
            fingerprint = fingerprint_sha256(root)
            if fingerprint not in seen:
                seen.add(fingerprint)
                combined.append(root)
    return tuple(combined)
