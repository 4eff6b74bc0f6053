"""Step three: carry a Plan out (cache, issue, publish) and say what came of it (an Outcome).

Only the Plan's own actions happen here, in a fixed order that keeps every promise of the
flow: an order's new key is saved in the cache before the CA finalises it, and its
certificate right after the download, before it is published, so a crash or a failed
publish never costs a second order nor throws an issued certificate away; the datastore
verifies what it wrote before the pointer moves. A failed write becomes an Outcome with a
reason and a retry, never an exception for the caller. The one read here is the CA's renewal
window of a certificate just issued, which did not exist when the world was gathered.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from certfleet.api.reasons import CertificateReason, EventReason
from certfleet.controller.decide import DecisionSettings, judge_issued, wait_after
from certfleet.controller.gather import unobservable
from certfleet.controller.plan import (
    ClaimLocation,
    Event,
    Issue,
    Observed,
    Outcome,
    Plan,
    Publish,
    Reuse,
    Serving,
    Unobservable,
    Wait,
)
from certfleet.controller.ports import PemPair, PendingOrder, Ports
from certfleet.core.backoff import retry_delay
from certfleet.core.clock import Clock
from certfleet.core.errors import CertfleetError, RetryLaterError
from certfleet.core.policy import Valid


def act(
    plan: Plan,
    observed: Observed | Unobservable,
    ports: Ports,
    clock: Clock,
    settings: DecisionSettings,
) -> Outcome:
    if isinstance(plan, ClaimLocation):
        # The claim is written by the Reconciler, before the plan that needs it; one seen
        # here changed under the order lease: look again rather than act for another.
        plan = Wait(
            CertificateReason.LocationClaimed,
            f"the location's claim is not this resource's yet ({plan.verdict.message}); "
            "looking again",
            settings.retry_seconds,
        )
    if isinstance(plan, Wait):
        return _waiting(plan, observed if isinstance(observed, Observed) else None)
    assert isinstance(observed, Observed)  # only a gathered world leads to an action
    try:
        if isinstance(plan, Reuse):
            return _reuse(plan, observed, ports)
        if isinstance(plan, Publish):
            return _publish(plan, observed, ports, settings)
        return _issue(plan, observed, ports, clock, settings)
    except CertfleetError as error:  # a write failed: the cache or the datastore
        # The same reasons as a failed read, and the same decision on them.
        return _waiting(wait_after(unobservable(error), settings), observed)


def _reuse(plan: Reuse, observed: Observed, ports: Ports) -> Outcome:
    stored = plan.stored
    cached = _cache(observed, ports, PemPair(stored.fullchain, stored.privkey), plan.cache_it)
    revision = stored.pointer.revision
    return _ready(
        observed,
        CertificateReason.Reused,
        plan.verdict,
        revision,
        f"reused revision {revision} from the datastore",
        *cached,
    )


def _cache(observed: Observed, ports: Ports, pair: PemPair, wanted: bool) -> tuple[Event, ...]:
    """The cache write, first: from here on, a crash never costs another order. A failed
    write does not stop what follows (the certificate is published or already is; the next
    reuse writes the cache again): it is a warning."""
    if not wanted:
        return ()
    # Another certificate than the published one says which one that is (``unpublished``).
    stored = observed.stored
    replaces = None if pair == observed.stored_pair else (stored.pointer.revision if stored else 0)
    try:
        ports.cache.write(observed.request.namespace, observed.spec, pair, replaces)
    except CertfleetError as error:
        return (Event("Warning", EventReason.CacheWriteFailed, f"caching failed: {error}"),)
    return ()


def _prune(observed: Observed, current: int, settings: DecisionSettings) -> tuple[Event, ...]:
    """Old revisions go after a publish; a failure is a warning (the next publish retries)."""
    try:
        observed.datastore.prune(
            observed.location,
            current,
            observed.cloudhost.revision_history_limit,
            timedelta(seconds=settings.revision_grace_seconds),
        )
    except CertfleetError as error:
        return (Event("Warning", EventReason.PruneFailed, f"removing old revisions: {error}"),)
    return ()


def _publish(
    plan: Publish, observed: Observed, ports: Ports, settings: DecisionSettings, *events: Event
) -> Outcome:
    """DESIGN step 4: publish to the datastore, verified, pointer last."""
    events = (*events, *_cache(observed, ports, plan.pair, plan.cache_it))
    facts = plan.verdict.facts
    pointer = observed.datastore.publish(
        observed.location,
        plan.pair.fullchain,
        plan.pair.key,
        serial=facts.serial,
        not_before=facts.not_before,
        not_after=facts.not_after,
        expected_pointer_etag=observed.pointer_etag,
        after_revision=observed.highest_revision,
        owner=observed.request.owner.identity(),
        # The pointer as gathered (None when it could not be read): no second read of it.
        expected_revision=observed.stored.pointer.revision if observed.stored else None,
    )
    if observed.unreadable is not None:
        events = (
            *events,
            Event(
                "Warning",
                observed.unreadable_reason or CertificateReason.DatastoreIntegrity,
                f"replaced a pointer that could not be followed: {observed.unreadable}",
            ),
        )
    events = (*events, *_prune(observed, pointer.revision, settings))
    published = Event(
        "Normal",
        EventReason.Published,
        f"published serial {facts.serial} to {observed.location.s3_uri} "
        f"revision {pointer.revision}",
    )
    return _ready(
        observed,
        plan.reason,
        plan.verdict,
        pointer.revision,
        f"{plan.message}; verified revision {pointer.revision} in the datastore",
        *events,
        published,
    )


def _issue(
    plan: Issue, observed: Observed, ports: Ports, clock: Clock, settings: DecisionSettings
) -> Outcome:
    """`_order` at the ACME server the plan chose; the outcome says which one issued, and
    an event that the order fell back to it."""
    outcome = _order(plan, observed, ports, clock, settings)
    if plan.fallback is not None:
        fell_back = Event("Warning", EventReason.AcmeServerFallback, plan.fallback)
        outcome = replace(outcome, events=(fell_back, *outcome.events))
    acme = observed.spec.acme
    if outcome.reason == CertificateReason.Issued and acme is not None:
        issued_by = (acme.servers[plan.server_position], plan.server_position)
        outcome = replace(outcome, issued_by=issued_by)
    return outcome


def _order(
    plan: Issue, observed: Observed, ports: Ports, clock: Clock, settings: DecisionSettings
) -> Outcome:
    """Order, judge, cache, publish. Every failure from the order on goes through the
    exponential back-off: at a real CA, quick retries would spend the duplicate-certificate
    limit and then block the real renewal."""
    spec, namespace = observed.spec, observed.request.namespace
    ordered = spec
    if spec.acme is not None:  # the one server the plan chose, e.g. a fallback
        ordered = replace(spec, acme=spec.acme.at_server(plan.server_position))

    def save(order: PendingOrder) -> None:
        # Before the CA finalises it: a crash from here on resumes this order.
        ports.cache.write_pending(namespace, spec, order)

    try:
        issued = ports.issuer.issue(ordered, namespace, plan.replacing, plan.resume, save)
    except CertfleetError as error:
        reason = error.reason or CertificateReason.IssuanceFailed
        where = ""  # with several servers, which one failed
        if spec.acme is not None and ordered.acme is not None and spec.acme.fallback_servers:
            where = f" at {ordered.acme.server}"
        what = f"issuing through ACME{where} failed"
        return _backed_off(plan, observed, settings, what, error, reason)
    # Right after the download, before anything else can fail or be killed: the certificate
    # is kept (a failed write is a warning: the pending order still resumes to it).
    cached = _cache(observed, ports, issued, wanted=True)
    # The renewal window from the CA that issued it (a fallback, maybe).
    window = ports.windows.window(ordered, issued.fullchain)
    verdict = judge_issued(issued, spec, clock(), window, observed.trust_roots)
    if not isinstance(verdict, Valid):
        message = f"the CA issued a certificate that fails the policy: {verdict.message}"
        retry = _backoff_seconds(observed, settings, None)
        return Outcome(
            False,
            verdict.reason,
            f"{message}; next attempt in {retry:.0f} s",
            issuance_failed=True,
            retry_after=retry,
            events=(*cached, Event("Warning", EventReason.IssuedCertificateRejected, message)),
        )
    serial = verdict.facts.serial
    announced = Event(
        "Normal",
        CertificateReason.Issued,
        f"issued serial {serial} for {', '.join(spec.names)}, "
        f"valid until {verdict.not_after.isoformat()}",
    )
    publish = Publish(
        issued, verdict, CertificateReason.Issued, f"issued serial {serial} through ACME", False
    )
    try:
        return _publish(publish, observed, ports, settings, *cached, announced)
    except CertfleetError as error:
        return _backed_off(
            plan,
            observed,
            settings,
            f"issued serial {serial}, but publishing it failed",
            error,
            reason=unobservable(error).reason,
        )


def _backoff_seconds(
    observed: Observed, settings: DecisionSettings, error: CertfleetError | None
) -> float:
    return retry_delay(
        max(observed.request.previous_failures, 0) + 1,
        base_seconds=settings.issuance_backoff_base_seconds,
        cap_seconds=settings.issuance_backoff_cap_seconds,
        retry_after_seconds=(
            error.retry_after_seconds if isinstance(error, RetryLaterError) else None
        ),
    )


def _backed_off(
    plan: Issue,
    observed: Observed,
    settings: DecisionSettings,
    what: str,
    error: CertfleetError,
    reason: str = CertificateReason.IssuanceFailed,
) -> Outcome:
    retry = _backoff_seconds(observed, settings, error)
    message = f"{what}: {error}; next attempt in {retry:.0f} s"
    failed = Wait(reason, message, retry, plan.serving, "Warning")
    return _waiting(failed, observed, issuance_failed=True)


def _ready(
    observed: Observed,
    reason: str,
    verdict: Valid,
    revision: int,
    message: str,
    *events: Event,
) -> Outcome:
    return Outcome(
        True,
        reason,
        f"{message}; {verdict.message}",
        facts=verdict.facts,
        renew_at=verdict.renew_at,
        datastore_uri=observed.location.s3_uri,
        revision=revision,
        cache_secret=observed.cache_name,
        events=events,
    )


def _waiting(plan: Wait, observed: Observed | None, issuance_failed: bool = False) -> Outcome:
    events = (Event(plan.event_type, plan.reason, plan.message),) if plan.event_type else ()
    if plan.serving is None or observed is None:
        return Outcome(
            False,
            plan.reason,
            plan.message,
            issuance_failed=issuance_failed,
            retry_after=plan.retry_after,
            events=events,
        )
    return _serving(plan, plan.serving, observed, issuance_failed, events)


def _serving(
    plan: Wait,
    serving: Serving,
    observed: Observed,
    issuance_failed: bool,
    events: tuple[Event, ...],
) -> Outcome:
    """Ready stays True: the published certificate is only due, and agents keep serving it."""
    return Outcome(
        True,
        plan.reason,
        f"{plan.message}; the published certificate stays in use until "
        f"{serving.facts.not_after.isoformat()}",
        facts=serving.facts,
        renew_at=serving.renew_at,
        datastore_uri=observed.location.s3_uri,
        revision=serving.revision,
        cache_secret=observed.cache_name,
        issuance_failed=issuance_failed,
        retry_after=plan.retry_after,
        events=events,
    )
