"""The kopf handlers: unpack, call the reconciler, map the outcome to kopf. A few lines each."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import kopf

from certfleet.api.fleet import agents_summary_patch
from certfleet.api.names import (
    GROUP,
    MANAGED_CERTIFICATES,
    RENEW_NOW_ANNOTATION,
    TAKE_OVER_ANNOTATION,
    VERSION,
)
from certfleet.api.status import CertificateStatus
from certfleet.controller.backlog import BACKLOG_WORKERS, FRESH_WORKERS, ReconcilePools
from certfleet.controller.metrics import OperatorMetrics
from certfleet.controller.plan import Outcome, Request
from certfleet.controller.reconcile import Reconciler
from certfleet.controller.renewal_timers import RenewalTimers
from certfleet.controller.reporter import KubeReporter, WrittenPatches
from certfleet.controller.restart import settled
from certfleet.core.clock import Clock, parse_rfc3339
from certfleet.core.errors import CertfleetError
from certfleet.core.ownership import LocationOwner
from certfleet.kube.gateway import KubernetesGateway

log = logging.getLogger(__name__)

RESOURCE = (GROUP, VERSION, MANAGED_CERTIFICATES)
# Reconcile a certificate that is not due at least this often: clocks jump, and a CA's renewal
# information (ARI) can move the renewal earlier, e.g. after a revocation.
MAX_RENEWAL_SLEEP_SECONDS = 3600.0
# When the status cannot be written (the API server is unreachable), try again this soon.
REPORT_RETRY_SECONDS = 30.0


@dataclass
class Runtime:
    reconciler: Reconciler
    gateway: KubernetesGateway
    clock: Clock
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    recheck_seconds: float = MAX_RENEWAL_SLEEP_SECONDS
    cluster: str = ""  # this cluster's id (kube-system's uid), in the owners it names
    written: WrittenPatches = field(default_factory=WrittenPatches)  # unchanged: not patched
    _locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    timers: RenewalTimers = field(init=False)
    # kopf's pool and the start's backlog apart (backlog.py); the start is now.
    pools: ReconcilePools = field(init=False)

    def __post_init__(self) -> None:
        self.timers = RenewalTimers(
            self.gateway.read_certificate,
            self._reconcile_read,
            self.clock,
            timedelta(seconds=self.recheck_seconds),
        )
        self.pools = ReconcilePools(self.clock(), FRESH_WORKERS, BACKLOG_WORKERS)

    def _reconcile_read(self, raw: Mapping[str, Any]) -> Outcome:
        """The renewal timer's reconciliation, of the resource as just read."""
        body = kopf.Body(cast(kopf.RawBody, dict(raw)))
        return reconcile_resource(self, body)

    def lock(self, namespace: str, name: str) -> threading.Lock:
        """One reconciliation at a time per resource (handlers and the renewal daemon)."""
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())


def reconcile_resource(runtime: Runtime, body: kopf.Body, force_renewal: bool = False) -> Outcome:
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""
    with runtime.lock(namespace, name):
        reporter = KubeReporter(
            runtime.gateway, runtime.metrics, body, runtime.clock, runtime.written
        )
        previous = reporter.previous
        owner = LocationOwner.resource(runtime.cluster, namespace, name, body.metadata.uid or "")
        take_over = body.metadata.annotations.get(TAKE_OVER_ANNOTATION)
        request = Request(
            namespace,
            dict(body.spec),
            previous.failed_issuance_attempts,
            force_renewal,
            highest_revision=previous.datastore_revision,
            highest_revision_uri=previous.datastore_uri,
            owner=owner,
            take_over_from=take_over if isinstance(take_over, str) else None,
        )
        try:
            outcome = runtime.reconciler.reconcile(request, reporter)
        except CertfleetError as error:  # the status itself could not be written
            raise kopf.TemporaryError(str(error), delay=REPORT_RETRY_SECONDS) from None
    reporter.post_events(outcome)
    log.info("%s/%s: %s: %s", namespace, name, outcome.reason, outcome.message)
    return outcome


def reconcile_and_time(runtime: Runtime, body: kopf.Body, force_renewal: bool = False) -> Outcome:
    """A handler's reconciliation; then the resource's renewal timer starts or looks again."""
    outcome: Outcome | None = None
    try:
        outcome = reconcile_resource(runtime, body, force_renewal)
        return outcome
    finally:
        due = outcome.renew_at if outcome is not None else None
        runtime.timers.track(body.metadata.namespace or "", body.metadata.name or "", due)


async def reconcile_in_its_pool(runtime: Runtime, body: kopf.Body, reason: str) -> None:
    """A handler's reconciliation, in the backlog's pool or kopf's (backlog.py)."""
    created = parse_rfc3339(body.metadata.creation_timestamp)
    outcome = await runtime.pools.run(reason, created, lambda: reconcile_and_time(runtime, body))
    if outcome.retry_after is not None and not outcome.ready:
        raise kopf.TemporaryError(outcome.message, delay=outcome.retry_after)


def resume_from_status(runtime: Runtime, body: kopf.Body) -> bool:
    """A resumed resource whose status says its job is done (restart.py): its metrics from
    the status and its renewal timer started; True if so, and nothing is to be reconciled."""
    meta = body.metadata
    status = CertificateStatus.from_dict(dict(body.status))
    if TAKE_OVER_ANNOTATION in meta.annotations:
        return False
    if not settled(status, meta.get("generation"), runtime.clock()):
        return False
    namespace, name = meta.namespace or "", meta.name or ""
    runtime.metrics.record_status(namespace, name, body.spec.get("domain"), status)
    runtime.timers.track(namespace, name, status.renewal_time)
    log.info("%s/%s: resumed as its status says; verified at its next recheck", namespace, name)
    return True


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    @kopf.on.resume(*RESOURCE, registry=registry)
    async def resume(body: kopf.Body, reason: str, **_: Any) -> None:
        if not resume_from_status(runtime, body):
            await reconcile_in_its_pool(runtime, body, reason)

    @kopf.on.create(*RESOURCE, registry=registry)
    @kopf.on.update(*RESOURCE, field="spec", registry=registry)
    async def reconcile(body: kopf.Body, reason: str, **_: Any) -> None:
        await reconcile_in_its_pool(runtime, body, reason)

    # "Renew now": a person sets the annotation (kubectl annotate, or `certfleet renew`).
    @kopf.on.resume(*RESOURCE, annotations={RENEW_NOW_ANNOTATION: kopf.PRESENT}, registry=registry)
    @kopf.on.update(*RESOURCE, annotations={RENEW_NOW_ANNOTATION: kopf.PRESENT}, registry=registry)
    def renew_now(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        outcome = reconcile_and_time(runtime, body, force_renewal=True)
        if outcome.issuance_failed or not outcome.ready:
            raise kopf.TemporaryError(outcome.message, delay=outcome.retry_after or 30)
        patch.metadata.annotations[RENEW_NOW_ANNOTATION] = None  # done: a request, not a state

    # A person hands a location over (core.ownership): look at once, not at the next retry.
    @kopf.on.update(*RESOURCE, annotations={TAKE_OVER_ANNOTATION: kopf.PRESENT}, registry=registry)
    def take_over(body: kopf.Body, **_: Any) -> None:
        reconcile_and_time(runtime, body)

    # The renewal timers are certfleet's own tasks on kopf's loop, not kopf daemons: a daemon
    # would put kopf's finalizer on every resource, and deleting one (or its namespace) would
    # hang while no operator runs (controller/renewal_timers.py).
    @kopf.on.startup(registry=registry)
    async def start_timers(**_: Any) -> None:
        runtime.timers.bind(asyncio.get_running_loop())

    @kopf.on.cleanup(registry=registry)
    async def stop_timers(**_: Any) -> None:
        await runtime.timers.stop_all()
        runtime.pools.shutdown()

    # Without a finalizer a deletion is seen only as the watch's DELETED event (kopf's on.delete
    # handlers need one); an operator that misses it has neither timer nor series left anyway.
    @kopf.on.event(*RESOURCE, registry=registry, when=lambda type, **_: type == "DELETED")
    async def forget_resource(namespace: str | None, name: str | None, **_: Any) -> None:
        runtime.timers.forget(namespace or "", name or "")
        runtime.metrics.forget(namespace or "", name or "")
        runtime.written.forget(namespace or "", name or "")

    # Every watch event, not a field handler (kopf's diff-base would miss changes made while
    # another handler retries); filtered to summaries the agents' reports made stale, as kopf
    # logs every call (the operator's own status patches carry the summary).
    @kopf.on.event(
        *RESOURCE,
        registry=registry,
        when=lambda type, status, **_: (
            type != "DELETED" and agents_summary_patch(status) is not None
        ),
    )
    def summarise_fleet(body: kopf.Body, **_: Any) -> None:
        patch = agents_summary_patch(body.status)
        if patch is not None:
            namespace, name = body.metadata.namespace or "", body.metadata.name or ""
            runtime.gateway.patch_certificate_status(namespace, name, patch)
