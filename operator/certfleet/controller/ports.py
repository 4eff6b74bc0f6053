"""What the controller needs from the world, as narrow Protocols (certmagic's habit).

Each port is one concept with the fewest methods that serve it, so the controller is tested
against in-memory fakes and the same core runs over Kubernetes or over files. Implementations:
``adapters`` (Kubernetes, S3, ACME); ``certfleet.datastore.memory`` and the unit tests' fakes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from cryptography import x509

from certfleet.api.spec import CertificateSpec, CloudHostConfig
from certfleet.core.ownership import LocationOwner
from certfleet.datastore.protocol import Datastore

if TYPE_CHECKING:
    from certfleet.controller.plan import Outcome

Window = tuple[datetime, datetime]


@dataclass(frozen=True)
class PemPair:
    """A certificate chain and its private key, as PEM. The key never shows in a repr."""

    fullchain: bytes
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class PendingOrder:
    """An ACME order placed whose certificate is not in the cache yet: what resumes it after
    a crash (the CA, the account, the order, its names, and the new private key its CSR is
    made from). The key never shows in a repr, and is kept only where the cache keeps keys."""

    directory_url: str
    account_url: str
    order_url: str
    names: tuple[str, ...]
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class Kept:
    """What the cache keeps of one certificate, read at once: the certificate (None when
    there is none, or only an order is kept) and the ACME order under way. `replaces`: for a
    certificate cached while another was published, that one's revision (0: none was); None
    for a copy of the published one (``unpublished``)."""

    pair: PemPair | None
    pending: PendingOrder | None
    replaces: int | None = None


class Cache(Protocol):
    """certfleet's own copy of each certificate it obtained (DESIGN step 2): a crash after an
    order, or a datastore that lost it, never costs another order. It also keeps the order
    under way (``PendingOrder``), from before the CA finalises it until its certificate is
    written here."""

    def name(self, namespace: str, spec: CertificateSpec) -> str:
        """Where the copy lives, for the status and messages (a Secret name, a folder)."""

    def read_kept(self, namespace: str, spec: CertificateSpec) -> Kept:
        """The certificate and the order under way, in one read (in a cluster: one GET)."""

    def write(
        self, namespace: str, spec: CertificateSpec, pair: PemPair, replaces: int | None = None
    ) -> None:
        """Also forgets the pending order: from here on, this certificate is the one kept.
        `replaces`: kept with it as ``Kept.replaces``."""

    # -- the order under way --------------------------------------------------------------

    def write_pending(self, namespace: str, spec: CertificateSpec, order: PendingOrder) -> None:
        """Durable when it returns; raises CertfleetError (the order is then not finalised)."""


class SuppliedCertificates(Protocol):
    """Where a person puts a MANUAL certificate."""

    def describe(self, namespace: str, spec: CertificateSpec) -> str:
        """How a person would name it: "the kubernetes.io/tls Secret ns/name"."""

    def read(self, namespace: str, spec: CertificateSpec) -> PemPair | None:
        """Empty bytes for a missing part; None when nothing was supplied."""


class Datastores(Protocol):
    """The CloudHosts: which datastore a certificate's cloudhost publishes to."""

    def datastore(self, cloudhost: str) -> tuple[CloudHostConfig, Datastore]:
        """Raises DatastoreNotConfiguredError when the CloudHost or its Secrets are not
        usable (the message says what to create or fix)."""


class Issuer(Protocol):
    def issue(
        self,
        spec: CertificateSpec,
        namespace: str,
        replacing: bytes | None,
        resume: PendingOrder | None = None,
        placed: Callable[[PendingOrder], None] | None = None,
    ) -> PemPair:
        """A new certificate for ``spec.names``; ``replacing``: the PEM certificate a renewal
        replaces (the CA may be told so). ``resume``: an order placed before (a crash) to
        carry on, when the CA still can give its certificate; else a new order is placed, and
        ``placed`` is called with it before the CA is asked to finalise it (an error there
        stops the order). Raises CertfleetError."""


class RenewalWindows(Protocol):
    def window(self, spec: CertificateSpec, certificate_pem: bytes) -> Window | None:
        """The CA's suggested renewal window (RFC 9773); None when it offers none or it
        could not be had (advisory: never an error)."""


class Tenancy(Protocol):
    """Who may act where: the namespaces a CloudHost admits (``api.tenancy``) and whether a
    location's owner still exists. In a cluster: Namespace labels and ManagedCertificates;
    a build machine's files are one person's, so it admits every namespace and sees no
    owner but itself."""

    def admits(self, cloudhost: CloudHostConfig, namespace: str) -> bool: ...

    def owner_exists(self, owner: LocationOwner) -> bool | None:
        """True/False for an owner this side can look up; None when it cannot tell."""


class TrustBundles(Protocol):
    def roots(self, cloudhost: CloudHostConfig) -> tuple[x509.Certificate, ...]:
        """The roots a certificate of this cloudhost must chain to: the system's and its
        spec.trustBundle. Raises CertfleetError (TrustBundleNotConfigured) when the bundle
        it names cannot be read."""


@dataclass(frozen=True)
class Ports:
    datastores: Datastores
    cache: Cache
    supplied: SuppliedCertificates
    issuer: Issuer
    windows: RenewalWindows
    tenancy: Tenancy
    trust: TrustBundles


class Reporter(Protocol):
    """Where one resource's reconciliation is told: the status, events and metrics."""

    def issuing(self, message: str) -> None:
        """An ACME order is about to start (it may take a while: say so first)."""

    def report(self, outcome: Outcome) -> None:
        """The reconciliation's outcome. Raises CertfleetError when it cannot be written."""
