"""The reconciler's flow with fakes at its edges: a dict of Secrets, the in-memory
datastore, a fake CA.

The order of DESIGN.md (datastore, then cache, then issue or wait), and the promise that a
certificate once issued is never lost nor ordered twice, are decided here, so they are tested
here without any server; tests/e2e prove the same on the real ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography import x509

from certfleet.api.spec import CertificateSpec, CloudHostConfig, cache_secret_name, parse_cloudhost
from certfleet.api.spec import parse_certificate_spec as parse_spec
from certfleet.api.status import CertificateStatus
from certfleet.controller.adapters import SecretCache, SecretSuppliedCertificates
from certfleet.controller.decide import DecisionSettings
from certfleet.controller.gather import DatastoreNotConfiguredError
from certfleet.controller.plan import Outcome, Request
from certfleet.controller.ports import PemPair, Ports
from certfleet.controller.reconcile import OrderLease, Reconciler
from certfleet.controller.report import events_to_post, status_from_outcome
from certfleet.core.errors import CertfleetError, RetryLaterError
from certfleet.datastore.errors import DatastoreNotSupportedError, DatastoreUnavailableError
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.memory import InMemoryDatastore
from certfleet.datastore.protocol import Datastore, LeaseTaken
from certfleet.kube.gateway import KubernetesUnavailableError
from unit.controller.resources import BUCKET, CLOUDHOST, DOMAIN, MANUAL_SPEC, NAMESPACE, SPEC
from unit.core.certificates import DAY, NOW, ec_key, issue, key_pem, pem, pki


def certificate(
    not_before: datetime = NOW - DAY,
    not_after: datetime = NOW + 89 * DAY,
    names: Sequence[str] = (DOMAIN,),
    key: int = 9,
) -> tuple[bytes, bytes]:
    authority = pki("ec")
    leaf = authority.leaf(*names, key=ec_key(n=key), not_before=not_before, not_after=not_after)
    return pem(leaf.cert, authority.intermediate.cert), key_pem(leaf.key)


def untrusted(self_signed: bool = False) -> tuple[bytes, bytes]:
    """A certificate for DOMAIN from a CA the CloudHost does not trust (or nobody's)."""
    if self_signed:
        leaf = issue(subject=DOMAIN, key=ec_key(n=9), dns_names=[DOMAIN])
        return pem(leaf.cert), key_pem(leaf.key)
    other = pki("ec", 1)
    leaf = other.leaf(DOMAIN, key=ec_key(n=9), not_before=NOW - DAY, not_after=NOW + 89 * DAY)
    return pem(leaf.cert, other.intermediate.cert, other.root.cert), key_pem(leaf.key)


class DictSecrets:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        self.fail_writes = False

    def read(self, namespace: str, name: str) -> tuple[bytes, bytes] | None:
        return self.items.get((namespace, name))

    def write(
        self,
        namespace: str,
        name: str,
        fullchain: bytes,
        key: bytes,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
    ) -> None:
        if self.fail_writes:
            raise KubernetesUnavailableError("the API server did not answer")
        self.items[(namespace, name)] = (fullchain, key)


@dataclass
class FakeIssuer:
    next_certificate: tuple[bytes, bytes] = field(default_factory=certificate)
    fail: bool = False
    retry_after: float | None = None
    orders: int = 0
    replaced: list[bytes | None] = field(default_factory=list)

    def issue(self, spec: CertificateSpec, namespace: str, replacing: bytes | None) -> PemPair:
        self.orders += 1
        self.replaced.append(replacing)
        if self.retry_after is not None:
            raise RetryLaterError("rate limited", self.retry_after)
        if self.fail:
            raise CertfleetError("the CA is down")
        return PemPair(*self.next_certificate)


class FlakyDatastore(InMemoryDatastore):
    """Publishing fails while `publish_down` is set, as when S3 goes away mid-reconciliation;
    its clock is `clock_now`."""

    clock_now = NOW

    def __init__(self) -> None:
        super().__init__(lambda: self.clock_now)

    publish_down = False
    publish_error: Exception | None = None

    def publish(self, *args: Any, **kwargs: Any) -> Any:
        if self.publish_down:
            raise DatastoreUnavailableError("S3 did not answer")
        if self.publish_error is not None:
            raise self.publish_error
        return super().publish(*args, **kwargs)


@dataclass
class FakeWorld:
    """The controller's ports over dicts and the in-memory datastore; the Secret-backed
    ports are the real adapters over a dict of Secrets."""

    store: FlakyDatastore = field(default_factory=FlakyDatastore)
    secrets: DictSecrets = field(default_factory=DictSecrets)
    ca: FakeIssuer = field(default_factory=FakeIssuer)
    cloudhosts: dict[str, Mapping[str, Any]] = field(default_factory=lambda: {"aws": CLOUDHOST})
    ari_window: tuple[datetime, datetime] | None = None  # what the CA's ARI suggests
    ari_asked: list[bytes] = field(default_factory=list)
    announced: list[str] = field(default_factory=list)

    def datastore(self, cloudhost: str) -> tuple[CloudHostConfig, Datastore]:
        if cloudhost not in self.cloudhosts:
            raise DatastoreNotConfiguredError(f"CloudHost {cloudhost!r} does not exist")
        return parse_cloudhost(cloudhost, self.cloudhosts[cloudhost]["spec"]), self.store

    def window(
        self, spec: CertificateSpec, certificate_pem: bytes
    ) -> tuple[datetime, datetime] | None:
        self.ari_asked.append(certificate_pem)
        return self.ari_window

    def roots(self, cloudhost: CloudHostConfig) -> tuple[x509.Certificate, ...]:
        return (pki("ec").root.cert,)  # what the fake CA's chains lead to

    def ports(self) -> Ports:
        return Ports(
            datastores=self,
            cache=SecretCache(self.secrets),
            supplied=SecretSuppliedCertificates(self.secrets),
            issuer=self.ca,
            windows=self,
            trust=self,
        )

    # The Reporter port: what the status would be told.
    def issuing(self, message: str) -> None:
        self.announced.append(message)

    def report(self, outcome: Outcome) -> None:
        pass


@pytest.fixture
def world() -> FakeWorld:
    return FakeWorld()


def reconcile(
    world: FakeWorld,
    spec: Mapping[str, Any] = SPEC,
    now: datetime = NOW,
    previous_failures: int = 0,
    force_renewal: bool = False,
) -> Outcome:
    settings = DecisionSettings(
        retry_seconds=7,
        manual_poll_seconds=3,
        issuance_backoff_base_seconds=5,
        issuance_backoff_cap_seconds=40,
    )
    request = Request(
        NAMESPACE, spec, previous_failures=previous_failures, force_renewal=force_renewal
    )
    return Reconciler(world.ports(), lambda: now, settings).reconcile(request, world)


def typed(status: Mapping[str, Any]) -> CertificateStatus:
    return CertificateStatus.from_dict(status)


def published(world: FakeWorld) -> tuple[bytes, bytes] | None:
    location = DatastoreLocation(BUCKET, "certfleet", "aws", "build-7", DOMAIN)
    stored = world.store.read_current(location)
    return (stored.fullchain, stored.privkey) if stored else None


def cached(world: FakeWorld, spec: Mapping[str, Any] = SPEC) -> tuple[bytes, bytes] | None:
    return world.secrets.read(NAMESPACE, cache_secret_name(parse_spec(spec)))


def test_issues_caches_and_publishes_when_nothing_is_stored(world: FakeWorld) -> None:
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason) == (True, "Issued")
    assert world.ca.orders == 1
    assert published(world) == world.ca.next_certificate == cached(world)
    assert outcome.revision == 1 and outcome.retry_after is None
    assert [event.reason for event in outcome.events] == ["Issued", "Published"]


def test_datastore_first_reuses_a_valid_certificate_without_an_order(world: FakeWorld) -> None:
    reconcile(world)
    world.secrets.items.clear()  # a fresh cluster: no cache

    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason, outcome.revision) == (True, "Reused", 1)
    assert world.ca.orders == 1
    assert cached(world) == published(world), "the cluster cache is restored from S3"


def test_cache_second_is_published_when_the_datastore_is_empty(world: FakeWorld) -> None:
    pair = certificate()
    world.secrets.items[(NAMESPACE, cache_secret_name(parse_spec(SPEC)))] = pair

    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason) == (True, "RestoredFromCache")
    assert world.ca.orders == 0
    assert published(world) == pair


def test_a_failed_publish_never_costs_a_second_order(world: FakeWorld) -> None:
    world.store.publish_down = True
    failed = reconcile(world)
    # After an order, even a datastore outage goes through the issuance back-off (base 5 s).
    assert (failed.ready, failed.reason, failed.retry_after) == (False, "DatastoreUnavailable", 5)
    assert failed.issuance_failed
    assert cached(world) == world.ca.next_certificate, "the new key was lost"

    world.store.publish_down = False
    world.ca.next_certificate = certificate(names=("other.example.com",))  # must not be used
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason) == (True, "RestoredFromCache")
    assert world.ca.orders == 1


def test_renewal_due_issues_a_new_revision(world: FakeWorld) -> None:
    reconcile(world)
    later = NOW + 83 * DAY  # 6 days before expiry: inside the 7-day threshold
    world.ca.next_certificate = certificate(NOW + 82 * DAY, NOW + 172 * DAY)

    outcome = reconcile(world, now=later)
    assert (outcome.ready, outcome.reason, outcome.revision) == (True, "Issued", 2)
    assert published(world) == world.ca.next_certificate


def test_failed_renewal_keeps_the_old_certificate_ready(world: FakeWorld) -> None:
    reconcile(world)
    world.ca.fail = True
    outcome = reconcile(world, now=NOW + 83 * DAY)
    assert (outcome.ready, outcome.reason) == (True, "IssuanceFailed")
    assert outcome.issuance_failed and outcome.retry_after == 5
    assert outcome.revision == 1


def test_failed_first_issuance_is_not_ready(world: FakeWorld) -> None:
    world.ca.fail = True
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason, outcome.issuance_failed) == (
        False,
        "IssuanceFailed",
        True,
    )
    assert "the CA is down" in outcome.message
    assert published(world) is None


def test_manual_waits_for_its_secret(world: FakeWorld) -> None:
    outcome = reconcile(world, MANUAL_SPEC)
    assert (outcome.ready, outcome.reason, outcome.retry_after) == (
        False,
        "WaitingForManualCertificate",
        3,
    )
    assert world.ca.orders == 0


@pytest.mark.parametrize(
    ("supplied", "reason"),
    [
        (lambda: (certificate()[0], certificate(key=3)[1]), "KeyMismatch"),
        (lambda: certificate(NOW - 100 * DAY, NOW - DAY), "Expired"),
        (lambda: certificate(names=("shop.example.org",)), "NameMismatch"),
        (lambda: (b"garbage", certificate()[1]), "InvalidPEM"),
        (lambda: untrusted(), "UntrustedChain"),
        (lambda: untrusted(self_signed=True), "UntrustedChain"),
        (
            lambda: (
                certificate()[0].split(b"-----END CERTIFICATE-----")[0]
                + b"-----END CERTIFICATE-----\n",
                certificate()[1],
            ),
            "UntrustedChain",
        ),
    ],
    ids=["wrong-key", "expired", "wrong-name", "garbage", "another-ca", "self-signed", "leaf-only"],
)
def test_manual_refuses_a_bad_secret_and_publishes_nothing(
    world: FakeWorld, supplied: Any, reason: str
) -> None:
    world.secrets.items[(NAMESPACE, "supplied")] = supplied()
    outcome = reconcile(world, MANUAL_SPEC)
    assert (outcome.ready, outcome.reason) == (False, reason)
    assert "supplied" in outcome.message and "PRIVATE KEY" not in outcome.message
    assert published(world) is None


def test_a_ca_answer_that_does_not_chain_to_the_roots_is_never_published(
    world: FakeWorld,
) -> None:
    world.ca.next_certificate = untrusted()
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason) == (False, "UntrustedChain")
    assert outcome.issuance_failed and published(world) is None


def test_manual_accepts_a_valid_secret(world: FakeWorld) -> None:
    pair = certificate()
    world.secrets.items[(NAMESPACE, "supplied")] = pair
    outcome = reconcile(world, MANUAL_SPEC)
    assert (outcome.ready, outcome.reason) == (True, "ManualCertificateAccepted")
    assert published(world) == pair


def test_manual_is_never_renewed_only_reported(world: FakeWorld) -> None:
    world.secrets.items[(NAMESPACE, "supplied")] = certificate()
    reconcile(world, MANUAL_SPEC)
    outcome = reconcile(world, MANUAL_SPEC, now=NOW + 83 * DAY)
    assert (outcome.ready, outcome.reason) == (True, "ManualRenewalRequired")
    assert world.ca.orders == 0


def test_invalid_spec_and_missing_cloudhost_are_reported(world: FakeWorld) -> None:
    invalid = reconcile(world, {**SPEC, "domain": "xn--zz.example.com"})
    assert (invalid.ready, invalid.reason, invalid.retry_after) == (False, "InvalidSpec", None)
    missing = reconcile(world, {**SPEC, "cloudhost": "nowhere"})
    assert (missing.ready, missing.reason, missing.retry_after) == (
        False,
        "DatastoreNotConfigured",
        7,
    )
    assert "nowhere" in missing.message


def test_status_keeps_transition_time_and_counts_failures(world: FakeWorld) -> None:
    world.ca.fail = True
    first = status_from_outcome(reconcile(world), typed({}), 1, NOW)
    second = status_from_outcome(reconcile(world), typed(first), 1, NOW + DAY)
    assert (
        second["conditions"][0]["lastTransitionTime"]
        == first["conditions"][0]["lastTransitionTime"]
    )
    assert (first["failedIssuanceAttempts"], second["failedIssuanceAttempts"]) == (1, 2)

    world.ca.fail = False
    ready = status_from_outcome(reconcile(world), typed(second), 1, NOW + 2 * DAY)
    assert ready["conditions"][0]["status"] == "True"
    assert (
        ready["conditions"][0]["lastTransitionTime"] != first["conditions"][0]["lastTransitionTime"]
    )
    assert ready["failedIssuanceAttempts"] == 0
    assert ready["serialNumber"] and ready["renewalTime"] and ready["datastore"]["revision"] == 1


def test_failed_issuances_back_off_exponentially_up_to_the_cap(world: FakeWorld) -> None:
    world.ca.fail = True
    delays = [reconcile(world, previous_failures=n).retry_after for n in range(6)]
    assert delays == [5, 10, 20, 40, 40, 40]


def test_a_rate_limit_retry_after_is_honoured(world: FakeWorld) -> None:
    world.ca.retry_after = 3600
    outcome = reconcile(world)
    assert (outcome.reason, outcome.retry_after) == ("IssuanceFailed", 3600)


def test_renew_now_replaces_a_valid_certificate(world: FakeWorld) -> None:
    reconcile(world)
    world.ca.next_certificate = certificate(key=4)
    outcome = reconcile(world, force_renewal=True)
    assert (outcome.ready, outcome.reason, outcome.revision) == (True, "Issued", 2)
    assert world.ca.orders == 2
    assert published(world) == world.ca.next_certificate


def test_failed_renew_now_keeps_serving_the_valid_certificate(world: FakeWorld) -> None:
    reconcile(world)
    world.ca.fail = True
    outcome = reconcile(world, force_renewal=True)
    assert (outcome.ready, outcome.reason, outcome.revision) == (True, "IssuanceFailed", 1)


def test_an_ari_window_in_the_past_makes_a_valid_certificate_due_now(world: FakeWorld) -> None:
    first = reconcile(world)
    assert first.renew_at is not None and first.renew_at > NOW + 50 * DAY
    # The CA asks for renewal now (RFC 9773: a window in the past), e.g. after a revocation.
    world.ari_window = (NOW - DAY, NOW - DAY / 2)
    old = published(world)
    world.ca.next_certificate = certificate(key=4)

    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason, outcome.revision) == (True, "Issued", 2)
    assert world.ca.orders == 2
    assert published(world) == world.ca.next_certificate
    assert old is not None and world.ca.replaced == [None, old[0]], (
        "the renewal names its predecessor"
    )


def test_an_ari_window_brings_the_renewal_time_earlier_but_never_later(world: FakeWorld) -> None:
    plain = reconcile(world).renew_at  # 7 days before expiry: NOW + 82 days
    assert plain is not None
    world.ari_window = (NOW + 40 * DAY, NOW + 42 * DAY)
    earlier = reconcile(world)
    assert (earlier.reason, earlier.renew_at) == ("Reused", NOW + 41 * DAY)  # the midpoint
    world.ari_window = (NOW + 84 * DAY, NOW + 88 * DAY)  # after the rule
    assert reconcile(world).renew_at == plain
    assert world.ca.orders == 1


def test_no_ari_window_changes_nothing(world: FakeWorld) -> None:
    first = reconcile(world)
    again = reconcile(world)
    assert (again.reason, again.renew_at, world.ca.orders) == ("Reused", first.renew_at, 1)
    assert world.ari_asked, "the CA was asked"


def test_a_fresh_certificate_shows_its_ari_renewal_time_at_once(world: FakeWorld) -> None:
    world.ari_window = (NOW + 10 * DAY, NOW + 12 * DAY)
    assert reconcile(world).renew_at == NOW + 11 * DAY


def test_a_window_that_makes_a_fresh_certificate_due_is_not_obeyed_at_once(
    world: FakeWorld,
) -> None:
    world.ari_window = (NOW - DAY, NOW - DAY / 2)  # a confused CA: renew the new one now
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason, world.ca.orders) == (True, "Issued", 1)
    assert outcome.renew_at is not None and outcome.renew_at > NOW + 50 * DAY


def test_manual_certificates_never_ask_a_ca(world: FakeWorld) -> None:
    world.secrets.items[(NAMESPACE, "supplied")] = certificate()
    world.ari_window = (NOW - DAY, NOW - DAY / 2)
    outcome = reconcile(world, MANUAL_SPEC)
    assert (outcome.ready, outcome.reason) == (True, "ManualCertificateAccepted")
    assert reconcile(world, MANUAL_SPEC).reason == "Reused"
    assert world.ari_asked == []


def test_a_repeated_state_is_announced_once(world: FakeWorld) -> None:
    first = reconcile(world, MANUAL_SPEC)
    status = status_from_outcome(first, typed({}), 1, NOW)
    assert [e.reason for e in events_to_post(first, typed({}))] == ["WaitingForManualCertificate"]
    again = reconcile(world, MANUAL_SPEC)
    assert events_to_post(again, typed(status)) == ()

    world.secrets.items[(NAMESPACE, "supplied")] = certificate()
    accepted = reconcile(world, MANUAL_SPEC)
    assert [e.reason for e in events_to_post(accepted, typed(status))] == ["Published"]


def test_a_failed_cache_write_after_an_order_still_publishes(world: FakeWorld) -> None:
    world.secrets.fail_writes = True
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason) == (True, "Issued")
    assert published(world) == world.ca.next_certificate, "the issued certificate was lost"
    assert "CacheWriteFailed" in [event.reason for event in outcome.events]
    world.secrets.fail_writes = False
    again = reconcile(world)
    assert again.reason == "Reused" and cached(world) == published(world)
    assert world.ca.orders == 1


def test_a_certificate_the_policy_rejects_backs_off_exponentially(world: FakeWorld) -> None:
    world.ca.next_certificate = certificate(names=("other.example.com",))
    delays = [reconcile(world, previous_failures=n) for n in range(3)]
    assert [o.reason for o in delays] == ["NameMismatch"] * 3
    assert [o.retry_after for o in delays] == [5, 10, 20]
    assert all(o.issuance_failed for o in delays)


def test_renew_now_after_a_failed_publish_publishes_the_new_certificate(world: FakeWorld) -> None:
    reconcile(world)
    world.store.publish_down = True
    world.ca.next_certificate = certificate(NOW, NOW + 90 * DAY, key=4)  # newer than the first
    failed = reconcile(world, force_renewal=True)
    assert failed.issuance_failed and world.ca.orders == 2

    world.store.publish_down = False
    outcome = reconcile(world, force_renewal=True)
    assert (outcome.ready, outcome.reason) == (True, "RestoredFromCache")
    assert world.ca.orders == 2, "renew-now ordered a second new certificate"
    assert published(world) == world.ca.next_certificate


def test_a_broken_pointer_falls_through_to_the_cache_and_is_replaced(world: FakeWorld) -> None:
    reconcile(world)
    location = DatastoreLocation(BUCKET, "certfleet", "aws", "build-7", DOMAIN)
    world.store.break_pointer(location)  # a corrupt current.json, or an unknown master key
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason, outcome.revision) == (True, "RestoredFromCache", 2)
    assert "DatastoreIntegrity" in [event.reason for event in outcome.events]
    assert published(world) == cached(world) and world.ca.orders == 1


def test_an_s3_provider_without_conditional_writes_is_a_configuration_answer(
    world: FakeWorld,
) -> None:
    world.store.publish_error = DatastoreNotSupportedError("PutObject: NotImplemented (HTTP 501)")
    world.secrets.items[(NAMESPACE, cache_secret_name(parse_spec(SPEC)))] = certificate()
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason, outcome.retry_after) == (
        False,
        "DatastoreNotSupported",
        None,
    )
    assert [event.type for event in outcome.events] == ["Warning"]


def test_a_failed_cache_write_does_not_make_a_published_certificate_unready(
    world: FakeWorld,
) -> None:
    reconcile(world)
    world.secrets.items.clear()
    world.secrets.fail_writes = True
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason) == (True, "Reused")
    assert [event.reason for event in outcome.events] == ["CacheWriteFailed"]


def test_old_revisions_go_after_a_publish_beyond_the_history_limit(world: FakeWorld) -> None:
    world.cloudhosts["aws"] = {"spec": {**CLOUDHOST["spec"], "revisionHistoryLimit": 1}}
    for day in range(4):  # four renewals, a day apart (the grace is an hour)
        world.ca.next_certificate = certificate(NOW + day * DAY, NOW + (day + 90) * DAY, key=day)
        world.store.clock_now = NOW + day * DAY
        reconcile(world, now=NOW + day * DAY, force_renewal=True)
    location = DatastoreLocation(BUCKET, "certfleet", "aws", "build-7", DOMAIN)
    assert sorted(world.store.revisions(location)) == [3, 4], "the current and one below it"


# -- the order lease: several certfleets sharing one datastore order once ---------------------

LOCATION = DatastoreLocation(BUCKET, "certfleet", "aws", "build-7", DOMAIN)


def test_an_order_takes_the_lease_and_gives_it_back(world: FakeWorld) -> None:
    outcome = reconcile(world)
    assert outcome.reason == "Issued" and world.store.leases_taken == 1
    assert isinstance(world.store.take_lease(LOCATION, "other", NOW, timedelta(1)), LeaseTaken)


def test_a_reuse_takes_no_lease(world: FakeWorld) -> None:
    reconcile(world)
    assert reconcile(world).reason == "Reused"
    assert world.store.leases_taken == 1


def test_a_lease_held_elsewhere_waits_instead_of_ordering(world: FakeWorld) -> None:
    world.store.take_lease(LOCATION, "build-b", NOW, timedelta(minutes=10))
    outcome = reconcile(world)
    assert (outcome.ready, outcome.reason) == (False, "OrderedElsewhere")
    assert world.ca.orders == 0 and outcome.retry_after == 7
    assert "build-b holds the order lease" in outcome.message


class PublishedMeanwhile(FlakyDatastore):
    """Another machine publishes between this one's first look and its lease."""

    other: tuple[bytes, bytes] | None = None

    def take_lease(self, *args: Any, **kwargs: Any) -> Any:
        if self.other is not None:
            fullchain, key = self.other
            self.other = None
            self.publish(LOCATION, fullchain, key, "1", NOW - DAY, NOW + 89 * DAY, None)
        return super().take_lease(*args, **kwargs)


def test_after_taking_the_lease_a_certificate_published_meanwhile_is_reused() -> None:
    store = PublishedMeanwhile()
    store.other = certificate(key=3)
    world = FakeWorld(store=store)
    outcome = reconcile(world)
    assert outcome.reason == "Reused" and world.ca.orders == 0
    assert world.announced == []  # no order was announced either


def test_a_lease_left_by_a_killed_run_of_the_same_holder_is_taken_at_once(
    world: FakeWorld,
) -> None:
    world.store.take_lease(LOCATION, "operator certfleet-system/certfleet-operator", NOW, DAY)
    reconciler = Reconciler(
        world.ports(), lambda: NOW, lease=OrderLease("operator certfleet-system/certfleet-operator")
    )
    outcome = reconciler.reconcile(Request(NAMESPACE, SPEC), world)
    assert outcome.reason == "Issued" and world.ca.orders == 1
