"""Step two: what to do about one certificate (pure: what was gathered and the time in, a Plan
out; no I/O, no clock of its own).

Two questions, as cert-manager asks them, each answered by the core's policy chain:

1. Is what we have fit to serve? The datastore's certificate first, then the cache's, then
   (MANUAL) the one a person supplied. ``core.policy.fit_to_serve``.
2. Is it due for (re)issuance, and why? Renewal time reached (the user's margin, or the CA's
   renewal window, RFC 9773), or a person asked for a new certificate now.

Fit and not due: reuse it (or publish it, when it is not the published one). Otherwise
AUTOMATIC issues, MANUAL waits for a person; a published certificate that is only due keeps
serving meanwhile (``Serving``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from certfleet.api.reasons import CertificateReason
from certfleet.api.spec import CertificateSpec, GenerationMethod
from certfleet.controller.plan import (
    Issue,
    Observed,
    Plan,
    Publish,
    Reuse,
    Serving,
    Unobservable,
    Wait,
)
from certfleet.controller.ports import PemPair, Window
from certfleet.core.backoff import DEFAULT_BASE_SECONDS, DEFAULT_CAP_SECONDS
from certfleet.core.checks import Reason
from certfleet.core.clock import rfc3339
from certfleet.core.leases import StorageLease
from certfleet.core.policy import Failure, Valid, Verdict, evaluate, fit_to_serve
from certfleet.datastore.protocol import StoredCertificate


@dataclass(frozen=True)
class DecisionSettings:
    retry_seconds: float = 30.0  # a missing CloudHost, an unavailable store
    manual_poll_seconds: float = 30.0  # how often a MANUAL certificate's Secret is looked at
    # Failed issuances back off exponentially: base, 2*base, ... up to the cap.
    issuance_backoff_base_seconds: float = DEFAULT_BASE_SECONDS
    issuance_backoff_cap_seconds: float = DEFAULT_CAP_SECONDS
    # A revision replaced this long ago can no longer be being fetched by any agent.
    revision_grace_seconds: float = 3600.0


def decide(observed: Observed | Unobservable, now: datetime, settings: DecisionSettings) -> Plan:
    if isinstance(observed, Unobservable):
        return wait_after(observed, settings)
    spec, stored = observed.spec, observed.stored
    stored_pair = PemPair(stored.fullchain, stored.privkey) if stored else None
    roots = observed.trust_roots
    stored_verdict = judge(stored_pair, spec, now, observed.stored_window, roots)
    forced = observed.request.force_renewal
    if isinstance(stored_verdict, Valid) and stored is not None:
        if not forced:
            return Reuse(stored, stored_verdict, cache_it=observed.cached != stored_pair)
        # What is published stays in use while the requested replacement is obtained.
        stored_verdict = Failure(
            Reason.RenewalDue,
            "a renewal was requested",
            stored_verdict.facts,
            stored_verdict.renew_at,
        )
    if observed.cached is not None:
        cached_verdict = (
            stored_verdict  # the same certificate: judged once
            if observed.cached == stored_pair
            else judge(observed.cached, spec, now, observed.cached_window, roots)
        )
        # Renew-now is satisfied by a newer certificate already obtained but not yet
        # published (a publish that failed after the order): never order it again.
        if isinstance(cached_verdict, Valid) and (
            not forced or _newer(cached_verdict, stored_verdict)
        ):
            return Publish(
                observed.cached,
                cached_verdict,
                CertificateReason.RestoredFromCache,
                f"published the cached certificate from Secret {observed.cache_name}",
                cache_it=False,
            )
    serving = _still_serving(stored, stored_verdict)
    if spec.method is GenerationMethod.MANUAL:
        return _manual(observed, serving, now, settings)
    return Issue(
        # A renewal tells the CA which certificate it replaces (RFC 9773 `replaces`).
        replacing=stored.fullchain if stored is not None and stored_verdict.facts else None,
        serving=serving,
        announcement=f"ordering a certificate for {', '.join(spec.names)} through ACME",
    )


def wait_after(failure: Unobservable, settings: DecisionSettings) -> Wait:
    """A read or a write that failed: retry after the retry interval when that can help,
    with a warning when a person should look."""
    retry = settings.retry_seconds if failure.retry else None
    return Wait(
        failure.reason, failure.message, retry, event_type="Warning" if failure.warn else None
    )


def wait_for_other_order(
    plan: Issue, held: StorageLease, uri: str, now: datetime, settings: DecisionSettings
) -> Wait:
    """Another certfleet holds the order lease: its certificate will be in the datastore
    soon, so look again instead of ordering a second one (the serving one stays in use)."""
    left = max((held.expires_at - now).total_seconds(), 0.0)
    retry = max(min(settings.retry_seconds, left), 1.0)
    return Wait(
        CertificateReason.OrderedElsewhere,
        f"{held.holder} holds the order lease of {uri} until {rfc3339(held.expires_at)}: "
        f"it is ordering this certificate; looking again in {retry:.0f} s",
        retry,
        plan.serving,
        "Normal",
    )


def judge(
    pair: PemPair | None,
    spec: CertificateSpec,
    now: datetime,
    window: Window | None,
    trust_roots: Sequence[x509.Certificate],
) -> Verdict:
    """The policy's verdict, with the CA's renewal window when there is one: the window can
    only make a certificate due earlier, and the message then names it as the rule. Every
    certificate, issued or supplied, must chain to ``trust_roots`` (the CloudHost's)."""
    fullchain, key = (pair.fullchain, pair.key) if pair else (None, None)
    return evaluate(
        fullchain,
        key,
        names=spec.names,
        now=now,
        renew_before=spec.renew_before,
        trust_roots=trust_roots,
        ari_window=window,
    )


def judge_issued(
    pair: PemPair,
    spec: CertificateSpec,
    now: datetime,
    window: Window | None,
    trust_roots: Sequence[x509.Certificate],
) -> Verdict:
    """A certificate the CA just issued. Its renewal time follows the CA's window at once;
    but a window that would make a brand-new certificate due is not obeyed by ordering yet
    another one (a confused CA would otherwise make certfleet order in a loop)."""
    verdict = judge(pair, spec, now, window, trust_roots)
    if window is not None and not isinstance(verdict, Valid):
        verdict = judge(pair, spec, now, None, trust_roots)
    return verdict


def _newer(candidate: Valid, published: Verdict) -> bool:
    facts = published.facts
    return facts is not None and candidate.facts.not_before > facts.not_before


def _still_serving(stored: StoredCertificate | None, verdict: Verdict) -> Serving | None:
    """While a replacement is not there yet, a certificate that is only due for renewal
    keeps the resource Ready: agents keep serving it."""
    if stored is None or isinstance(verdict, Valid) or not fit_to_serve(verdict):
        return None
    assert verdict.facts is not None
    return Serving(verdict.facts, verdict.renew_at, stored.pointer.revision)


def _manual(
    observed: Observed, serving: Serving | None, now: datetime, settings: DecisionSettings
) -> Plan:
    described = observed.supplied_name or "the supplied certificate"
    poll = settings.manual_poll_seconds
    if observed.supplied is None:
        reason: str = CertificateReason.WaitingForManualCertificate
        message = f"waiting for {described}"
    else:
        verdict = judge(observed.supplied, observed.spec, now, None, observed.trust_roots)
        if isinstance(verdict, Valid):
            return Publish(
                observed.supplied,
                verdict,
                CertificateReason.ManualCertificateAccepted,
                f"accepted the certificate of {described}",
                cache_it=True,
            )
        reason, message = str(verdict.reason), f"{described}: {verdict.message}"
    if serving is not None:
        return Wait(
            CertificateReason.ManualRenewalRequired,
            f"renewal is due and certfleet does not renew MANUAL certificates: {message}",
            poll,
            serving,
            event_type="Warning",
        )
    waiting = reason == CertificateReason.WaitingForManualCertificate
    return Wait(reason, message, poll, event_type="Normal" if waiting else "Warning")
