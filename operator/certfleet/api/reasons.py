"""The reasons a ManagedCertificate's conditions and events give: one place for every name.

A reason is part of the API: it is the Ready condition's ``reason``, an event's reason and a
metric label, and people write alerts against it. The policy's own reasons (``Expired``,
``KeyMismatch``, ...) come from ``certfleet.core.checks.Reason`` and appear beside these.
"""

from __future__ import annotations

from enum import StrEnum


class CertificateReason(StrEnum):
    # Ready=True: a certificate is published and fit to serve.
    Issued = "Issued"
    Reused = "Reused"
    RestoredFromCache = "RestoredFromCache"
    ManualCertificateAccepted = "ManualCertificateAccepted"
    ManualRenewalRequired = "ManualRenewalRequired"  # also Ready=True while it still serves
    # Ready=False, or True while the old certificate keeps serving.
    IssuanceFailed = "IssuanceFailed"
    # DNS-01: the TXT record was not visible at every authoritative server within the bound.
    DNS01PropagationTimeout = "DNS01PropagationTimeout"
    # The CA registers accounts only with External Account Binding, and none is configured.
    ExternalAccountBindingRequired = "ExternalAccountBindingRequired"
    # The binding's Secret is missing or malformed, or the CA refused the key id and HMAC.
    ExternalAccountBindingInvalid = "ExternalAccountBindingInvalid"
    WaitingForManualCertificate = "WaitingForManualCertificate"
    # Another certfleet (a build machine, a cluster) holds the datastore's order lease.
    OrderedElsewhere = "OrderedElsewhere"
    InvalidSpec = "InvalidSpec"
    # Another owner (a ManagedCertificate, build machines) claimed the location: nothing is
    # ordered, published or copied here (core.ownership).
    LocationClaimed = "LocationClaimed"
    # The CloudHost does not admit the resource's namespace (spec.allowedNamespaces).
    NamespaceNotAllowed = "NamespaceNotAllowed"
    DatastoreNotConfigured = "DatastoreNotConfigured"
    DatastoreUnavailable = "DatastoreUnavailable"
    DatastoreIntegrity = "DatastoreIntegrity"
    DatastoreFailed = "DatastoreFailed"
    DatastoreNotSupported = "DatastoreNotSupported"
    # The CloudHost's spec.trustBundle Secret is missing or holds no PEM certificates.
    TrustBundleNotConfigured = "TrustBundleNotConfigured"
    KubernetesUnavailable = "KubernetesUnavailable"
    ReconcileFailed = "ReconcileFailed"
    # Ready=True: the published certificate, published again under the current master key
    # (a rotation), so the previous key can be retired.
    Resealed = "Resealed"
    # Events: a pointer that could not be trusted was replaced (the cache's certificate, or a
    # new one, published over it at a higher revision).
    PointerUnauthenticated = "PointerUnauthenticated"  # no tag (format 1, or stripped)
    PointerForged = "PointerForged"  # the tag does not verify
    PointerMisplaced = "PointerMisplaced"  # another location's
    UnknownMasterKey = "UnknownMasterKey"  # sealed with a key the CloudHost does not list
    RolledBack = "RolledBack"  # below the highest revision published before


class IssuingReason(StrEnum):
    """The Issuing condition: is an ACME order under way?"""

    Ordering = "Ordering"
    Idle = "Idle"
    IssuanceFailed = "IssuanceFailed"


class EventReason(StrEnum):
    """Events that are not a Ready reason of their own."""

    Issuing = "Issuing"
    Published = "Published"
    IssuedCertificateRejected = "IssuedCertificateRejected"
    CacheWriteFailed = "CacheWriteFailed"
    PruneFailed = "PruneFailed"
    # An ACME server kept failing: the order goes to the next of spec.acme.fallbackServers.
    AcmeServerFallback = "AcmeServerFallback"
    LocationOwned = "LocationOwned"  # this resource claimed the location: it owns it now
    LocationTakenOver = "LocationTakenOver"  # ... in place of an owner gone or handed over


READY = "Ready"
ISSUING = "Issuing"
