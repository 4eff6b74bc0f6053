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
    WaitingForManualCertificate = "WaitingForManualCertificate"
    # Another certfleet (a build machine, a cluster) holds the datastore's order lease.
    OrderedElsewhere = "OrderedElsewhere"
    InvalidSpec = "InvalidSpec"
    DatastoreNotConfigured = "DatastoreNotConfigured"
    DatastoreUnavailable = "DatastoreUnavailable"
    DatastoreIntegrity = "DatastoreIntegrity"
    DatastoreFailed = "DatastoreFailed"
    DatastoreNotSupported = "DatastoreNotSupported"
    # The CloudHost's spec.trustBundle Secret is missing or holds no PEM certificates.
    TrustBundleNotConfigured = "TrustBundleNotConfigured"
    KubernetesUnavailable = "KubernetesUnavailable"
    ReconcileFailed = "ReconcileFailed"


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


READY = "Ready"
ISSUING = "Issuing"
