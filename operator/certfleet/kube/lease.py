"""Exactly one acting operator replica, through a coordination.k8s.io Lease.

A standby replica waits in `acquire()`; the leader renews the lease in a thread and, when it
cannot renew in time (a network partition, a paused process), calls `on_lost` before the lease
can expire for the others: the operator then exits and comes back as a standby.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from certfleet.core.clock import utc_now
from certfleet.core.leases import LeaseState, may_take, still_leading

log = logging.getLogger(__name__)


class LeaderElector:
    def __init__(
        self,
        namespace: str,
        name: str,
        identity: str,
        duration: timedelta = timedelta(seconds=15),
        retry_period: timedelta = timedelta(seconds=2),
        clock: Callable[[], datetime] = utc_now,
        api: client.CoordinationV1Api | None = None,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.retry_period = retry_period
        # The leader gives up after 2/3 of the duration without a renewal, so it has stopped
        # acting before a standby may take the lease.
        self.renew_deadline = duration * 2 / 3
        self._clock = clock
        self._api = api or client.CoordinationV1Api()
        self._last_renewed: datetime | None = None

    def _try_take(self) -> bool:
        now = self._clock()
        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                log.warning("reading lease %s/%s: %s", self.namespace, self.name, error.reason)
                return False
            return self._create(now)
        spec = lease.spec
        state = LeaseState(
            holder=spec.holder_identity,
            renewed_at=spec.renew_time,
            duration=timedelta(seconds=spec.lease_duration_seconds or 0),
        )
        if not may_take(state, self.identity, now):
            return False
        if spec.holder_identity != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
            log.info("taking lease %s/%s from %s", self.namespace, self.name, state.holder)
        spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = int(self.duration.total_seconds())
        try:
            # resourceVersion makes this a compare-and-swap: of two standbys, one wins.
            self._api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as error:
            if error.status != 409:
                log.warning("renewing lease %s/%s: %s", self.namespace, self.name, error.reason)
            return False
        self._last_renewed = now
        return True

    def _create(self, now: datetime) -> bool:
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
            self._api.create_namespaced_lease(self.namespace, body)
        except ApiException:
            return False  # another replica created it first
        self._last_renewed = now
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

    def keep_leading(self, on_lost: Callable[[], None], stop: threading.Event) -> threading.Thread:
        """Renews the lease every retry period in a daemon thread until `stop` is set."""

        def renew() -> None:
            while not stop.wait(self.retry_period.total_seconds()):
                if self._try_take():
                    continue
                last = self._last_renewed or self._clock()
                if not still_leading(last, self.renew_deadline, self._clock()):
                    log.error("lost the lease %s/%s: stopping", self.namespace, self.name)
                    on_lost()
                    return

        thread = threading.Thread(target=renew, name="lease-renewal", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """On a clean exit, hand the lease over at once instead of after its duration."""
        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.renew_time = None
            self._api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as error:
            log.warning("releasing lease %s/%s: %s", self.namespace, self.name, error.reason)
