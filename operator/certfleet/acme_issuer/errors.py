"""Errors of the ACME issuer.

Callers branch on the type: rate limits and outages mean "retry later" (after
``retry_after_seconds`` when the CA said so), a failed challenge or a refused request needs a
human. Messages name the domain and the CA's own detail; they never carry key material.
"""

from __future__ import annotations

from certfleet.api.reasons import CertificateReason
from certfleet.core.errors import CertfleetError, RetryLaterError


class AcmeError(CertfleetError):
    """Base of every failure of an ACME issuance."""


class AcmeRateLimitedError(AcmeError, RetryLaterError):
    """The CA refused because of a rate limit (``rateLimited`` or HTTP 429)."""

    def __init__(self, message: str, retry_after_seconds: float | None) -> None:
        RetryLaterError.__init__(self, message, retry_after_seconds)


class AcmeChallengeFailedError(AcmeError):
    """The CA could not validate a domain: its challenge or authorization turned invalid."""

    def __init__(self, message: str, domain: str, detail: str) -> None:
        super().__init__(message)
        self.domain = domain
        self.detail = detail


class AcmeRejectedError(AcmeError):
    """The CA refused the request for a reason a retry will not fix (bad CSR, policy, account,
    an order that turned invalid): a human has to look at the message."""


class AcmeUnavailableError(AcmeError):
    """The CA could not be reached, timed out or answered with a server error: retry later."""


class AcmeDeadlineExceededError(AcmeError):
    """The issuance did not finish within its deadline."""


class AcmeResponseTooLargeError(AcmeError):
    """The CA's response body was larger than any honest one (a certificate chain, a JSON
    document): the server named in the spec is not behaving like an ACME CA."""


class InvalidAcmeServerError(AcmeError, ValueError):
    """`spec.acme.server` is neither a known CA name nor an https:// directory URL."""


class Dns01Error(AcmeError):
    """DNS-01 could not be answered: the DNS provider refused or failed, or the zone could
    not be found."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Dns01PropagationTimeoutError(Dns01Error):
    """The TXT record did not become visible at every authoritative server in time."""

    reason = CertificateReason.DNS01PropagationTimeout
