"""Step two: what to do about one certificate (pure: what was gathered and the time in, a Plan
out; no I/O, no clock of its own).

Two questions, as cert-manager asks them, each answered by the core's policy chain:

1. Is what we have fit to serve? The datastore's certificate first, then the cache's, then
   (MANUAL) the one a person supplied. ``core.policy.fit_to_serve``.
2. Is it due for (re)issuance, and why? Renewal time reached (the user's margin, or the CA's
   renewal window, RFC 9773), or a person asked for a new certificate now.

Fit and not due: reuse it (or publish it, when it is not the published one). Otherwise
AUTOMATIC issues (resuming the order the cache keeps, when a process died during one), MANUAL
waits for a person; a published certificate that is only due keeps serving meanwhile
(``Serving``). An order goes to the ACME server of spec.acme's list that ``core.fallback``
picks from the failures in a row.

MANUAL replacement: a person who puts a different certificate where the spec says means to
replace the published one, as a webserver admin swaps the files. It is published as soon as
it is fit and not itself due for renewal, whenever it was issued: the datastore's revisions,
not the certificates' notBefore, order what agents install. A replacement the policy refuses
leaves the published one serving, with a warning that says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from certfleet.api.reasons import CertificateReason
from certfleet.api.spec import CertificateSpec, GenerationMethod
from certfleet.api.tenancy import refusal
from certfleet.controller.plan import (
    ClaimLocation,
    Issue,
    Observed,
    Plan,
    Publish,
    Reuse,
    Serving,
    Unobservable,
    Wait,
)
from certfleet.controller.ports import PemPair, PendingOrder, Window
from certfleet.core.backoff import DEFAULT_BASE_SECONDS, DEFAULT_CAP_SECONDS
from certfleet.core.checks import Reason
from certfleet.core.clock import rfc3339
from certfleet.core.fallback import DEFAULT_FAILURES_PER_SERVER, moves_on, server_position
from certfleet.core.leases import StorageLease
from certfleet.core.ownership import Standing, judge_claim
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
    # Failed issuances in a row at one ACME server before the next of spec.acme's list.
    failures_per_acme_server: int = DEFAULT_FAILURES_PER_SERVER


def decide(observed: Observed | Unobservable, now: datetime, settings: DecisionSettings) -> Plan:
    if isinstance(observed, Unobservable):
        return wait_after(observed, settings)
    # The location's owner first: nothing else is judged, and nothing written, for another.
    standing = _standing(observed, settings)
    if standing is not None:
        return standing
    spec, stored = observed.spec, observed.stored
    stored_pair = observed.stored_pair
    roots = observed.trust_roots
    stored_verdict = judge(stored_pair, spec, now, observed.stored_window, roots)
    forced = observed.request.force_renewal
    resealable = _servable(stored_verdict)
    stale_key = stored is not None and not stored.sealed_with_current_key
    if stale_key and stored is not None and stored_pair and resealable and not forced:
        # A master-key rotation: the same certificate again under the current key (even one
        # due for renewal: it serves until replaced), so the previous key can go.
        return Publish(
            stored_pair,
            resealable,
            CertificateReason.Resealed,
            f"published revision {stored.pointer.revision}'s certificate again under the "
            "current master key",
            cache_it=observed.cached != stored_pair,
        )
    if isinstance(stored_verdict, Valid) and stored is not None:
        if not forced:
            replacement = _manual_replacement(observed, stored, stored_verdict, now, settings)
            if replacement is not None:
                return replacement
            cache_it = _cache_may_take(observed, stored_pair, stored_verdict, now)
            return Reuse(stored, stored_verdict, cache_it=cache_it)
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
        # Renew-now is satisfied by a certificate already obtained but not yet published
        # (a publish that failed after the order): never order it again.
        if isinstance(cached_verdict, Valid) and (
            not forced or _unpublished(observed, cached_verdict, stored_verdict)
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
    return _issue(
        spec,
        observed.request.previous_failures,
        settings,
        # A renewal tells the CA which certificate it replaces (RFC 9773 `replaces`).
        replacing=stored.fullchain if stored is not None and stored_verdict.facts else None,
        serving=serving,
        # An order placed before (by a process that died) is carried on, never placed twice.
        resume=observed.pending,
    )


def _issue(
    spec: CertificateSpec,
    failures: int,
    settings: DecisionSettings,
    replacing: bytes | None,
    serving: Serving | None,
    resume: PendingOrder | None,
) -> Issue:
    """An order at the ACME server the fallback rule picks after `failures` in a row, or
    the one `resume` saved."""
    names = ", ".join(spec.names)
    servers = spec.acme.servers if spec.acme is not None else ("",)
    per_server = settings.failures_per_acme_server
    position = server_position(failures, len(servers), per_server)
    if resume is not None:
        announcement = f"resuming the ACME order for {names} placed before a restart"
        return Issue(replacing, serving, announcement, position, None, resume)
    announcement = f"ordering a certificate for {names} through ACME"
    fallback = None
    if len(servers) > 1:
        announcement += f" at {servers[position]}"
    if moves_on(failures, len(servers), per_server):
        before = servers[(position - 1) % len(servers)]
        fallback = (
            f"ACME server {before} failed {per_server} time(s) in a row: ordering from "
            f"{servers[position]} ({_position_name(position)} of spec.acme)"
        )
    return Issue(replacing, serving, announcement, position, fallback)


def _position_name(position: int) -> str:
    return "server" if position == 0 else f"fallbackServers[{position - 1}]"


def _standing(observed: Observed, settings: DecisionSettings) -> Wait | ClaimLocation | None:
    """None when the resource owns the location. Else a refusal (the namespace is not
    admitted, or another owns the location: nothing is ordered, published, or cached into
    this namespace), or the claim to write before anything else (``core.ownership``)."""
    ownership, request = observed.ownership, observed.request
    if not ownership.admitted:
        return Wait(
            CertificateReason.NamespaceNotAllowed,
            f"{refusal(observed.cloudhost, request.namespace)}; nothing is done here",
            settings.retry_seconds,
        )
    claim = ownership.claim
    verdict = judge_claim(
        request.owner,
        claim.owner if claim is not None else None,
        ownership.claim_owner_exists,
        request.take_over_from,
    )
    if verdict.standing is Standing.OWNER:
        return None
    if verdict.may_claim:
        return ClaimLocation(request.owner, claim.etag if claim is not None else None, verdict)
    return Wait(
        CertificateReason.LocationClaimed,
        f"{observed.location.s3_uri}: {verdict.message}; nothing is ordered, published or "
        "cached for this resource",
        settings.retry_seconds,
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


def _servable(verdict: Verdict) -> Valid | None:
    """A verdict fit to serve as a Valid one (a certificate only due keeps its renewal
    time), or None."""
    if isinstance(verdict, Valid):
        return verdict
    if fit_to_serve(verdict) and verdict.facts is not None and verdict.renewal is not None:
        return Valid(verdict.facts.not_after, verdict.renewal, verdict.facts)
    return None


def _cache_may_take(
    observed: Observed, stored_pair: PemPair | None, stored_verdict: Verdict, now: datetime
) -> bool:
    """Whether reusing the published certificate may copy it over the cache. Not over a
    valid one not yet published: a renew-now's (a process died), which the renew-now still
    to come publishes; overwriting it would throw an issued certificate away. (An order
    under way, ``observed.pending``, is left alone for the same reason: a plain
    reconciliation may come before the renew-now's.)"""
    cached = observed.cached
    if cached == stored_pair:
        return False
    if cached is None:
        return True
    verdict = judge(cached, observed.spec, now, observed.cached_window, observed.trust_roots)
    return not (isinstance(verdict, Valid) and _unpublished(observed, verdict, stored_verdict))


def _unpublished(observed: Observed, cached: Valid, published: Verdict) -> bool:
    """Whether the cached certificate (not the published one) was obtained to replace the
    published one: the cache says so while that revision is still published
    (``unpublished``); a cache without a marker (older certfleet) by a later notBefore."""
    stored = observed.stored
    if stored is not None and observed.cached_replaces == stored.pointer.revision:
        return True
    facts = published.facts
    return facts is not None and cached.facts.not_before > facts.not_before


def _manual_replacement(
    observed: Observed,
    stored: StoredCertificate,
    published: Valid,
    now: datetime,
    settings: DecisionSettings,
) -> Publish | Wait | None:
    """MANUAL, a valid certificate published, and a different one supplied: replace it
    (the module's docstring); None when nothing different is supplied."""
    supplied = observed.supplied
    if (
        observed.spec.method is not GenerationMethod.MANUAL
        or supplied is None
        or supplied == PemPair(stored.fullchain, stored.privkey)
    ):
        return None
    described = observed.supplied_name or "the supplied certificate"
    old = published.facts.serial
    verdict = judge(supplied, observed.spec, now, None, observed.trust_roots)
    if isinstance(verdict, Valid):
        return Publish(
            supplied,
            verdict,
            CertificateReason.ManualCertificateAccepted,
            f"accepted the certificate of {described}, replacing serial {old}",
            cache_it=True,
        )
    return Wait(
        str(verdict.reason),
        f"{described} holds a different certificate, refused as a replacement: "
        f"{verdict.message}; serial {old} stays published",
        settings.manual_poll_seconds,
        Serving(published.facts, published.renew_at, stored.pointer.revision),
        event_type="Warning",
    )


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
