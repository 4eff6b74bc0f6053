"""An instant hint in a cluster: watch the ManagedCertificate and wake the agent when its status
names another serial or datastore revision (the operator writes both right after a publish).

Only a hint: the agent then polls S3 as always, and S3 stays the source of truth. A lost or
broken watch costs nothing but the wait until the next poll interval, so errors are logged and
the watch is simply opened again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from certfleet.api.names import GROUP, MANAGED_CERTIFICATES, VERSION

log = logging.getLogger(__name__)

WATCH_SECONDS = 300  # the server ends a watch after this long; it is reopened at once
RETRY_SECONDS = 5.0


def _mark(resource: Mapping[str, Any]) -> tuple[object, object]:
    status = resource.get("status")
    status = status if isinstance(status, Mapping) else {}
    datastore = status.get("datastore")
    revision = datastore.get("revision") if isinstance(datastore, Mapping) else None
    return status.get("serialNumber"), revision


Stream = Callable[[], Iterable[Mapping[str, Any]]]


class CertificateWatch:
    """Calls `on_change` when the watched resource's (serialNumber, datastore.revision) moves."""

    def __init__(
        self, stream: Stream, on_change: Callable[[], None], retry_seconds: float = RETRY_SECONDS
    ) -> None:
        self._stream = stream
        self._on_change = on_change
        self._retry = retry_seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="certificate-watch", daemon=True)
        self.changes = 0
        self.ready = threading.Event()  # set once the resource was seen (for tests and logs)

    @classmethod
    def for_certificate(
        cls, custom_objects_api: Any, namespace: str, name: str, on_change: Callable[[], None]
    ) -> CertificateWatch:
        from kubernetes import watch  # only agents in a cluster load the client

        def stream() -> Iterable[Mapping[str, Any]]:
            events: Iterable[Mapping[str, Any]] = watch.Watch().stream(
                custom_objects_api.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                MANAGED_CERTIFICATES,
                field_selector=f"metadata.name={name}",
                timeout_seconds=WATCH_SECONDS,
                _request_timeout=WATCH_SECONDS + 30,
            )
            return events

        return cls(stream, on_change)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        # A daemon thread: a watch blocked in a read ends with the process.
        self._stopped.set()

    def _run(self) -> None:
        seen: tuple[object, object] | None = None
        while not self._stopped.is_set():
            try:
                for event in self._stream():
                    if self._stopped.is_set():
                        return
                    resource = event.get("object")
                    if event.get("type") not in ("ADDED", "MODIFIED"):
                        continue
                    if not isinstance(resource, Mapping):
                        continue
                    mark = _mark(resource)
                    if seen is not None and mark != seen:
                        self.changes += 1
                        self._on_change()
                    seen = mark
                    self.ready.set()
            except Exception as error:  # any failure only delays the hint to the next poll
                log.debug("watching the ManagedCertificate failed (%s); reopening", error)
                self._stopped.wait(self._retry)
