"""The values that flow through one reconciliation, in order: Request -> Observed -> Plan ->
Outcome. Plain data: each stage reads the one before and never calls back into it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

from cryptography import x509

from certfleet.api.spec import CertificateSpec, CloudHostConfig
from certfleet.controller.ports import PemPair, PendingOrder, Window
from certfleet.core.facts import CertificateFacts
from certfleet.core.ownership import ClaimVerdict, LocationOwner
from certfleet.core.policy import Valid
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.protocol import Datastore, LocationClaim, StoredCertificate


@dataclass(frozen=True)
class Request:
    """What one reconciliation is asked: the resource's namespace and spec, how many
    issuances failed in a row before (for the back-off), whether a person asked for a
    new certificate now (``force_renewal``), and the highest revision seen before.
    ``owner``: who acts (the resource, or the build machines), the location's owner if
    it may be; ``take_over_from``: the resource's ``certfleet.io/take-over-from``
    annotation."""

    namespace: str
    raw_spec: Mapping[str, Any]
    previous_failures: int = 0
    force_renewal: bool = False
    # The highest revision published or accepted before (from the status), and where: at
    # that location, a pointer below it was rolled back, and a publish goes above it.
    highest_revision: int = 0
    highest_revision_uri: str | None = None
    owner: LocationOwner = field(kw_only=True)
    take_over_from: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class Ownership:
    """Who may act on the location, as gathered: does the CloudHost admit the namespace,
    who claimed the location, and does that owner still exist (None: not visible here)."""

    admitted: bool
    claim: LocationClaim | None
    claim_owner_exists: bool | None


@dataclass(frozen=True)
class Observed:
    """Everything the decision needs, read in one place (``gather``)."""

    request: Request
    spec: CertificateSpec
    cloudhost: CloudHostConfig
    datastore: Datastore
    location: DatastoreLocation
    cache_name: str
    stored: StoredCertificate | None
    # The ETag of the pointer a publish must replace: the stored one's, or that of a pointer
    # that could not be followed (``unreadable`` says why); None when there is none.
    pointer_etag: str | None
    unreadable: str | None
    stored_window: Window | None
    cached: PemPair | None
    cached_window: Window | None
    supplied: PemPair | None  # MANUAL: what a person put where ``supplied_name`` says
    supplied_name: str | None
    ownership: Ownership
    # What every certificate judged here must chain to (the CloudHost's TrustBundles).
    trust_roots: tuple[x509.Certificate, ...]
    # Why the pointer could not be followed (an event reason), with ``unreadable``.
    unreadable_reason: str | None = None
    # The highest revision seen at this location (the request's, if it is about this one).
    highest_revision: int = 0
    # An ACME order placed before (by a process that died) whose certificate is not cached.
    pending: PendingOrder | None = None
    # The revision published when the cached certificate was cached, if it was not that one
    # (``unpublished``): while it is still published, the cached one is its replacement.
    cached_replaces: int | None = None

    @property
    def stored_pair(self) -> PemPair | None:
        """The published certificate and its key, as the cache and a supplied one hold them."""
        stored = self.stored
        return PemPair(stored.fullchain, stored.privkey) if stored is not None else None


@dataclass(frozen=True)
class Unobservable:
    """A read failed or the spec cannot be read: there is nothing to decide on."""

    reason: str
    message: str
    retry: bool  # False: only a new spec can help
    warn: bool = False


# -- plans ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Serving:
    """The published certificate that stays in use while its replacement is not there."""

    facts: CertificateFacts
    renew_at: datetime | None
    revision: int


@dataclass(frozen=True)
class Reuse:
    """The datastore's certificate is valid: keep it (and cache it if the cache differs)."""

    stored: StoredCertificate
    verdict: Valid
    cache_it: bool


@dataclass(frozen=True)
class Publish:
    """A valid certificate that is not (yet) the published one: from the cache, or one a
    person supplied (which is cached first)."""

    pair: PemPair
    verdict: Valid
    reason: str
    message: str
    cache_it: bool


@dataclass(frozen=True)
class Issue:
    """Order a new certificate through ACME; ``replacing`` is the one it replaces.
    ``resume``: the order already placed, carried on instead of placing another."""

    replacing: bytes | None
    serving: Serving | None
    announcement: str
    # Which of spec.acme.servers to order from (0: spec.acme.server), and, when this order
    # is the first at a fallback after the one before kept failing, the event that says so.
    server_position: int = 0
    fallback: str | None = None
    resume: PendingOrder | None = None


@dataclass(frozen=True)
class Wait:
    """Nothing to do but wait and look again: for a person (MANUAL) or for a read that
    failed. With ``serving``, the published certificate stays in use (Ready stays True)."""

    reason: str
    message: str
    retry_after: float | None
    serving: Serving | None = None
    event_type: str | None = None  # "Normal" or "Warning": announce it; None: say nothing


@dataclass(frozen=True)
class ClaimLocation:
    """The location has no owner yet, or its owner is gone or handed it over: claim it
    (``replacing``: the claim's ETag, None where there is none) before anything else
    happens there, then look again."""

    owner: LocationOwner
    replacing: str | None
    verdict: ClaimVerdict


Plan: TypeAlias = Reuse | Publish | Issue | Wait | ClaimLocation


# -- outcome --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    type: str  # "Normal" or "Warning", as Kubernetes events
    reason: str
    message: str


@dataclass(frozen=True)
class Outcome:
    """What one reconciliation found and did: the status, the events, when to try again."""

    ready: bool
    reason: str
    message: str
    facts: CertificateFacts | None = None
    renew_at: datetime | None = None
    datastore_uri: str | None = None
    revision: int | None = None
    cache_secret: str | None = None
    issuance_failed: bool = False
    retry_after: float | None = None  # seconds; None: nothing to retry
    events: tuple[Event, ...] = ()
    # The ACME server (as the spec names it) that issued the certificate, and its position
    # in spec.acme.servers; None when this outcome issued nothing.
    issued_by: tuple[str, int] | None = None
