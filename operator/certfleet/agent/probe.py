"""Ask the local listener which certificate it serves: one TLS handshake with the domain as SNI.

The served leaf is compared with the installed one by SHA-256 fingerprint, which is exact
whoever issued it, so the handshake itself does not verify; with a CA file it is verified too
(chain and host name), the way clients will see it.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from certfleet.core.errors import CertfleetError
from certfleet.core.facts import certificate_facts

DEFAULT_TIMEOUT_SECONDS = 5.0


class ProbeError(CertfleetError):
    """The handshake failed, or verification of what is served failed."""


@dataclass(frozen=True, slots=True)
class ServedCertificate:
    serial: str
    sha256: str
    not_after: datetime


class TlsProber:
    def __init__(
        self,
        host: str,
        port: int,
        server_name: str,
        ca_file: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.host = host
        self.port = port
        self.server_name = server_name
        self._ca_file = ca_file
        self._timeout = timeout

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def served(self) -> ServedCertificate:
        """The leaf served now (not verified: this is for identifying it)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        der = self._handshake(context)
        try:
            facts = certificate_facts(x509.load_der_x509_certificate(der))
        except ValueError as error:
            raise ProbeError(f"{self.address} serves an unreadable certificate: {error}") from None
        return ServedCertificate(facts.serial, facts.sha256, facts.not_after)

    def verify(self) -> None:
        """A verified handshake against the CA file (if one is configured)."""
        if self._ca_file is None:
            return
        try:
            context = ssl.create_default_context(cafile=str(self._ca_file))
        except (OSError, ssl.SSLError) as error:
            raise ProbeError(f"cannot load the probe CA file {self._ca_file}: {error}") from None
        self._handshake(context)

    def wait_for(
        self,
        sha256: str,
        timeout: float,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> ServedCertificate:
        """Handshake until the leaf with `sha256` is served: a graceful reload hands the
        listener to new workers asynchronously. Raises ProbeError with what was served."""
        deadline = monotonic() + timeout
        while True:
            try:
                served = self.served()
                if served.sha256 == sha256:
                    self.verify()
                    return served
                seen = f"serial {served.serial}"
            except ProbeError as error:
                seen = str(error)
            if monotonic() >= deadline:
                raise ProbeError(
                    f"{self.address} (SNI {self.server_name}) still serves {seen} "
                    f"{timeout:.1f} s after the reload"
                )
            sleep(0.05)

    def _handshake(self, context: ssl.SSLContext) -> bytes:
        try:
            with (
                socket.create_connection((self.host, self.port), timeout=self._timeout) as raw,
                context.wrap_socket(raw, server_hostname=self.server_name) as tls,
            ):
                der = tls.getpeercert(binary_form=True)
        except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
            raise ProbeError(
                f"TLS handshake with {self.address} (SNI {self.server_name}) failed: {error}"
            ) from None
        if der is None:
            raise ProbeError(f"{self.address} sent no certificate")
        return der
