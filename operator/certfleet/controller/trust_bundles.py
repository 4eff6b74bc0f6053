"""The TrustBundles port's common part: a CloudHost's roots are the system's plus its
``spec.trustBundle``, read through a lookup (Secrets in a cluster, files on a build machine).

The system roots are certifi's (Mozilla's list): the same in the image, on a VM and on a build
machine, whatever the host's /etc/ssl holds. They are read once per process.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import certifi

from certfleet.api.reasons import CertificateReason
from certfleet.api.spec import CloudHostConfig
from certfleet.core.errors import CertfleetError
from certfleet.core.trust import Roots, TrustBundleError, combine, parse_trust_bundle

# (namespace, name, key) -> the value, None when the Secret or its key does not exist.
SecretLookup = Callable[[str, str, str], bytes | None]
_PARSED_BUNDLES = 32  # the last bundles parsed, by digest: a reconciliation reads it again


class TrustBundleNotConfiguredError(CertfleetError):
    """The CloudHost's trust bundle is missing or is not PEM certificates."""

    reason = CertificateReason.TrustBundleNotConfigured
    retryable = True  # the hourly recheck or the next event sees a fixed Secret


@functools.cache
def system_roots() -> Roots:
    return parse_trust_bundle(Path(certifi.where()).read_bytes(), f"{certifi.where()} (certifi)")


class SecretTrustBundles:
    """The TrustBundles port over a Secret lookup."""

    def __init__(self, lookup: SecretLookup, system: Roots) -> None:
        self._lookup = lookup
        self._system = system
        self._parsed: dict[str, Roots] = {}
        self._lock = threading.Lock()

    def roots(self, cloudhost: CloudHostConfig) -> Roots:
        ref = cloudhost.trust_bundle
        if ref is None:
            return self._system
        described = (
            f"CloudHost {cloudhost.name}: the trust bundle (key {ref.key!r} of the Secret "
            f"{ref.secret.namespace}/{ref.secret.name})"
        )
        try:
            pem = self._lookup(ref.secret.namespace, ref.secret.name, ref.key)
        except CertfleetError as error:
            raise TrustBundleNotConfiguredError(f"{described}: {error}") from None
        if not pem:
            raise TrustBundleNotConfiguredError(f"{described} does not exist")
        digest = hashlib.sha256(pem).hexdigest()
        with self._lock:
            cached = self._parsed.get(digest)
        if cached is not None:
            return cached
        try:
            roots = combine(parse_trust_bundle(pem, "of the CloudHost"), self._system)
        except TrustBundleError as error:
            raise TrustBundleNotConfiguredError(f"{described}: {error}") from None
        with self._lock:
            if len(self._parsed) >= _PARSED_BUNDLES:
                self._parsed.clear()
            self._parsed[digest] = roots
        return roots
