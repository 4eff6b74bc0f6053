"""The kopf handlers: unpack, call the reconciler, map the outcome to kopf. A few lines each."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import kopf

from certfleet.api.fleet import fleet_summary_patch
from certfleet.api.names import (
    GROUP,
    MANAGED_CERTIFICATES,
    RENEW_NOW_ANNOTATION,
    TAKE_OVER_ANNOTATION,
    VERSION,
)
from certfleet.api.status import CertificateStatus
from certfleet.controller.metrics import OperatorMetrics
from certfleet.controller.plan import Outcome, Request
from certfleet.controller.reconcile import Reconciler
from certfleet.controller.reporter import KubeReporter
from certfleet.core.clock import Clock
from certfleet.core.errors import CertfleetError
from certfleet.core.ownership import LocationOwner
from certfleet.core.schedule import seconds_after_reconciliation, seconds_until_due
from certfleet.kube.gateway import KubernetesGateway

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
    _locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def lock(self, namespace: str, name: str) -> threading.Lock:
        """One reconciliation at a time per resource (handlers and the renewal daemon)."""
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())


def reconcile_resource(
    runtime: Runtime, body: kopf.Body, logger: Any, force_renewal: bool = False
) -> Outcome:
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""
    with runtime.lock(namespace, name):
        reporter = KubeReporter(runtime.gateway, runtime.metrics, body, runtime.clock)
        failures = reporter.previous.failed_issuance_attempts
        owner = LocationOwner.resource(runtime.cluster, namespace, name, body.metadata.uid or "")
        take_over = body.metadata.annotations.get(TAKE_OVER_ANNOTATION)
        request = Request(
            namespace,
            dict(body.spec),
            failures,
            force_renewal,
            owner=owner,
            take_over_from=take_over if isinstance(take_over, str) else None,
        )
        try:
            outcome = runtime.reconciler.reconcile(request, reporter)
        except CertfleetError as error:  # the status itself could not be written
            raise kopf.TemporaryError(str(error), delay=REPORT_RETRY_SECONDS) from None
    reporter.post_events(outcome)
    logger.info("%s: %s", outcome.reason, outcome.message)
    return outcome


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    @kopf.on.resume(*RESOURCE, registry=registry)
    @kopf.on.create(*RESOURCE, registry=registry)
    @kopf.on.update(*RESOURCE, field="spec", registry=registry)
    def reconcile(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        outcome = reconcile_resource(runtime, body, logger)
        if outcome.retry_after is not None and not outcome.ready:
            raise kopf.TemporaryError(outcome.message, delay=outcome.retry_after)

    # "Renew now": a person sets the annotation (kubectl annotate, or `certfleet renew`).
    @kopf.on.resume(*RESOURCE, annotations={RENEW_NOW_ANNOTATION: kopf.PRESENT}, registry=registry)
    @kopf.on.update(*RESOURCE, annotations={RENEW_NOW_ANNOTATION: kopf.PRESENT}, registry=registry)
    def renew_now(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        outcome = reconcile_resource(runtime, body, logger, force_renewal=True)
        if outcome.issuance_failed or not outcome.ready:
            raise kopf.TemporaryError(outcome.message, delay=outcome.retry_after or 30)
        patch.metadata.annotations[RENEW_NOW_ANNOTATION] = None  # done: a request, not a state

    # A person hands a location over (core.ownership): look at once, not at the next retry.
    @kopf.on.update(*RESOURCE, annotations={TAKE_OVER_ANNOTATION: kopf.PRESENT}, registry=registry)
    def take_over(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        reconcile_resource(runtime, body, logger)

    # Async, so a sleeping daemon holds no thread: a sync daemon per resource would take one of
    # kopf's few worker threads each, and a handful of certificates would starve the handlers.
    @kopf.daemon(*RESOURCE, registry=registry, cancellation_timeout=10.0)
    async def renew_when_due(
        stopped: kopf.DaemonStopped, body: kopf.Body, logger: kopf.Logger, **_: Any
    ) -> None:
        # `body` is a live view, so a handler's newer status is seen at the next wake-up.
        recheck = timedelta(seconds=runtime.recheck_seconds)
        checked = runtime.clock()
        while not stopped:
            due = CertificateStatus.from_dict(body.status).renewal_time
            pause = seconds_until_due(runtime.clock(), due, checked, recheck)
            if pause is None:
                outcome = await asyncio.to_thread(reconcile_resource, runtime, body, logger)
                checked = runtime.clock()
                pause = seconds_after_reconciliation(
                    checked, outcome.retry_after, outcome.renew_at, recheck
                )
            await stopped.wait(pause)

    # Every watch event, not a field handler (kopf's diff-base would miss changes made while
    # another handler retries); filtered to stale summaries, as kopf logs every call.
    @kopf.on.event(
        *RESOURCE,
        registry=registry,
        when=lambda type, status, **_: (
            type != "DELETED" and fleet_summary_patch(status) is not None
        ),
    )
    def summarise_fleet(body: kopf.Body, **_: Any) -> None:
        patch = fleet_summary_patch(body.status)
        if patch is not None:
            namespace, name = body.metadata.namespace or "", body.metadata.name or ""
            runtime.gateway.patch_certificate_status(namespace, name, patch)

    # Optional: no finalizer of its own; an operator that misses the deletion has no series.
    @kopf.on.delete(*RESOURCE, registry=registry, optional=True)
    def forget_metrics(namespace: str | None, name: str | None, **_: Any) -> None:
        runtime.metrics.forget(namespace or "", name or "")
