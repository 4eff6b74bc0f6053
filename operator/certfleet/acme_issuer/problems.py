"""Translation of what the acme library, requests and josepy raise into certfleet's AcmeError
family, with the CA's own words (its problem document) in the message."""

from __future__ import annotations

import josepy
import requests
from acme import errors as acme_errors
from acme import messages

from certfleet.acme_issuer.errors import (
    AcmeChallengeFailedError,
    AcmeDeadlineExceededError,
    AcmeError,
    AcmeRateLimitedError,
    AcmeRejectedError,
    AcmeUnavailableError,
)
from certfleet.acme_issuer.polling import parse_retry_after

_MAX_DETAIL = 600
# Problems that say "the CA is not well" rather than "your request is wrong".
_TRANSIENT_CODES = frozenset({"serverInternal", "badNonce"})


def describe_problem(problem: messages.Error) -> str:
    """``code: detail`` plus the subproblems (one per identifier), bounded in length."""
    text = f"{problem.code or problem.typ}: {problem.detail or problem.title or 'no detail'}"
    for sub in problem.subproblems or ():
        who = f"{sub.identifier.value}: " if sub.identifier is not None else ""
        text += f"; {who}{sub.code or sub.typ}: {sub.detail or 'no detail'}"
    return _bounded(text)


def from_problem(
    problem: messages.Error,
    what: str,
    operation: str,
    status: int | None = None,
    retry_after: str | None = None,
) -> AcmeError:
    """The AcmeError for a problem document the CA answered `operation` with."""
    detail = describe_problem(problem)
    message = f"ACME CA refused {operation} for {what}: {detail}"
    if problem.code == "rateLimited" or status == 429:
        return AcmeRateLimitedError(message, parse_retry_after(retry_after))
    if problem.code in _TRANSIENT_CODES or (status is not None and status >= 500):
        return AcmeUnavailableError(message)
    return AcmeRejectedError(message)


def challenge_failed(authorization: messages.Authorization) -> AcmeChallengeFailedError:
    """Why an authorization turned invalid, from the error of its failed challenge."""
    domain = str(authorization.identifier.value)
    problems = [c.error for c in authorization.challenges if c.error is not None]
    if problems:
        detail = "; ".join(describe_problem(problem) for problem in problems)
    else:
        detail = f"authorization is {authorization.status.name}, the CA gave no reason"
    return AcmeChallengeFailedError(
        f"ACME CA could not validate {domain}: {detail}", domain=domain, detail=detail
    )


def translate(
    error: BaseException,
    what: str,
    operation: str,
    status: int | None = None,
    retry_after: str | None = None,
    deadline_passed: bool = False,
) -> AcmeError:
    """The AcmeError for anything raised during `operation`; `status` and `retry_after` are
    those of the last HTTP response, which the library's exceptions do not carry."""
    if isinstance(error, AcmeError):
        return error
    if isinstance(error, messages.Error):
        return from_problem(error, what, operation, status, retry_after)
    if isinstance(error, requests.Timeout) and deadline_passed:
        return AcmeDeadlineExceededError(f"ACME issuance for {what} ran out of time at {operation}")
    if isinstance(error, requests.RequestException):
        # requests' messages name the URL and the reason, nothing secret.
        return AcmeUnavailableError(
            f"ACME CA unreachable at {operation} for {what}: "
            f"{type(error).__name__}: {_bounded(str(error))}"
        )
    if isinstance(error, acme_errors.NonceError):
        return AcmeUnavailableError(f"ACME CA sent no usable nonce at {operation} for {what}")
    if isinstance(error, acme_errors.ClientError) and status is not None and status >= 400:
        # An error response without a problem document, e.g. an HTML page from a proxy.
        message = f"ACME CA answered {operation} for {what} with HTTP {status}"
        if status == 429:
            return AcmeRateLimitedError(message, parse_retry_after(retry_after))
        if status >= 500:
            return AcmeUnavailableError(message)
        return AcmeRejectedError(message)
    if isinstance(error, josepy.errors.DeserializationError | ValueError):
        return AcmeError(
            f"ACME CA sent an unreadable response to {operation} for {what} "
            f"({type(error).__name__}); is the directory URL an ACME server?"
        )
    return AcmeError(
        f"ACME issuance for {what} failed at {operation}: {type(error).__name__}: "
        f"{_bounded(str(error))}"
    )


def _bounded(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."
