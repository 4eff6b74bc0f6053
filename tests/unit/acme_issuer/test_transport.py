"""The per-issuance transport: deadline, hook and last response, on a real local socket."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from certfleet.acme_issuer import AcmeDeadlineExceededError, ChallengeStore, Http01Server
from certfleet.acme_issuer.transport import DeadlineAdapter, Exchange


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with Http01Server(ChallengeStore(), "127.0.0.1", 0) as server:
        yield f"http://127.0.0.1:{server.port}/"


def _session(exchange: Exchange) -> requests.Session:
    session = requests.Session()
    session.mount("http://", DeadlineAdapter(exchange))
    return session


def test_requests_report_their_duration_and_operation_and_keep_the_last_reply(url: str) -> None:
    seen: list[tuple[float, str]] = []
    exchange = Exchange("x.example", 10, 5, lambda s, op: seen.append((s, op)))
    exchange.operation = "poll-order"
    with _session(exchange) as session:
        assert session.get(url).status_code == 404
    assert exchange.last_status == 404
    assert exchange.last_retry_after is None
    assert len(seen) == 1
    assert seen[0][1] == "poll-order"
    assert 0 <= seen[0][0] < 5


def test_a_broken_hook_does_not_break_the_request(url: str) -> None:
    def broken(_seconds: float, _operation: str) -> None:
        raise RuntimeError("metrics are down")

    with _session(Exchange("x.example", 10, 5, broken)) as session:
        assert session.get(url).status_code == 404


def test_no_request_leaves_after_the_deadline(url: str) -> None:
    seen: list[str] = []
    exchange = Exchange("x.example", 0.01, 5, lambda _s, op: seen.append(op))
    time.sleep(0.02)
    with _session(exchange) as session, pytest.raises(AcmeDeadlineExceededError) as late:
        session.get(url)
    assert seen == []
    assert "x.example" in str(late.value)
    assert "0.01 s" in str(late.value)


def test_sleep_never_outlasts_the_deadline() -> None:
    exchange = Exchange("x.example", 0.05, 5)
    started = time.monotonic()
    with pytest.raises(AcmeDeadlineExceededError):
        exchange.sleep(10)
    assert time.monotonic() - started < 1
