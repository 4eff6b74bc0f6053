"""The roots the agent's certificates must chain to: the system's (certifi's Mozilla list, the
operator's too) and, beside them, the PEM file of ``--trust-bundle`` (the CloudHost's
spec.trustBundle copied to the node, for a private CA).

The agent judges what it installs as the operator judged what it published, so a certificate
written to the bucket by anyone else, signed by a CA of their own, is refused here too.
"""

from __future__ import annotations

import functools
from pathlib import Path

import certifi

from certfleet.core.errors import CertfleetError
from certfleet.core.trust import (
    MAX_TRUST_BUNDLE_BYTES,
    Roots,
    TrustBundleError,
    combine,
    parse_trust_bundle,
)


class TrustBundleFileError(CertfleetError):
    """`--trust-bundle` names a file that cannot be used."""


@functools.cache
def system_roots() -> Roots:
    return parse_trust_bundle(Path(certifi.where()).read_bytes(), f"{certifi.where()} (certifi)")


def trust_roots(bundle_file: str | None) -> Roots:
    """The system roots, and those of ``bundle_file`` first when it is given."""
    if not bundle_file:
        return system_roots()
    try:
        with open(bundle_file, "rb") as file:
            pem = file.read(MAX_TRUST_BUNDLE_BYTES + 1)
    except OSError as error:
        raise TrustBundleFileError(
            f"cannot read the trust bundle {bundle_file}: {error.strerror}"
        ) from None
    try:
        return combine(parse_trust_bundle(pem, bundle_file), system_roots())
    except TrustBundleError as error:
        raise TrustBundleFileError(str(error)) from None
