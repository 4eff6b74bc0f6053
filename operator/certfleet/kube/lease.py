"""Exactly one acting operator replica, through a coordination.k8s.io Lease.

A standby replica waits in `acquire()`; the leader renews the lease in a thread. Any failure
of a renewal (an error answer, a connection refused by a restarting API server, a timeout)
counts as not renewed; when the leader has not renewed for `renew_deadline` on its own
monotonic clock, it calls `on_lost` and stops acting, before any standby may take the lease
(standbys wait a whole duration without seeing the record change: `core.leases`). An error
the renewal loop did not expect also ends leadership: a leader must never go on acting with
a dead renewal thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from certfleet.core.clock import utc_now
from certfleet.core.leases import LeaseRecord, Observation, may_take, observe, still_leading

log = logging.getLogger(__name__)

# (connect, read) seconds for every Lease request at most; shorter for short leases, so a
# half-open connection cannot hold a renewal past its deadline.
REQUEST_TIMEOUT = (2.0, 5.0)


class LeaderElector:
    def __init__(
        self,
        namespace: str,
        name: str,
        identity: str,
        duration: timedelta = timedelta(seconds=15),
        retry_period: timedelta = timedelta(seconds=2),
        clock: Callable[[], datetime] = utc_now,
        api: Any = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` only fills in the Lease's timestamps (for people and other tools);
        `monotonic` decides everything."""
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.retry_period = retry_period
        # The leader gives up after 2/3 of the duration without a renewal, so it has stopped
        # acting before a standby may take the lease.
        self.renew_deadline = duration.total_seconds() * 2 / 3
        self._timeout = (
            min(REQUEST_TIMEOUT[0], self.renew_deadline / 4),
            min(REQUEST_TIMEOUT[1], self.renew_deadline / 2),
        )
        self._clock = clock
        self._monotonic = monotonic
        self._api = api if api is not None else client.CoordinationV1Api()
        self._observed: Observation | None = None
        self._last_renewed: float | None = None

    def _try_take(self) -> bool:
        """One attempt to create, take or renew the lease; any failure is a plain False."""
        try:
            return self._take()
        except Exception as error:
            log.warning("lease %s/%s: %s", self.namespace, self.name, _describe(error))
            return False

    def _take(self) -> bool:
        started = self._monotonic()
        try:
            lease = self._api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self._timeout
            )
        except ApiException as error:
            if error.status != 404:
                raise
            return self._create(started)
        spec = lease.spec
        record = LeaseRecord(
            holder=spec.holder_identity,
            duration_seconds=float(spec.lease_duration_seconds or 0),
            version=lease.metadata.resource_version,
        )
        self._observed = observe(self._observed, record, started)
        if not may_take(self._observed, self.identity, started):
            return False
        now = self._clock()
        if spec.holder_identity != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
            log.info("taking lease %s/%s from %s", self.namespace, self.name, record.holder)
        spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = int(self.duration.total_seconds())
        try:
            # resourceVersion makes this a compare-and-swap: of two standbys, one wins.
            self._api.replace_namespaced_lease(
                self.name, self.namespace, lease, _request_timeout=self._timeout
            )
        except ApiException as error:
            if error.status == 409:
                return False  # another replica wrote first
            raise
        # The renewal counts from before the read: the request may have taken a while.
        self._last_renewed = started
        return True

    def _create(self, started: float) -> bool:
        now = self._clock()
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=client.V1LeaseSpec(
                holder_identity=self.identity,
                acquire_time=now,
                renew_time=now,
                lease_duration_seconds=int(self.duration.total_seconds()),
                lease_transitions=0,
            ),
        )
        try:
            self._api.create_namespaced_lease(self.namespace, body, _request_timeout=self._timeout)
        except ApiException as error:
            if error.status == 409:
                return False  # another replica created it first
            raise
        self._last_renewed = started
        return True

    def acquire(self, stop: threading.Event) -> bool:
        """Blocks until this replica leads (True) or `stop` is set (False)."""
        log.info("waiting to lead as %s (lease %s/%s)", self.identity, self.namespace, self.name)
        while not stop.is_set():
            if self._try_take():
                log.info("leading as %s", self.identity)
                return True
            stop.wait(self.retry_period.total_seconds())
        return False

    def still_leading(self) -> bool:
        last = self._last_renewed
        return last is not None and still_leading(last, self.renew_deadline, self._monotonic())

    def keep_leading(self, on_lost: Callable[[], None], stop: threading.Event) -> threading.Thread:
        """Renews the lease every retry period until `stop` is set, and calls `on_lost`
        once when leadership cannot be kept. A guard thread watches the deadline on its own,
        so a renewal request that hangs cannot keep this replica acting past it."""
        lost = threading.Event()

        def lose(why: str) -> None:
            if not lost.is_set() and not stop.is_set():
                lost.set()
                log.error("lost the lease %s/%s (%s): stopping", self.namespace, self.name, why)
                on_lost()

        def renew() -> None:
            try:
                while not stop.wait(self.retry_period.total_seconds()) and not lost.is_set():
                    self._try_take()
            except BaseException as error:
                lose(f"the renewal failed unexpectedly: {_describe(error)}")

        def guard() -> None:
            interval = min(self.retry_period.total_seconds(), 0.5)
            while not stop.wait(interval) and not lost.is_set():
                if not self.still_leading():
                    lose(f"not renewed for {self.renew_deadline:.1f} s")

        threading.Thread(target=guard, name="lease-guard", daemon=True).start()
        thread = threading.Thread(target=renew, name="lease-renewal", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """On a clean exit, hand the lease over at once instead of after its duration."""
        try:
            lease = self._api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self._timeout
            )
            if lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.renew_time = None
            self._api.replace_namespaced_lease(
                self.name, self.namespace, lease, _request_timeout=self._timeout
            )
        except Exception as error:
            log.warning("releasing lease %s/%s: %s", self.namespace, self.name, _describe(error))


def _describe(error: BaseException) -> str:
    if isinstance(error, ApiException):
        return f"{error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"
