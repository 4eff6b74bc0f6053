"""The decision, pure and table-driven: what was gathered and the time in, a Plan out.

Each row is a sentence a person would say about one certificate; every Plan and every reason
the decision can give is reached by at least one row. No I/O: the Observed values are built
here, and the clock is a constant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from certfleet.api.reasons import CertificateReason
from certfleet.api.spec import parse_certificate_spec, parse_cloudhost
from certfleet.controller.decide import DecisionSettings, decide, judge, judge_issued
from certfleet.controller.gather import DatastoreNotConfiguredError, unobservable
from certfleet.controller.plan import (
    ClaimLocation,
    Issue,
    Observed,
    Ownership,
    Plan,
    Publish,
    Request,
    Reuse,
    Unobservable,
    Wait,
)
from certfleet.controller.ports import PemPair, PendingOrder
from certfleet.core.checks import Reason
from certfleet.core.errors import CertfleetError
from certfleet.core.ownership import LocationOwner
from certfleet.core.policy import Valid
from certfleet.datastore.errors import (
    DatastoreError,
    DatastoreIntegrityError,
    DatastoreNotSupportedError,
    DatastoreUnavailableError,
)
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.memory import InMemoryDatastore
from certfleet.datastore.pointer import Pointer
from certfleet.datastore.protocol import LocationClaim, StoredCertificate
from certfleet.kube.gateway import KubernetesUnavailableError
from unit.controller.resources import BUCKET, DOMAIN, MANUAL_SPEC, SPEC
from unit.controller.resources import CLOUDHOST as CLOUDHOST_RESOURCE
from unit.core.certificates import DAY, NOW, ec_key, key_pem, pem, pki

CLOUDHOST = parse_cloudhost("aws", CLOUDHOST_RESOURCE["spec"])
FALLBACK_SPEC = {**SPEC, "acme": {**SPEC["acme"], "fallbackServers": ["letsencrypt"]}}
OWNER = LocationOwner.resource("cluster-1", "shop", "www", "uid-1")
CLAIM_BY_OTHER = LocationClaim(LocationOwner.resource("cluster-1", "other", "www", "uid-2"), '"c2"')
OLD_SELF = LocationOwner.resource("cluster-1", "shop", "www", "uid-0")
MACHINES = LocationOwner.build_machines("prod")
SETTINGS = DecisionSettings(retry_seconds=7, manual_poll_seconds=3)
ROOTS = (pki("ec").root.cert,)  # the CloudHost's trust: what pair() makes chains to it


def pair(days_left: float = 89, lifetime: float = 90, key: int = 9) -> PemPair:
    not_after = NOW + days_left * DAY
    authority = pki("ec")
    leaf = authority.leaf(
        DOMAIN, key=ec_key(n=key), not_before=not_after - lifetime * DAY, not_after=not_after
    )
    return PemPair(pem(leaf.cert, authority.intermediate.cert), key_pem(leaf.key))


VALID, DUE, EXPIRED, OTHER = pair(), pair(days_left=3), pair(days_left=-1), pair(key=4)
# Valid for 60 more days, but issued ten days ago: before VALID (issued a day ago).
EARLIER = pair(days_left=60, lifetime=70, key=5)


def _leaf(not_before_days: float) -> tuple[bytes, bytes]:
    """A certificate issued `not_before_days` from NOW (negative: before), valid 90 days."""
    authority = pki("ec")
    start = NOW + not_before_days * DAY
    leaf = authority.leaf(DOMAIN, key=ec_key(n=3), not_before=start, not_after=start + 90 * DAY)
    return pem(leaf.cert, authority.intermediate.cert), key_pem(leaf.key)


BROKEN = PemPair(b"garbage", VALID.key)


def stored(found: PemPair) -> StoredCertificate:
    digest = hashlib.sha256(found.fullchain).hexdigest()
    pointer = Pointer(1, "0a", NOW - DAY, NOW, digest, digest, digest, NOW, "00" * 8)
    return StoredCertificate(pointer, '"1"', found.fullchain, found.key)


def observed(
    spec: dict[str, Any] = SPEC,
    *,
    published: PemPair | None = None,
    cached: PemPair | None = None,
    supplied: PemPair | None = None,
    window: tuple[datetime, datetime] | None = None,
    forced: bool = False,
    failures: int = 0,
    pending: PendingOrder | None = None,
    cached_replaces: int | None = None,
    ownership: Ownership | None = None,
    claimant: LocationOwner | None = None,
    take_over_from: str | None = None,
) -> Observed:
    parsed = parse_certificate_spec(spec)
    return Observed(
        request=Request(
            "shop",
            spec,
            previous_failures=failures,
            force_renewal=forced,
            owner=claimant or OWNER,
            take_over_from=take_over_from,
        ),
        spec=parsed,
        cloudhost=CLOUDHOST,
        datastore=InMemoryDatastore(),
        location=DatastoreLocation(BUCKET, "certfleet", "aws", "build-7", DOMAIN),
        cache_name="certfleet-www-cache",
        stored=stored(published) if published else None,
        pointer_etag='"1"' if published else None,
        unreadable=None,
        stored_window=window,
        cached=cached,
        cached_window=window,
        supplied=supplied,
        supplied_name="the kubernetes.io/tls Secret shop/supplied",
        pending=pending,
        cached_replaces=cached_replaces,
        ownership=ownership or Ownership(True, LocationClaim(OWNER, '"c1"'), None),
        trust_roots=ROOTS,
    )


@dataclass(frozen=True)
class Row:
    sentence: str
    given: Callable[[], Observed | Unobservable]
    plan: type[Plan]
    reason: str | None = None  # Publish and Wait carry one
    check: Callable[[Any], bool] = lambda _plan: True


ROWS = [
    Row(
        "a valid published certificate is reused, and cached when the cache lacks it",
        lambda: observed(published=VALID),
        Reuse,
        check=lambda plan: plan.cache_it,
    ),
    Row(
        "a valid published certificate already cached is reused without a write",
        lambda: observed(published=VALID, cached=VALID),
        Reuse,
        check=lambda plan: not plan.cache_it,
    ),
    Row(
        "an empty datastore with a valid cached certificate gets the cached one published",
        lambda: observed(cached=VALID),
        Publish,
        CertificateReason.RestoredFromCache,
        check=lambda plan: plan.pair == VALID and not plan.cache_it,
    ),
    Row(
        "nothing anywhere: a certificate is ordered, replacing nothing",
        lambda: observed(),
        Issue,
        check=lambda plan: plan.replacing is None and plan.serving is None,
    ),
    Row(
        "a published certificate due for renewal is replaced and keeps serving meanwhile",
        lambda: observed(published=DUE, cached=DUE),
        Issue,
        check=lambda plan: plan.replacing == DUE.fullchain and plan.serving is not None,
    ),
    Row(
        "an expired published certificate is replaced and serves no longer",
        lambda: observed(published=EXPIRED),
        Issue,
        check=lambda plan: plan.replacing == EXPIRED.fullchain and plan.serving is None,
    ),
    Row(
        "a published certificate that does not parse is replaced, naming nothing it replaces",
        lambda: observed(published=BROKEN),
        Issue,
        check=lambda plan: plan.replacing is None,
    ),
    Row(
        "a CA window in the past makes a valid certificate due now (RFC 9773)",
        lambda: observed(published=VALID, window=(NOW - 2 * DAY, NOW - DAY)),
        Issue,
        check=lambda plan: plan.serving is not None,
    ),
    Row(
        "a person's renew-now replaces a valid certificate, which keeps serving",
        lambda: observed(published=VALID, cached=OTHER, forced=True),
        Issue,
        check=lambda plan: plan.serving is not None and plan.serving.revision == 1,
    ),
    Row(
        "an order goes to spec.acme.server while it has not failed, and says nothing of it",
        lambda: observed(FALLBACK_SPEC),
        Issue,
        check=lambda plan: plan.server_position == 0 and plan.fallback is None,
    ),
    Row(
        "after one failure the back-off retries the same ACME server",
        lambda: observed(FALLBACK_SPEC, failures=1),
        Issue,
        check=lambda plan: plan.server_position == 0 and plan.fallback is None,
    ),
    Row(
        "a server that failed twice in a row: the fallback, with a warning naming both",
        lambda: observed(FALLBACK_SPEC, failures=2),
        Issue,
        check=lambda plan: (
            plan.server_position == 1
            and "https://ca.example/dir failed 2 time(s)" in plan.fallback
            and "ordering from letsencrypt (fallbackServers[0]" in plan.fallback
            and plan.announcement.endswith("at letsencrypt")
        ),
    ),
    Row(
        "the fallback failed twice too: back to the first server, which may be back",
        lambda: observed(FALLBACK_SPEC, failures=4),
        Issue,
        check=lambda plan: plan.server_position == 0 and "(server of spec.acme)" in plan.fallback,
    ),
    Row(
        "without fallback servers failures never move the order anywhere",
        lambda: observed(failures=6),
        Issue,
        check=lambda plan: plan.server_position == 0 and plan.fallback is None,
    ),
    Row(
        "MANUAL with nothing supplied waits for a person, quietly announced",
        lambda: observed(MANUAL_SPEC),
        Wait,
        CertificateReason.WaitingForManualCertificate,
        check=lambda plan: plan.retry_after == 3 and plan.event_type == "Normal",
    ),
    Row(
        "MANUAL with a valid supplied certificate gets it cached and published",
        lambda: observed(MANUAL_SPEC, supplied=VALID),
        Publish,
        CertificateReason.ManualCertificateAccepted,
        check=lambda plan: plan.cache_it and "shop/supplied" in plan.message,
    ),
    Row(
        "MANUAL with an expired supplied certificate is refused with the policy's reason",
        lambda: observed(MANUAL_SPEC, supplied=EXPIRED),
        Wait,
        Reason.Expired,
        check=lambda plan: plan.event_type == "Warning" and "shop/supplied" in plan.message,
    ),
    Row(
        "MANUAL with the published certificate supplied reuses it",
        lambda: observed(MANUAL_SPEC, published=VALID, cached=VALID, supplied=VALID),
        Reuse,
        check=lambda plan: not plan.cache_it,
    ),
    Row(
        "MANUAL: a person's replacement issued before the published one replaces it at once",
        lambda: observed(MANUAL_SPEC, published=VALID, cached=VALID, supplied=EARLIER),
        Publish,
        CertificateReason.ManualCertificateAccepted,
        check=lambda plan: (
            plan.pair == EARLIER and plan.cache_it and "replacing serial" in plan.message
        ),
    ),
    Row(
        "MANUAL: a replacement with a new key and a later expiry replaces it too",
        lambda: observed(MANUAL_SPEC, published=EARLIER, cached=EARLIER, supplied=OTHER),
        Publish,
        CertificateReason.ManualCertificateAccepted,
        check=lambda plan: plan.pair == OTHER,
    ),
    Row(
        "MANUAL: a replacement already due for renewal is refused; the published one serves",
        lambda: observed(MANUAL_SPEC, published=VALID, cached=VALID, supplied=DUE),
        Wait,
        Reason.RenewalDue,
        check=lambda plan: (
            plan.serving is not None
            and plan.serving.revision == 1
            and plan.event_type == "Warning"
            and "stays published" in plan.message
        ),
    ),
    Row(
        "MANUAL: an expired replacement is refused with the policy's reason, still serving",
        lambda: observed(MANUAL_SPEC, published=VALID, cached=VALID, supplied=EXPIRED),
        Wait,
        Reason.Expired,
        check=lambda plan: plan.serving is not None and "shop/supplied" in plan.message,
    ),
    Row(
        "MANUAL: an unparsable replacement is refused, still serving",
        lambda: observed(MANUAL_SPEC, published=VALID, supplied=BROKEN),
        Wait,
        Reason.InvalidPEM,
        check=lambda plan: plan.serving is not None,
    ),
    Row(
        "AUTOMATIC ignores a supplied pair: the published certificate is reused",
        lambda: observed(published=VALID, cached=VALID, supplied=EARLIER),
        Reuse,
    ),
    Row(
        "MANUAL due for renewal keeps serving and asks a person (certfleet never renews it)",
        lambda: observed(MANUAL_SPEC, published=DUE),
        Wait,
        CertificateReason.ManualRenewalRequired,
        check=lambda plan: plan.serving is not None and plan.event_type == "Warning",
    ),
    Row(
        "an invalid spec waits for a new spec: no retry",
        lambda: Unobservable(CertificateReason.InvalidSpec, "spec.domain is required", False),
        Wait,
        CertificateReason.InvalidSpec,
        check=lambda plan: plan.retry_after is None and plan.event_type is None,
    ),
    Row(
        "an unreachable datastore is retried after the retry interval, without an event",
        lambda: Unobservable(CertificateReason.DatastoreUnavailable, "S3 is down", True),
        Wait,
        CertificateReason.DatastoreUnavailable,
        check=lambda plan: plan.retry_after == 7 and plan.event_type is None,
    ),
    Row(
        "an S3 provider without conditional writes is not retried at once, with a warning",
        lambda: Unobservable(CertificateReason.DatastoreNotSupported, "501", False, warn=True),
        Wait,
        CertificateReason.DatastoreNotSupported,
        check=lambda plan: plan.retry_after is None and plan.event_type == "Warning",
    ),
    Row(
        "a datastore whose content fails its integrity check is retried with a warning",
        lambda: Unobservable(CertificateReason.DatastoreIntegrity, "digest", True, warn=True),
        Wait,
        CertificateReason.DatastoreIntegrity,
        check=lambda plan: plan.retry_after == 7 and plan.event_type == "Warning",
    ),
    # -- the location's owner (core.ownership), before anything else ----------------------
    Row(
        "a namespace the CloudHost does not admit gets nothing, even for a valid certificate",
        lambda: observed(published=VALID, ownership=Ownership(False, None, None)),
        Wait,
        CertificateReason.NamespaceNotAllowed,
        check=lambda plan: (
            "spec.allowedNamespaces" in plan.message
            and "cloudhost.certfleet.io/aws=allowed" in plan.message
            and plan.retry_after == 7
            and plan.serving is None
        ),
    ),
    Row(
        "a location nobody claimed is claimed before anything is reused there",
        lambda: observed(published=VALID, ownership=Ownership(True, None, None)),
        ClaimLocation,
        check=lambda plan: plan.owner == OWNER and plan.replacing is None,
    ),
    Row(
        "an owner.json that is not a claim is replaced against its ETag",
        lambda: observed(ownership=Ownership(True, LocationClaim(None, '"junk"'), None)),
        ClaimLocation,
        check=lambda plan: plan.replacing == '"junk"',
    ),
    Row(
        "another namespace's live resource owns the location: nothing here, its name told",
        lambda: observed(published=VALID, ownership=Ownership(True, CLAIM_BY_OTHER, True)),
        Wait,
        CertificateReason.LocationClaimed,
        check=lambda plan: (
            "ManagedCertificate other/www" in plan.message
            and plan.serving is None
            and plan.retry_after == 7
        ),
    ),
    Row(
        "renew-now from a resource that does not own the location orders nothing",
        lambda: observed(
            published=DUE, forced=True, ownership=Ownership(True, CLAIM_BY_OTHER, True)
        ),
        Wait,
        CertificateReason.LocationClaimed,
    ),
    Row(
        "a MANUAL certificate supplied to a non-owner is not published",
        lambda: observed(
            MANUAL_SPEC, supplied=VALID, ownership=Ownership(True, CLAIM_BY_OTHER, True)
        ),
        Wait,
        CertificateReason.LocationClaimed,
    ),
    Row(
        "a live owner is never taken over, even by an annotation naming it",
        lambda: observed(
            ownership=Ownership(True, CLAIM_BY_OTHER, True), take_over_from="other/www"
        ),
        Wait,
        CertificateReason.LocationClaimed,
        check=lambda plan: "only once that resource is deleted" in plan.message,
    ),
    Row(
        "a deleted owner is not taken over by another resource without a person's word",
        lambda: observed(ownership=Ownership(True, CLAIM_BY_OTHER, False)),
        Wait,
        CertificateReason.LocationClaimed,
        check=lambda plan: "certfleet.io/take-over-from=other/www" in plan.message,
    ),
    Row(
        "a deleted owner is taken over by the resource that names it in take-over-from",
        lambda: observed(
            ownership=Ownership(True, CLAIM_BY_OTHER, False), take_over_from="other/www"
        ),
        ClaimLocation,
        check=lambda plan: plan.replacing == '"c2"' and plan.owner == OWNER,
    ),
    Row(
        "a resource deleted and applied again (a new uid) takes its own location back",
        lambda: observed(
            ownership=Ownership(True, LocationClaim(OLD_SELF, '"c3"'), False),
        ),
        ClaimLocation,
        check=lambda plan: plan.replacing == '"c3"',
    ),
    Row(
        "build machines' location is taken over only when a person names them",
        lambda: observed(
            ownership=Ownership(True, LocationClaim(MACHINES, '"c4"'), None),
            take_over_from="build-machines:prod",
        ),
        ClaimLocation,
    ),
    Row(
        "build machines' location is not taken by a resource that does not name them",
        lambda: observed(ownership=Ownership(True, LocationClaim(MACHINES, '"c4"'), None)),
        Wait,
        CertificateReason.LocationClaimed,
        check=lambda plan: "certfleet cannot see from here" in plan.message,
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.sentence for row in ROWS])
def test_the_decision(row: Row) -> None:
    plan = decide(row.given(), NOW, SETTINGS)
    assert isinstance(plan, row.plan), plan
    if row.reason is not None:
        assert isinstance(plan, Publish | Wait) and plan.reason == row.reason
    assert row.check(plan), plan


def test_every_plan_is_reached() -> None:
    assert {row.plan for row in ROWS} == {Reuse, Publish, Issue, Wait, ClaimLocation}


def test_the_decision_takes_the_time_it_is_given() -> None:
    given = observed(published=VALID)
    assert isinstance(decide(given, NOW, SETTINGS), Reuse)
    assert isinstance(decide(given, NOW + 85 * DAY, SETTINGS), Issue)  # four days left


def test_a_ca_window_brings_the_renewal_time_earlier_but_never_later() -> None:
    early = decide(
        observed(published=VALID, window=(NOW + 40 * DAY, NOW + 42 * DAY)), NOW, SETTINGS
    )
    late = decide(observed(published=VALID, window=(NOW + 80 * DAY, NOW + 85 * DAY)), NOW, SETTINGS)
    plain = decide(observed(published=VALID), NOW, SETTINGS)
    assert isinstance(early, Reuse) and isinstance(late, Reuse) and isinstance(plain, Reuse)
    assert early.verdict.renew_at == NOW + 41 * DAY
    assert late.verdict.renew_at == plain.verdict.renew_at


def test_the_verdict_says_when_the_ca_asked_for_renewal() -> None:
    spec = parse_certificate_spec(SPEC)
    asked = judge(VALID, spec, NOW, (NOW - 2 * DAY, NOW - DAY), ROOTS)
    due = judge(DUE, spec, NOW, (NOW - 2 * DAY, NOW - DAY), ROOTS)
    assert not asked.ok and "(the CA's renewal window, RFC 9773)" in asked.message
    assert not due.ok and "(the CA's renewal window" not in due.message, "due by its own rule"


def test_a_fresh_certificate_follows_a_ca_window_unless_it_would_be_due_at_once() -> None:
    spec = parse_certificate_spec(SPEC)
    followed = judge_issued(VALID, spec, NOW, (NOW + 10 * DAY, NOW + 12 * DAY), ROOTS)
    ignored = judge_issued(VALID, spec, NOW, (NOW - 2 * DAY, NOW - DAY), ROOTS)
    assert isinstance(followed, Valid) and followed.renew_at == NOW + 11 * DAY
    assert isinstance(ignored, Valid) and ignored.renew_at > NOW + 50 * DAY


@pytest.mark.parametrize(
    ("error", "reason", "retry"),
    [
        (DatastoreNotConfiguredError("no CloudHost"), "DatastoreNotConfigured", True),
        (DatastoreUnavailableError("S3 down"), "DatastoreUnavailable", True),
        (DatastoreNotSupportedError("501"), "DatastoreNotSupported", False),
        (DatastoreIntegrityError("digest"), "DatastoreIntegrity", True),
        (DatastoreError("access denied"), "DatastoreFailed", True),
        (KubernetesUnavailableError("API server away"), "KubernetesUnavailable", True),
        (CertfleetError("a port of its own"), "ReconcileFailed", False),
    ],
)
def test_every_failed_read_or_write_has_its_reason(
    error: CertfleetError, reason: str, retry: bool
) -> None:
    failure = unobservable(error)
    assert (failure.reason, failure.retry) == (reason, retry)


# -- an order placed before a restart ---------------------------------------------------------

PENDING = PendingOrder(
    "https://ca.test/dir", "https://ca.test/acct/1", "https://ca.test/order/7", (DOMAIN,), b"k"
)


@pytest.mark.parametrize(
    ("published", "cached", "forced"),
    [(None, None, False), (DUE, None, False), (EXPIRED, BROKEN, False), (VALID, None, True)],
    ids=["first issuance", "renewal", "nothing fit", "renew-now"],
)
def test_an_order_placed_before_a_restart_is_resumed_not_placed_again(
    published: PemPair | None, cached: PemPair | None, forced: bool
) -> None:
    plan = decide(
        observed(published=published, cached=cached, forced=forced, pending=PENDING),
        NOW,
        SETTINGS,
    )
    assert isinstance(plan, Issue) and plan.resume == PENDING
    assert plan.announcement.startswith("resuming the ACME order")
    fresh = decide(observed(published=published, cached=cached, forced=forced), NOW, SETTINGS)
    assert isinstance(fresh, Issue) and fresh.resume is None
    assert fresh.announcement.startswith("ordering a certificate")


def test_a_plain_reconciliation_before_a_renew_nows_keeps_what_the_renewal_obtained() -> None:
    """After a kill mid renew-now, kopf runs the plain handler first: reusing the published
    certificate must neither forget the renewal's order nor overwrite its certificate."""
    plan = decide(observed(published=VALID, cached=VALID, pending=PENDING), NOW, SETTINGS)
    assert isinstance(plan, Reuse) and not plan.cache_it  # the order stays where it is
    renewed = PemPair(*_leaf(not_before_days=-0.5))
    plan = decide(observed(published=VALID, cached=renewed), NOW, SETTINGS)
    assert isinstance(plan, Reuse) and not plan.cache_it, "a newer certificate overwritten"
    forced = decide(observed(published=VALID, cached=renewed, forced=True), NOW, SETTINGS)
    assert isinstance(forced, Publish) and forced.pair == renewed
    for older_or_unfit in (OTHER, DUE, BROKEN, None):
        plan = decide(observed(published=VALID, cached=older_or_unfit), NOW, SETTINGS)
        assert isinstance(plan, Reuse) and plan.cache_it, older_or_unfit


def test_a_cached_certificate_the_cache_marks_as_the_published_ones_replacement_is_kept() -> None:
    """OTHER has the published certificate's notBefore (a renewal in its second): only the
    cache's marker tells it from an older copy. Revision 1 is the published one."""
    for replaces, kept in ((1, True), (0, False), (None, False)):  # 0: none was published
        plain = decide(
            observed(published=VALID, cached=OTHER, cached_replaces=replaces), NOW, SETTINGS
        )
        assert isinstance(plain, Reuse) and plain.cache_it is not kept, replaces
        forced = decide(
            observed(published=VALID, cached=OTHER, cached_replaces=replaces, forced=True),
            NOW,
            SETTINGS,
        )
        if kept:
            assert isinstance(forced, Publish) and forced.pair == OTHER, "ordered again"
        else:
            assert isinstance(forced, Issue), replaces


def test_a_cached_certificate_is_published_before_a_pending_order_is_looked_at() -> None:
    # A crash after the download and the cache write, before the publish.
    plan = decide(observed(published=DUE, cached=VALID, pending=PENDING), NOW, SETTINGS)
    assert isinstance(plan, Publish) and plan.reason == CertificateReason.RestoredFromCache


def test_a_pending_order_never_shows_its_key() -> None:
    secret = PendingOrder("https://a", "https://b", "https://c", ("x",), b"PRIVATE KEY bytes")
    assert "PRIVATE" not in repr(secret)
    plan = decide(observed(published=DUE, pending=secret), NOW, SETTINGS)
    assert "PRIVATE" not in repr(plan)
