"""The elector against a fake coordination API: failures of every kind end leadership in
time, and a standby judges the holder by what it observes, not by its timestamps."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError, NewConnectionError

from certfleet.kube.lease import LeaderElector
from testbed.waiting import wait_for

SKEWED = datetime(1999, 1, 1, tzinfo=UTC)  # a holder whose clock is far behind


@dataclass
class FakeLeases:
    """One Lease, with resourceVersion compare-and-swap, and failures on demand."""

    lease: Any = None
    fail: BaseException | None = None
    hang: threading.Event | None = None
    version: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)

    def _enter(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)
        if self.hang is not None:
            self.hang.wait(30)
        if self.fail is not None:
            raise self.fail

    def read_namespaced_lease(self, name: str, namespace: str, **kwargs: Any) -> Any:
        self._enter(**kwargs)
        if self.lease is None:
            raise ApiException(status=404, reason="Not Found")
        return client.V1Lease(
            metadata=client.V1ObjectMeta(name=name, resource_version=str(self.version)),
            spec=client.V1LeaseSpec(**self.lease.spec.to_dict()),
        )

    def create_namespaced_lease(self, namespace: str, body: Any, **kwargs: Any) -> Any:
        self._enter(**kwargs)
        if self.lease is not None:
            raise ApiException(status=409, reason="Conflict")
        self.version += 1
        self.lease = body
        return body

    def replace_namespaced_lease(self, name: str, namespace: str, body: Any, **kwargs: Any) -> Any:
        self._enter(**kwargs)
        if body.metadata.resource_version != str(self.version):
            raise ApiException(status=409, reason="Conflict")
        self.version += 1
        self.lease = body
        return body

    def renew_as(self, holder: str) -> None:
        """Another replica renews (with a skewed clock)."""
        self.version += 1
        self.lease = client.V1Lease(
            spec=client.V1LeaseSpec(
                holder_identity=holder, renew_time=SKEWED, lease_duration_seconds=15
            )
        )


@dataclass
class Monotonic:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(api: FakeLeases, clock: Monotonic | None = None, seconds: float = 15) -> LeaderElector:
    return LeaderElector(
        "certfleet-system",
        "certfleet-operator",
        "me",
        duration=timedelta(seconds=seconds),
        retry_period=timedelta(seconds=seconds / 5),
        api=api,
        monotonic=clock if clock is not None else time.monotonic,
    )


def test_every_request_has_a_timeout() -> None:
    api = FakeLeases()
    assert elector(api)._try_take()
    assert api.calls and all("_request_timeout" in call for call in api.calls)
    assert all(max(call["_request_timeout"]) <= 5 for call in api.calls)


def test_a_standby_waits_while_the_holder_keeps_renewing_even_with_a_skewed_clock() -> None:
    api, clock = FakeLeases(), Monotonic()
    api.renew_as("other")
    standby = elector(api, clock)
    for _ in range(5):
        clock.now += 10  # 50 s in all: far past any duration, but the record keeps changing
        api.renew_as("other")
        assert not standby._try_take()
    clock.now += 14.9  # the record has stopped changing: it ages from when it was first seen
    assert not standby._try_take()
    clock.now += 0.2
    assert standby._try_take()
    assert api.lease.spec.holder_identity == "me"


@pytest.mark.parametrize(
    "failure",
    [
        ApiException(status=500, reason="Internal Server Error"),
        MaxRetryError(None, "/apis", NewConnectionError(None, "connection refused")),  # type: ignore[arg-type]
        ConnectionResetError("reset by peer"),
        ValueError("an answer the client could not parse"),
    ],
    ids=["error answer", "API server down", "connection reset", "unexpected"],
)
def test_any_failure_to_renew_ends_leadership_within_the_deadline(failure: BaseException) -> None:
    api = FakeLeases()
    leader = elector(api, seconds=0.6)
    assert leader._try_take()
    lost, stop = threading.Event(), threading.Event()
    leader.keep_leading(on_lost=lost.set, stop=stop)
    try:
        api.fail = failure
        wait_for("on_lost", lost.is_set, timeout=2)
        assert not leader.still_leading()
    finally:
        stop.set()


def test_a_hanging_renewal_cannot_keep_the_leader_acting() -> None:
    api = FakeLeases()
    leader = elector(api, seconds=0.6)
    assert leader._try_take()
    lost, stop = threading.Event(), threading.Event()
    api.hang = threading.Event()  # every request now hangs, as over a half-open connection
    leader.keep_leading(on_lost=lost.set, stop=stop)
    try:
        wait_for("on_lost while the request still hangs", lost.is_set, timeout=2)
    finally:
        stop.set()
        api.hang.set()


def test_a_clean_stop_is_no_loss() -> None:
    api = FakeLeases()
    leader = elector(api, seconds=0.6)
    assert leader._try_take()
    lost, stop = threading.Event(), threading.Event()
    thread = leader.keep_leading(on_lost=lost.set, stop=stop)
    stop.set()
    thread.join(2)
    assert not thread.is_alive() and not lost.is_set()
    leader.release()
    assert api.lease.spec.holder_identity is None
