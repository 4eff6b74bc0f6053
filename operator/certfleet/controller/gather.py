"""Step one of a reconciliation: read everything the decision needs, in one place.

Reads, in DESIGN order: the spec, the CloudHost (which datastore, and the roots every
certificate must chain to: the system's and its spec.trustBundle), the datastore's current
certificate, the cache (and the ACME order it keeps while one is under way), what a person
supplied (MANUAL), and the CA's renewal window of each ACME certificate found. A read that
fails ends here as `Unobservable`, with the reason the status will give; nothing is written.
"""

from __future__ import annotations

from certfleet.api.reasons import CertificateReason
from certfleet.api.spec import (
    CertificateSpec,
    CloudHostConfig,
    GenerationMethod,
    InvalidSpecError,
    parse_certificate_spec,
)
from certfleet.controller.plan import Observed, Ownership, Request, Unobservable
from certfleet.controller.ports import PemPair, Ports, Window
from certfleet.core.errors import CertfleetError
from certfleet.core.rollback import rolled_back
from certfleet.datastore.errors import (
    DatastoreError,
    DatastoreIntegrityError,
    DatastoreNotSupportedError,
    DatastoreUnavailableError,
    PointerLocationError,
    PointerMacError,
    UnauthenticatedPointerError,
    UnknownMasterKeyError,
)
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.protocol import Datastore


class DatastoreNotConfiguredError(CertfleetError):
    """The spec's cloudhost has no usable CloudHost (missing, invalid, or its Secrets are)."""


def gather(request: Request, ports: Ports) -> Observed | Unobservable:
    try:
        spec = parse_certificate_spec(request.raw_spec)
    except InvalidSpecError as error:
        # Retrying cannot help; a new spec (generation) triggers a new reconciliation.
        return Unobservable(CertificateReason.InvalidSpec, str(error), retry=False)
    try:
        return _observe(request, spec, ports)
    except CertfleetError as error:
        return unobservable(error)


def unobservable(error: CertfleetError) -> Unobservable:
    """The status reason of a failed read or write: configuration, outage or integrity."""
    if isinstance(error, DatastoreNotConfiguredError):
        return Unobservable(CertificateReason.DatastoreNotConfigured, str(error), retry=True)
    if isinstance(error, DatastoreUnavailableError):
        return Unobservable(CertificateReason.DatastoreUnavailable, str(error), retry=True)
    if isinstance(error, DatastoreNotSupportedError):
        # Retrying at once cannot help; the hourly recheck notices a fixed provider.
        return Unobservable(CertificateReason.DatastoreNotSupported, str(error), False, warn=True)
    if isinstance(error, DatastoreIntegrityError):
        return Unobservable(CertificateReason.DatastoreIntegrity, str(error), True, warn=True)
    if isinstance(error, DatastoreError):
        return Unobservable(CertificateReason.DatastoreFailed, str(error), True, warn=True)
    # Another port's failure (Kubernetes, a cache on files): the reason its adapter names.
    reason = error.reason or CertificateReason.ReconcileFailed
    return Unobservable(reason, str(error), error.retryable, warn=True)


def _observe(request: Request, spec: CertificateSpec, ports: Ports) -> Observed:
    namespace = request.namespace
    cloudhost, datastore = ports.datastores.datastore(spec.cloudhost)
    trust_roots = ports.trust.roots(cloudhost)
    try:
        location = DatastoreLocation(
            bucket=cloudhost.bucket,
            prefix=cloudhost.prefix,
            cloudhost=spec.cloudhost,
            build_identifier=spec.build_identifier,
            domain=spec.domain,
        )
    except ValueError as error:
        raise DatastoreNotConfiguredError(str(error)) from None
    unreadable_reason: str | None = None
    # A spec moved to another location starts afresh there.
    seen = request.highest_revision if request.highest_revision_uri == location.s3_uri else 0
    ownership = _ownership(request, cloudhost, datastore, location, ports)
    try:
        stored = datastore.read_current(location)
        pointer_etag, unreadable = (stored.pointer_etag if stored else None), None
    except DatastoreIntegrityError as error:
        if error.pointer_etag is None:
            raise
        # A pointer that cannot be followed (corrupt, unauthenticated, or under a master key
        # no longer held) must not block the certificate until it expires: decide as if
        # nothing were published, and let a publish replace exactly that pointer.
        stored, pointer_etag, unreadable = None, error.pointer_etag, str(error)
        unreadable_reason = _untrusted_reason(error)
    if stored is not None:
        rollback = rolled_back(stored.pointer.revision, seen)
        if rollback is not None:
            # An old, authentic pointer put back: never reused nor cached; replaced like a
            # broken one, by a publish above the highest revision.
            pointer_etag, unreadable = stored.pointer_etag, rollback
            stored, unreadable_reason = None, CertificateReason.RolledBack
    kept = ports.cache.read_kept(namespace, spec)
    cached = kept.pair
    stored_pair = PemPair(stored.fullchain, stored.privkey) if stored else None
    stored_window = _window(ports, spec, stored_pair)
    # The same certificate in both places: the CA is asked once.
    same = cached is not None and cached == stored_pair
    manual = spec.method is GenerationMethod.MANUAL
    return Observed(
        request=request,
        spec=spec,
        cloudhost=cloudhost,
        datastore=datastore,
        location=location,
        cache_name=ports.cache.name(namespace, spec),
        stored=stored,
        pointer_etag=pointer_etag,
        unreadable=unreadable,
        stored_window=stored_window,
        cached=cached,
        cached_window=stored_window if same else _window(ports, spec, cached),
        supplied=ports.supplied.read(namespace, spec) if manual else None,
        supplied_name=ports.supplied.describe(namespace, spec) if manual else None,
        unreadable_reason=unreadable_reason,
        highest_revision=seen,
        pending=None if manual else kept.pending,
        cached_replaces=kept.replaces,
        ownership=ownership,
        trust_roots=trust_roots,
    )


def _untrusted_reason(error: DatastoreIntegrityError) -> str:
    """The event reason of a pointer that could not be followed."""
    for kind, reason in (
        (UnauthenticatedPointerError, CertificateReason.PointerUnauthenticated),
        (PointerMacError, CertificateReason.PointerForged),
        (PointerLocationError, CertificateReason.PointerMisplaced),
        (UnknownMasterKeyError, CertificateReason.UnknownMasterKey),
    ):
        if isinstance(error, kind):
            return reason
    return CertificateReason.DatastoreIntegrity


def _ownership(
    request: Request,
    cloudhost: CloudHostConfig,
    datastore: Datastore,
    location: DatastoreLocation,
    ports: Ports,
) -> Ownership:
    """Read once: does the CloudHost admit the namespace, who claimed the location, and
    does that other owner still exist (decide judges it: ``core.ownership``)."""
    if not ports.tenancy.admits(cloudhost, request.namespace):
        return Ownership(admitted=False, claim=None, claim_owner_exists=None)
    claim = datastore.read_claim(location)
    owner = claim.owner if claim is not None else None
    other = owner is not None and owner != request.owner
    exists = ports.tenancy.owner_exists(owner) if owner is not None and other else None
    return Ownership(admitted=True, claim=claim, claim_owner_exists=exists)


def _window(ports: Ports, spec: CertificateSpec, pair: PemPair | None) -> Window | None:
    """The CA's renewal window of an ACME certificate (MANUAL certificates have no CA). The
    adapter remembers it per certificate until the CA's Retry-After, so asking is cheap."""
    if pair is None or not pair.fullchain or spec.method is not GenerationMethod.AUTOMATIC:
        return None
    return ports.windows.window(spec, pair.fullchain)
