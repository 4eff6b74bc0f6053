"""The one exception family of certfleet.

Callers catch ``CertfleetError`` at the edges (handlers, agent loop) and map it to a status
condition or an event; anything else escaping the core is a bug.
"""

from __future__ import annotations

from enum import StrEnum


class CertfleetError(Exception):
    """Base of every error certfleet raises on purpose.

    ``retryable`` says whether the same call may succeed later without anyone changing
    anything (an outage), as opposed to input or configuration that must be fixed first.
    ``reason``, when set, is the status condition's reason for it (a stable name people alert
    on); None leaves the caller's own.
    """

    retryable = False
    reason: str | None = None


class RetryLaterError(CertfleetError):
    """A failure whose source said when to try again (a CA's Retry-After)."""

    retryable = True

    def __init__(self, message: str, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        # None: the source did not say; the caller picks its own back-off.
        self.retry_after_seconds = retry_after_seconds


class InvalidDomainError(CertfleetError, ValueError):
    """A domain name is not acceptable (syntax, length, IDNA, wildcard or path safety)."""


class PemProblem(StrEnum):
    """What exactly is wrong with a PEM input; stable, so tests and callers can branch on it."""

    EMPTY = "empty"
    TOO_LARGE = "too-large"
    NO_PEM = "no-pem"
    TRUNCATED = "truncated"
    WRONG_BLOCK = "wrong-block"
    MALFORMED = "malformed"
    TOO_MANY = "too-many"
    MULTIPLE_KEYS = "multiple-keys"
    ENCRYPTED = "encrypted"
    UNSUPPORTED = "unsupported"


class PemError(CertfleetError):
    """PEM input that is not a usable certificate chain or private key.

    Messages name the block and the problem; they never quote the input, so a private key
    cannot leak into a log, an event or a status condition.
    """

    def __init__(self, problem: PemProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem

    def __reduce__(self) -> tuple[type[PemError], tuple[PemProblem, str]]:
        # Exceptions pickle their args; ours has two constructor arguments, args has one.
        return (type(self), (self.problem, str(self)))
