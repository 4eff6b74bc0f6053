"""The kopf handlers: unpack, call the reconciler, report. A few lines each."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import kopf

from certfleet.api.fleet import fleet_summary_patch
from certfleet.api.names import GROUP, MANAGED_CERTIFICATES, RENEW_NOW_ANNOTATION, VERSION
from certfleet.controller.metrics import OperatorMetrics
from certfleet.controller.reconciler import Outcome, Reconciler, Request
from certfleet.controller.report import events_to_post, issuing_status, status_from_outcome
from certfleet.core.clock import parse_rfc3339
from certfleet.kube.gateway import KubernetesGateway

RESOURCE = (GROUP, VERSION, MANAGED_CERTIFICATES)
# Reconcile a certificate that is not due at least this often: clocks jump, and a CA's renewal
# information (ARI) can move the renewal earlier, e.g. after a revocation.
MAX_RENEWAL_SLEEP_SECONDS = 3600.0
# Before the first reconciliation has written a renewal time.
UNKNOWN_RENEWAL_RECHECK_SECONDS = 5.0


@dataclass
class Runtime:
    reconciler: Reconciler
    gateway: KubernetesGateway
    clock: Callable[[], datetime]
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    recheck_seconds: float = MAX_RENEWAL_SLEEP_SECONDS
    _locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def lock(self, namespace: str, name: str) -> threading.Lock:
        """One reconciliation at a time per resource (handlers and the renewal daemon)."""
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())


def reconcile_and_report(
    runtime: Runtime,
    body: kopf.Body,
    logger: logging.Logger | kopf.Logger,
    force_renewal: bool = False,
) -> Outcome:
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""
    generation = body.metadata.get("generation")
    with runtime.lock(namespace, name):
        previous = dict(body.status)

        def on_issuing(message: str) -> None:
            patch = issuing_status(previous, message, generation, runtime.clock())
            runtime.gateway.patch_certificate_status(namespace, name, patch)
            kopf.info(body, reason="Issuing", message=message)

        request = Request(
            namespace,
            dict(body.spec),
            on_issuing,
            previous_failures=int(previous.get("failedIssuanceAttempts") or 0),
            force_renewal=force_renewal,
        )
        outcome = runtime.reconciler.reconcile(request)
        status = status_from_outcome(outcome, previous, generation, runtime.clock())
        runtime.gateway.patch_certificate_status(namespace, name, status)
        runtime.metrics.record_reconciliation(
            namespace, name, body.spec.get("domain"), outcome, {**previous, **status}
        )
    for event in events_to_post(outcome, previous):
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    logger.info("%s: %s", outcome.reason, outcome.message)
    return outcome


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    @kopf.on.resume(*RESOURCE, registry=registry)
    @kopf.on.create(*RESOURCE, registry=registry)
    @kopf.on.update(*RESOURCE, field="spec", registry=registry)
    def reconcile(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        outcome = reconcile_and_report(runtime, body, logger)
        if outcome.retry_after is not None and not outcome.ready:
            raise kopf.TemporaryError(outcome.message, delay=outcome.retry_after)

    # "Renew now": a person sets the annotation (kubectl annotate, or `certfleet renew`).
    @kopf.on.resume(*RESOURCE, annotations={RENEW_NOW_ANNOTATION: kopf.PRESENT}, registry=registry)
    @kopf.on.update(*RESOURCE, annotations={RENEW_NOW_ANNOTATION: kopf.PRESENT}, registry=registry)
    def renew_now(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        outcome = reconcile_and_report(runtime, body, logger, force_renewal=True)
        if outcome.issuance_failed or not outcome.ready:
            raise kopf.TemporaryError(outcome.message, delay=outcome.retry_after or 30)
        patch.metadata.annotations[RENEW_NOW_ANNOTATION] = None  # done: a request, not a state

    # Async, so a sleeping daemon holds no thread: a sync daemon per resource would take one of
    # kopf's few worker threads each, and a handful of certificates would starve the handlers.
    @kopf.daemon(*RESOURCE, registry=registry, cancellation_timeout=10.0)
    async def renew_when_due(
        stopped: kopf.DaemonStopped, body: kopf.Body, logger: kopf.Logger, **_: Any
    ) -> None:
        # A timer per resource: it sleeps until the renewal time the status names, or until
        # the next recheck (a reconciliation that asks the CA's renewal information again).
        # `body` is a live view, so a handler's newer status is seen at the next wake-up.
        recheck = timedelta(seconds=runtime.recheck_seconds)
        checked = runtime.clock()
        while not stopped:
            due = _renewal_time(body.status)
            now = runtime.clock()
            if due is None or (due > now and checked + recheck > now):
                wake = min(due, checked + recheck) if due else None
                remaining = (
                    (wake - now).total_seconds() if wake else UNKNOWN_RENEWAL_RECHECK_SECONDS
                )
                await stopped.wait(remaining)
                continue
            outcome = await asyncio.to_thread(reconcile_and_report, runtime, body, logger)
            checked = runtime.clock()
            if outcome.retry_after is not None:
                await stopped.wait(outcome.retry_after)
            elif outcome.renew_at is not None:
                remaining = (outcome.renew_at - runtime.clock()).total_seconds()
                await stopped.wait(min(max(remaining, 0.0), runtime.recheck_seconds))

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


def _renewal_time(status: Any) -> datetime | None:
    return parse_rfc3339(status.get("renewalTime"))
