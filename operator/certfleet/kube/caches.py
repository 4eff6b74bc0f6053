"""The reads every reconciliation would repeat, served from memory: CloudHosts as the operator's
watch delivers them (an informer's store), and the Secrets they name for a bounded time.

A CloudHost changes rarely and is read by every reconciliation (which bucket, which Secrets,
which trust bundle). The operator watches CloudHosts (``controller.main``) and tells this cache
of every event, so a change is seen at once; a name the watch has not delivered (yet) is read
with a GET, and every entry is read again after ``CLOUDHOST_MAX_AGE_SECONDS``: kopf re-lists
after a broken watch without a DELETED event for what went meanwhile, so a deletion missed
there is seen that much later at most.

Secrets are not watched (a cluster-wide watch of every Secret would cost far more than it
saves): a Secret found is kept ``SECRET_MAX_AGE_SECONDS``, so a Secret changed in place (S3
credentials, a master key, a trust bundle rotated under the same name) takes effect that much
later at most; at once if the CloudHost changes too (any CloudHost event forgets every Secret
kept). A Secret not found is never kept: creating it takes effect at the next reconciliation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from certfleet.kube.gateway import SecretData

# kopf's watch is re-opened every 300 s (settings.watching.server_timeout), and a broken one is
# listed again; an entry older than this is read again, whatever the watch said.
CLOUDHOST_MAX_AGE_SECONDS = 300.0
# How long a Secret of a CloudHost changed in place may go unseen: short, yet a cold start of
# thousands of certificates reads each Secret a few times, not thousands.
SECRET_MAX_AGE_SECONDS = 10.0
_MAX_ENTRIES = 1024  # of each kind: specs may name any number of CloudHosts that do not exist

Value = TypeVar("Value")


class Reads(Protocol):
    """What the cache reads through: ``kube.gateway.KubernetesGateway``."""

    def get_cloudhost(self, name: str) -> Mapping[str, Any] | None: ...

    def read_secret(self, namespace: str, name: str) -> SecretData | None: ...


@dataclass(frozen=True)
class _Entry(Generic[Value]):
    value: Value
    at: float  # the monotonic clock's reading when it was read or delivered


class CachedReads:
    """``get_cloudhost`` and ``read_secret`` of the gateway, from memory where that is safe.
    Shared by kopf's handler threads; the watch's events arrive on kopf's loop."""

    def __init__(
        self,
        gateway: Reads,
        clock: Callable[[], float] = time.monotonic,
        cloudhost_max_age: float = CLOUDHOST_MAX_AGE_SECONDS,
        secret_max_age: float = SECRET_MAX_AGE_SECONDS,
    ) -> None:
        self._gateway = gateway
        self._clock = clock
        self._cloudhost_max_age = cloudhost_max_age
        self._secret_max_age = secret_max_age
        self._cloudhosts: dict[str, _Entry[Mapping[str, Any] | None]] = {}
        self._secrets: dict[tuple[str, str], _Entry[SecretData]] = {}
        self._events = 0  # CloudHost events so far: a GET that overlapped one is not kept
        self._lock = threading.Lock()

    def observe_cloudhost(self, name: str, body: Mapping[str, Any] | None) -> None:
        """The watch's event: the CloudHost as it is now, None when deleted."""
        with self._lock:
            self._events += 1
            self._cloudhosts[name] = _Entry(body, self._clock())
            # It may name other Secrets now, or a person rotating one touched it to say so.
            self._secrets.clear()

    def get_cloudhost(self, name: str) -> Mapping[str, Any] | None:
        now = self._clock()
        with self._lock:
            entry = self._cloudhosts.get(name)
            if entry is not None and now - entry.at < self._cloudhost_max_age:
                return entry.value
            events = self._events
        found = self._gateway.get_cloudhost(name)
        with self._lock:
            # An event delivered while the GET was under way may be newer than its answer.
            if self._events == events:
                if len(self._cloudhosts) >= _MAX_ENTRIES:
                    self._cloudhosts.clear()
                self._cloudhosts[name] = _Entry(found, now)
        return found

    def read_secret(self, namespace: str, name: str) -> SecretData | None:
        now, key = self._clock(), (namespace, name)
        with self._lock:
            entry = self._secrets.get(key)
            if entry is not None and now - entry.at < self._secret_max_age:
                return entry.value
            events = self._events
        found = self._gateway.read_secret(namespace, name)
        with self._lock:
            if found is None:
                self._secrets.pop(key, None)
            elif self._events == events:
                if len(self._secrets) >= _MAX_ENTRIES:
                    self._secrets.clear()
                self._secrets[key] = _Entry(found, now)
        return found
