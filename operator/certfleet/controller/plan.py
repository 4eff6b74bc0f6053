"""The values that flow through one reconciliation, in order: Request -> Observed -> Plan ->
Outcome. Plain data: each stage reads the one before and never calls back into it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

from cryptography import x509

from certfleet.api.spec import CertificateSpec, CloudHostConfig
from certfleet.controller.ports import PemPair, Window
from certfleet.core.facts import CertificateFacts
from certfleet.core.policy import Valid
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.protocol import Datastore, StoredCertificate


@dataclass(frozen=True)
class Request:
    """What one reconciliation is asked: the resource's namespace and spec, how many
    issuances failed in a row before (for the back-off), and whether a person asked for a
    new certificate now (``force_renewal``)."""

    namespace: str
    raw_spec: Mapping[str, Any]
    previous_failures: int = 0
    force_renewal: bool = False


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
    # What every certificate judged here must chain to (the CloudHost's TrustBundles).
    trust_roots: tuple[x509.Certificate, ...]


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
    """Order a new certificate through ACME; ``replacing`` is the one it replaces."""

    replacing: bytes | None
    serving: Serving | None
    announcement: str


@dataclass(frozen=True)
class Wait:
    """Nothing to do but wait and look again: for a person (MANUAL) or for a read that
    failed. With ``serving``, the published certificate stays in use (Ready stays True)."""

    reason: str
    message: str
    retry_after: float | None
    serving: Serving | None = None
    event_type: str | None = None  # "Normal" or "Warning": announce it; None: say nothing


Plan: TypeAlias = Reuse | Publish | Issue | Wait


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
