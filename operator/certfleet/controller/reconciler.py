"""The operator's main job for one ManagedCertificate, in the order of DESIGN.md steps 1 to 4:

1. a valid certificate in the S3 datastore is reused (no issuance);
2. else a valid one in the cluster cache Secret is reused and published;
3. else AUTOMATIC issues through ACME, MANUAL waits for the Secret a person supplies;
4. publish to S3 (read back, digests compared, pointer written last), then Ready.

Gathering (reads) and acting (writes) go through small ports; every decision is the core's
pure policy with the clock passed in. A new certificate is saved in the cache Secret before it
is published, so an operator killed in between finds it there and never orders it again.
For ACME certificates, the CA's renewal information (ARI, RFC 9773), read through the World,
can bring a renewal earlier; it never postpones one.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from certfleet.api.spec import (
    CertificateSpec,
    CloudHostConfig,
    GenerationMethod,
    InvalidSpecError,
    cache_secret_name,
    parse_certificate_spec,
    parse_cloudhost,
)
from certfleet.core.backoff import DEFAULT_BASE_SECONDS, DEFAULT_CAP_SECONDS, retry_delay
from certfleet.core.checks import Reason
from certfleet.core.errors import CertfleetError, RetryLaterError
from certfleet.core.facts import CertificateFacts
from certfleet.core.policy import Failure, Valid, Verdict, evaluate
from certfleet.datastore.errors import (
    DatastoreError,
    DatastoreIntegrityError,
    DatastoreUnavailableError,
)
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.s3_store import S3Datastore, StoredCertificate

log = logging.getLogger(__name__)

TLS_CERT_KEY = "tls.crt"
TLS_PRIVATE_KEY = "tls.key"
TLS_SECRET_TYPE = "kubernetes.io/tls"  # noqa: S105 - a Secret type, not a password


class DatastoreNotConfiguredError(CertfleetError):
    """The spec's cloudhost has no usable CloudHost (missing, invalid, or its Secrets are)."""


@dataclass(frozen=True)
class IssuedCertificate:
    fullchain_pem: bytes
    private_key_pem: bytes = field(repr=False)


class Secrets(Protocol):
    def read_tls(self, namespace: str, name: str) -> tuple[bytes, bytes] | None:
        """(tls.crt, tls.key) of a Secret; empty bytes for a missing key; None if no Secret."""

    def write_tls(
        self,
        namespace: str,
        name: str,
        fullchain: bytes,
        key: bytes,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
    ) -> None: ...


class Issuer(Protocol):
    def issue(
        self, names: Sequence[str], key_algorithm: str, replacing: bytes | None = None
    ) -> IssuedCertificate:
        """`replacing`: the PEM certificate a renewal replaces (the CA may be told so)."""


class World(Protocol):
    """Where the reconciler reads and writes: implemented over Kubernetes, S3 and ACME."""

    @property
    def secrets(self) -> Secrets: ...

    def cloudhost(self, name: str) -> Mapping[str, Any] | None: ...

    def datastore(self, cloudhost: CloudHostConfig) -> S3Datastore: ...

    def issuer(self, spec: CertificateSpec, namespace: str) -> Issuer: ...

    def renewal_window(
        self, spec: CertificateSpec, certificate_pem: bytes
    ) -> tuple[datetime, datetime] | None:
        """The ACME CA's suggested renewal window for this certificate (RFC 9773); None when
        it offers none or it could not be had."""


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


@dataclass(frozen=True)
class ReconcilerSettings:
    retry_seconds: float = 30.0  # a missing CloudHost, an unavailable store
    manual_poll_seconds: float = 30.0  # how often a MANUAL certificate's Secret is looked at
    # Failed issuances back off exponentially: base, 2*base, ... up to the cap.
    issuance_backoff_base_seconds: float = DEFAULT_BASE_SECONDS
    issuance_backoff_cap_seconds: float = DEFAULT_CAP_SECONDS


@dataclass(frozen=True)
class Request:
    """What one reconciliation is asked, besides the spec.

    `on_issuing` is told before an ACME order starts, so the status can say so;
    `previous_failures` counts the issuances that failed in a row before (for the back-off);
    `force_renewal` obtains a new certificate even if the stored one is valid (a person's
    "renew now").
    """

    namespace: str
    raw_spec: Mapping[str, Any]
    on_issuing: Callable[[str], None] = lambda _message: None
    previous_failures: int = 0
    force_renewal: bool = False


class Reconciler:
    """Shared by kopf's handler threads: each call runs in its own `_Reconciliation`."""

    def __init__(
        self,
        world: World,
        clock: Callable[[], datetime],
        settings: ReconcilerSettings | None = None,
    ) -> None:
        self._world = world
        self._clock = clock
        self._settings = settings or ReconcilerSettings()

    def reconcile(self, request: Request) -> Outcome:
        return _Reconciliation(self._world, self._clock, self._settings, request).run()


@dataclass(frozen=True)
class _Gathered:
    """What steps 1 and 2 found: where the certificate lives and what is published there."""

    namespace: str
    spec: CertificateSpec
    store: S3Datastore
    location: DatastoreLocation
    cache_name: str
    stored: StoredCertificate | None
    stored_verdict: Verdict


class _Reconciliation:
    def __init__(
        self,
        world: World,
        clock: Callable[[], datetime],
        settings: ReconcilerSettings,
        request: Request,
    ) -> None:
        self._world = world
        self._clock = clock
        self._settings = settings
        self._request = request
        self._on_issuing = request.on_issuing
        self._previous_failures = max(request.previous_failures, 0)
        self._force_renewal = request.force_renewal

    def run(self) -> Outcome:
        namespace = self._request.namespace
        try:
            spec = parse_certificate_spec(self._request.raw_spec)
        except InvalidSpecError as error:
            # Retrying cannot help; a new spec (generation) triggers a new reconciliation.
            return Outcome(False, "InvalidSpec", str(error))
        try:
            return self._reconcile(namespace, spec)
        except DatastoreNotConfiguredError as error:
            return self._retry("DatastoreNotConfigured", str(error))
        except DatastoreUnavailableError as error:
            return self._retry("DatastoreUnavailable", str(error))
        except DatastoreIntegrityError as error:
            return self._retry("DatastoreIntegrity", str(error), warn=True)
        except DatastoreError as error:
            return self._retry("DatastoreFailed", str(error), warn=True)

    def _retry(self, reason: str, message: str, warn: bool = False) -> Outcome:
        events = (Event("Warning", reason, message),) if warn else ()
        return Outcome(
            False, reason, message, retry_after=self._settings.retry_seconds, events=events
        )

    def _reconcile(self, namespace: str, spec: CertificateSpec) -> Outcome:
        store, location = self._datastore_for(spec)
        cache_name = cache_secret_name(spec)
        now = self._clock()

        # Step 1: the datastore.
        stored = store.read_current(location)
        stored_verdict = self._judge(
            stored and (stored.fullchain, stored.privkey), spec, now, ari=True
        )
        self._g = _Gathered(namespace, spec, store, location, cache_name, stored, stored_verdict)
        if self._force_renewal:
            return self._obtain()
        if isinstance(stored_verdict, Valid) and stored is not None:
            self._ensure_cached(stored.fullchain, stored.privkey)
            return self._ready(
                "Reused",
                stored_verdict,
                stored.pointer.revision,
                f"reused revision {stored.pointer.revision} from the datastore",
            )

        # Step 2: the cluster cache.
        cached = self._world.secrets.read_tls(namespace, cache_name)
        if stored is not None and cached == (stored.fullchain, stored.privkey):
            cached_verdict = stored_verdict  # the same certificate: judged (and ARI asked) once
        else:
            cached_verdict = self._judge(cached, spec, now, ari=True)
        if isinstance(cached_verdict, Valid) and cached is not None:
            return self._publish(
                cached,
                cached_verdict,
                "RestoredFromCache",
                f"published the cached certificate from Secret {cache_name}",
            )
        return self._obtain()

    def _obtain(self) -> Outcome:
        """Step 3: issue through ACME, or take what a person supplied."""
        verdict = self._g.stored_verdict
        if self._force_renewal and isinstance(verdict, Valid):
            # What is published stays in use while the requested replacement is obtained.
            self._g = dataclasses.replace(
                self._g,
                stored_verdict=Failure(
                    Reason.RenewalDue, "a renewal was requested", verdict.facts, verdict.renew_at
                ),
            )
        if self._g.spec.method is GenerationMethod.MANUAL:
            return self._manual()
        return self._issue()

    def _datastore_for(self, spec: CertificateSpec) -> tuple[S3Datastore, DatastoreLocation]:
        raw = self._world.cloudhost(spec.cloudhost)
        if raw is None:
            raise DatastoreNotConfiguredError(
                f"CloudHost {spec.cloudhost!r} does not exist: create it to say where the "
                "datastore of this cloudhost is"
            )
        try:
            config = parse_cloudhost(spec.cloudhost, raw.get("spec") or {})
            location = DatastoreLocation(
                bucket=config.bucket,
                prefix=config.prefix,
                cloudhost=spec.cloudhost,
                build_identifier=spec.build_identifier,
                domain=spec.domain,
            )
        except (InvalidSpecError, ValueError) as error:
            raise DatastoreNotConfiguredError(str(error)) from None
        return self._world.datastore(config), location

    def _judge(
        self,
        pair: tuple[bytes, bytes] | Any | None,
        spec: CertificateSpec,
        now: datetime,
        ari: bool = False,
    ) -> Verdict:
        """The policy's verdict; with `ari`, also the CA's renewal window (`_with_ari`)."""
        fullchain, key = pair if pair else (None, None)
        verdict = evaluate(
            fullchain, key, names=spec.names, now=now, renew_before=spec.renew_before
        )
        return self._with_ari(verdict, pair, spec, now) if ari else verdict

    def _with_ari(
        self,
        verdict: Verdict,
        pair: tuple[bytes, bytes] | Any | None,
        spec: CertificateSpec,
        now: datetime,
    ) -> Verdict:
        """A valid ACME certificate judged again with its CA's renewal window, which can only
        make it due earlier. Anything else has nothing to gain (MANUAL has no CA)."""
        if (
            not pair
            or spec.method is not GenerationMethod.AUTOMATIC
            or not isinstance(verdict, Valid)
        ):
            return verdict
        fullchain, key = pair
        window = self._world.renewal_window(spec, fullchain)
        if window is None:
            return verdict
        adjusted = evaluate(
            fullchain,
            key,
            names=spec.names,
            now=now,
            renew_before=spec.renew_before,
            ari_window=window,
        )
        if isinstance(adjusted, Failure):
            log.info(
                "the ACME CA's renewal information makes serial %s due now", verdict.facts.serial
            )
            return dataclasses.replace(
                adjusted, message=f"the ACME CA asks for renewal (RFC 9773): {adjusted.message}"
            )
        return adjusted

    def _ensure_cached(self, fullchain: bytes, key: bytes) -> None:
        namespace, name, spec = self._g.namespace, self._g.cache_name, self._g.spec
        if self._world.secrets.read_tls(namespace, name) == (fullchain, key):
            return
        self._world.secrets.write_tls(
            namespace,
            name,
            fullchain,
            key,
            labels={"certfleet.io/cache": "true"},
            annotations={
                "certfleet.io/domain": spec.domain,
                "certfleet.io/cloudhost": spec.cloudhost,
                "certfleet.io/build-identifier": spec.build_identifier,
            },
        )

    def _publish(
        self, pair: tuple[bytes, bytes], verdict: Valid, reason: str, message: str
    ) -> Outcome:
        """Step 4: publish to the datastore, verified, pointer last."""
        fullchain, key = pair
        facts = verdict.facts
        location, stored = self._g.location, self._g.stored
        pointer = self._g.store.publish(
            location,
            fullchain,
            key,
            serial=facts.serial,
            not_before=facts.not_before,
            not_after=facts.not_after,
            expected_pointer_etag=stored.pointer_etag if stored else None,
        )
        return self._ready(
            reason,
            verdict,
            pointer.revision,
            f"{message}; verified revision {pointer.revision} in the datastore",
            Event(
                "Normal",
                "Published",
                f"published serial {facts.serial} to {location.s3_uri} revision {pointer.revision}",
            ),
        )

    def _ready(
        self, reason: str, verdict: Valid, revision: int, message: str, *events: Event
    ) -> Outcome:
        return Outcome(
            True,
            reason,
            f"{message}; {verdict.message}",
            facts=verdict.facts,
            renew_at=verdict.renew_at,
            datastore_uri=self._g.location.s3_uri,
            revision=revision,
            cache_secret=self._g.cache_name,
            events=events,
        )

    def _still_serving(
        self, reason: str, message: str, retry_after: float, failed: bool
    ) -> Outcome | None:
        """While a replacement is not there yet, a certificate that is only due for renewal
        keeps the resource Ready: agents keep serving it."""
        stored, verdict = self._g.stored, self._g.stored_verdict
        if stored is None or not isinstance(verdict, Failure) or not verdict.usable:
            return None
        return Outcome(
            True,
            reason,
            f"{message}; the published certificate stays in use until "
            f"{verdict.facts.not_after.isoformat() if verdict.facts else 'its expiry'}",
            facts=verdict.facts,
            renew_at=verdict.renew_at,
            datastore_uri=self._g.location.s3_uri,
            revision=stored.pointer.revision,
            cache_secret=self._g.cache_name,
            issuance_failed=failed,
            retry_after=retry_after,
            events=(Event("Warning", reason, message),),
        )

    def _manual(self) -> Outcome:
        namespace, spec = self._g.namespace, self._g.spec
        assert spec.manual_secret_name is not None
        secret = spec.manual_secret_name
        poll = self._settings.manual_poll_seconds
        supplied = self._world.secrets.read_tls(namespace, secret)
        if supplied is None:
            problem = (
                "WaitingForManualCertificate",
                f"waiting for the kubernetes.io/tls Secret {namespace}/{secret}",
            )
        else:
            verdict = self._judge(supplied, spec, self._clock())
            if isinstance(verdict, Valid):
                self._ensure_cached(*supplied)
                return self._publish(
                    supplied,
                    verdict,
                    "ManualCertificateAccepted",
                    f"accepted the certificate of Secret {secret}",
                )
            problem = (str(verdict.reason), f"Secret {namespace}/{secret}: {verdict.message}")
        serving = self._still_serving(
            "ManualRenewalRequired",
            f"renewal is due and certfleet does not renew MANUAL certificates: {problem[1]}",
            poll,
            failed=False,
        )
        if serving is not None:
            return serving
        warn = problem[0] != "WaitingForManualCertificate"
        return Outcome(
            False,
            problem[0],
            problem[1],
            retry_after=poll,
            events=(Event("Warning" if warn else "Normal", problem[0], problem[1]),),
        )

    def _issue(self) -> Outcome:
        namespace, spec, stored = self._g.namespace, self._g.spec, self._g.stored
        assert spec.acme is not None
        self._on_issuing(f"ordering a certificate for {', '.join(spec.names)} through ACME")
        # A renewal tells the CA which certificate it replaces (RFC 9773 `replaces`).
        replacing = (
            stored.fullchain if stored is not None and self._g.stored_verdict.facts else None
        )
        try:
            issued = self._world.issuer(spec, namespace).issue(
                spec.names, spec.acme.key_algorithm, replacing=replacing
            )
        except CertfleetError as error:
            retry = retry_delay(
                self._previous_failures + 1,
                base_seconds=self._settings.issuance_backoff_base_seconds,
                cap_seconds=self._settings.issuance_backoff_cap_seconds,
                retry_after_seconds=(
                    error.retry_after_seconds if isinstance(error, RetryLaterError) else None
                ),
            )
            message = f"issuing through ACME failed: {error}; next attempt in {retry:.0f} s"
            serving = self._still_serving(
                "IssuanceFailed",
                message,
                retry,
                failed=True,
            )
            return serving or Outcome(
                False,
                "IssuanceFailed",
                message,
                issuance_failed=True,
                retry_after=retry,
                events=(Event("Warning", "IssuanceFailed", message),),
            )
        pair = (issued.fullchain_pem, issued.private_key_pem)
        issued_at = self._clock()
        verdict = self._judge(pair, spec, issued_at)
        # The status's renewal time follows the CA's window at once; but a window that would
        # make a brand-new certificate due is not obeyed by ordering yet another one.
        with_ari = self._with_ari(verdict, pair, spec, issued_at)
        if isinstance(with_ari, Valid):
            verdict = with_ari
        if not isinstance(verdict, Valid):
            message = f"the CA issued a certificate that fails the policy: {verdict.message}"
            return Outcome(
                False,
                str(verdict.reason),
                message,
                issuance_failed=True,
                retry_after=self._settings.retry_seconds,
                events=(Event("Warning", "IssuedCertificateRejected", message),),
            )
        # Cache first: from here on, a crash never costs another order.
        self._ensure_cached(*pair)
        outcome = self._publish(
            pair, verdict, "Issued", f"issued serial {verdict.facts.serial} through ACME"
        )
        issued_event = Event(
            "Normal",
            "Issued",
            f"issued serial {verdict.facts.serial} for "
            f"{', '.join(spec.names)}, valid until {verdict.not_after.isoformat()}",
        )
        return dataclasses.replace(outcome, events=(issued_event, *outcome.events))
