"""How what the acme library raises becomes certfleet's AcmeError family."""

from __future__ import annotations

import pytest
import requests
from acme import errors as acme_errors
from acme import messages

from certfleet.acme_issuer import (
    AcmeChallengeFailedError,
    AcmeDeadlineExceededError,
    AcmeError,
    AcmeRateLimitedError,
    AcmeRejectedError,
    AcmeUnavailableError,
)
from certfleet.acme_issuer.problems import challenge_failed, describe_problem, translate
from certfleet.core.errors import CertfleetError

WHAT = "www.example.com"


def _problem(code: str, detail: str = "why", **fields: object) -> messages.Error:
    return messages.Error.with_code(code, detail=detail, **fields)


def test_every_acme_error_is_a_certfleet_error() -> None:
    for kind in (
        AcmeRateLimitedError,
        AcmeChallengeFailedError,
        AcmeRejectedError,
        AcmeUnavailableError,
        AcmeDeadlineExceededError,
    ):
        assert issubclass(kind, AcmeError)
    assert issubclass(AcmeError, CertfleetError)


def test_rate_limited_carries_retry_after_and_the_detail() -> None:
    detail = "too many certificates (5) already issued for this exact set of identifiers"
    error = translate(
        _problem("rateLimited", detail), WHAT, "new-order", status=429, retry_after="3600"
    )
    assert isinstance(error, AcmeRateLimitedError)
    assert error.retry_after_seconds == 3600
    assert WHAT in str(error)
    assert detail in str(error)
    assert "new-order" in str(error)


def test_rate_limited_without_retry_after_leaves_the_wait_to_the_caller() -> None:
    error = translate(_problem("rateLimited"), WHAT, "new-order", status=429)
    assert isinstance(error, AcmeRateLimitedError)
    assert error.retry_after_seconds is None


def test_http_429_is_a_rate_limit_whatever_the_problem_type() -> None:
    problem: messages.Error = messages.Error.from_json(
        {"type": "urn:example:slow-down", "detail": "later"}
    )
    error = translate(problem, WHAT, "new-order", status=429, retry_after="10")
    assert isinstance(error, AcmeRateLimitedError)
    assert error.retry_after_seconds == 10


@pytest.mark.parametrize(
    ("code", "status"),
    [("serverInternal", 500), ("badNonce", 400), ("malformed", 503)],
)
def test_server_side_problems_mean_unavailable(code: str, status: int) -> None:
    assert isinstance(translate(_problem(code), WHAT, "finalize", status), AcmeUnavailableError)


@pytest.mark.parametrize(
    "code",
    [
        "unauthorized",
        "rejectedIdentifier",
        "badCSR",
        "caa",
        "externalAccountRequired",
        "invalidContact",
        "unsupportedIdentifier",
    ],
)
def test_request_problems_mean_rejected_with_the_cas_detail(code: str) -> None:
    error = translate(_problem(code, detail=f"{code} detail"), WHAT, "new-order", status=403)
    assert isinstance(error, AcmeRejectedError)
    assert f"{code}: {code} detail" in str(error)


def test_subproblems_name_their_identifiers() -> None:
    problem = _problem(
        "rejectedIdentifier",
        "some names are refused",
        subproblems=(
            _problem("rejectedIdentifier", "policy forbids", identifier=_dns("bad.example")),
        ),
    )
    text = describe_problem(problem)
    assert text == (
        "rejectedIdentifier: some names are refused; "
        "bad.example: rejectedIdentifier: policy forbids"
    )


def test_a_huge_detail_is_bounded() -> None:
    error = translate(_problem("malformed", "x" * 100_000), WHAT, "new-order", status=400)
    assert len(str(error)) < 1000


def _dns(name: str) -> messages.Identifier:
    return messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name)


def _authorization(status: str, errors: list[messages.Error | None]) -> messages.Authorization:
    authorization: messages.Authorization = messages.Authorization.from_json(
        {
            "identifier": {"type": "dns", "value": WHAT},
            "status": status,
            "challenges": [
                {
                    "type": "http-01",
                    "url": f"https://ca.example/chall/{i}",
                    "status": "invalid" if error else "pending",
                    "token": "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA",
                    **({"error": error.to_partial_json()} if error else {}),
                }
                for i, error in enumerate(errors)
            ],
        }
    )
    return authorization


def test_an_invalid_authorization_reports_the_challenges_error() -> None:
    detail = "Invalid response from http://www.example.com/.well-known/acme-challenge/x: 404"
    failed = challenge_failed(_authorization("invalid", [_problem("unauthorized", detail)]))

    assert isinstance(failed, AcmeChallengeFailedError)
    assert failed.domain == WHAT
    assert failed.detail == f"unauthorized: {detail}"
    assert str(failed) == f"ACME CA could not validate {WHAT}: unauthorized: {detail}"


def test_an_invalid_authorization_without_a_reason_says_so() -> None:
    failed = challenge_failed(_authorization("deactivated", [None]))
    assert failed.detail == "authorization is deactivated, the CA gave no reason"


def test_connection_errors_and_timeouts_mean_unavailable() -> None:
    refused = requests.ConnectionError("Connection refused")
    assert isinstance(translate(refused, WHAT, "directory"), AcmeUnavailableError)
    slow = requests.ReadTimeout("read timed out")
    assert isinstance(translate(slow, WHAT, "poll-order"), AcmeUnavailableError)


def test_a_timeout_at_the_deadline_means_deadline_exceeded() -> None:
    slow = requests.ReadTimeout("read timed out")
    error = translate(slow, WHAT, "poll-order", deadline_passed=True)
    assert isinstance(error, AcmeDeadlineExceededError)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(502, AcmeUnavailableError), (429, AcmeRateLimitedError), (404, AcmeRejectedError)],
)
def test_an_error_response_without_a_problem_document_maps_by_status(
    status: int, kind: type[AcmeError]
) -> None:
    error = translate(acme_errors.ClientError("<html>"), WHAT, "new-order", status)
    assert isinstance(error, kind)
    assert f"HTTP {status}" in str(error)


def test_nonce_trouble_means_unavailable() -> None:
    response = requests.Response()
    error = translate(acme_errors.MissingNonce(response), WHAT, "new-order", 200)
    assert isinstance(error, AcmeUnavailableError)


def test_an_unreadable_response_points_at_the_directory_url() -> None:
    error = translate(ValueError("Expecting value"), WHAT, "directory", 200)
    assert type(error) is AcmeError
    assert "directory URL" in str(error)


def test_our_own_errors_pass_through_unchanged() -> None:
    mine = AcmeRejectedError("already ours")
    assert translate(mine, WHAT, "new-order") is mine
