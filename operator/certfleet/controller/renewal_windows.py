"""The RenewalWindows port over ACME Renewal Information (RFC 9773), remembered per
certificate until the CA's Retry-After: reconciliations may come often, ARI requests do not."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from certfleet.acme_issuer import ari
from certfleet.acme_issuer.directories import resolve_directory_url
from certfleet.acme_issuer.errors import InvalidAcmeServerError
from certfleet.acme_issuer.issuer import AcmeIssuer
from certfleet.api.spec import CertificateSpec
from certfleet.controller.ports import Window


class AriWindows:
    def __init__(
        self,
        issuer_for: Callable[[str], AcmeIssuer],
        min_ask_again_seconds: float = ari.DEFAULT_MIN_ASK_AGAIN_SECONDS,
        max_ask_again_seconds: float = ari.DEFAULT_MAX_ASK_AGAIN_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`issuer_for(directory_url)` lends an issuer's transport (no account is needed for
        this plain GET). A window is asked again after the CA's Retry-After, bounded by the
        two seconds (the minimum also after a failure or from a CA without ARI)."""
        self._issuer_for = issuer_for
        self._bounds = (min_ask_again_seconds, max_ask_again_seconds)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        # (directory, certificate digest) -> (monotonic time to ask again, window)
        self._known: dict[tuple[str, str], tuple[float, Window | None]] = {}

    def window(self, spec: CertificateSpec, certificate_pem: bytes) -> Window | None:
        """The window of the first of the spec's ACME servers that has one: the certificate
        may come from a fallback server, and only its own CA knows it (another answers 404)."""
        if spec.acme is None:
            return None
        for server in spec.acme.servers:
            window = self._window_at(server, certificate_pem)
            if window is not None:
                return window
        return None

    def _window_at(self, server: str, certificate_pem: bytes) -> Window | None:
        try:
            directory_url = resolve_directory_url(server)
        except InvalidAcmeServerError:
            return None  # advisory: the issuance reports the bad server
        key = (directory_url, hashlib.sha256(certificate_pem).hexdigest())
        now = self._monotonic()
        with self._lock:
            known = self._known.get(key)
        if known is not None and known[0] > now:
            return known[1]
        minimum, maximum = self._bounds
        info = self._issuer_for(directory_url).renewal_info(
            certificate_pem, min_ask_again_seconds=minimum, max_ask_again_seconds=maximum
        )
        window = info.window if info is not None else None
        ask_again = info.ask_again_seconds if info is not None else minimum
        with self._lock:
            # Forget what is stale, so replaced certificates do not pile up.
            for stale in [k for k, (until, _) in self._known.items() if until <= now]:
                del self._known[stale]
            self._known[key] = (now + ask_again, window)
        return window
