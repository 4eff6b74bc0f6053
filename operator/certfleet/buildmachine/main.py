"""`certfleet reconcile -f certificates.yaml`: the composition root of the build machine.

The operator's own core (``controller.reconcile.Reconciler``: gather -> decide -> act) over
file-backed ports, once per certificate, then exit: from cron or a systemd timer. Exit status:
0 when every certificate needs nobody, 1 when one does (a line each on stderr), 2 when the
files or flags cannot be used (then nothing was reconciled, nothing published).
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from certfleet.acme_issuer.http01 import ChallengeStore, Http01Server
from certfleet.api.reasons import CertificateReason
from certfleet.api.spec import CloudHostConfig
from certfleet.buildmachine.documents import CertificateDocument, load_documents
from certfleet.buildmachine.files import FileAccountStore, FileCache, FolderSuppliedCertificates
from certfleet.buildmachine.report import (
    GOOD_REASONS,
    RunReport,
    is_good,
    one_line,
    read_entries,
)
from certfleet.buildmachine.secrets_dir import FileDatastores, SecretsDir
from certfleet.controller.acme_issuers import AcmeIssuers
from certfleet.controller.decide import DecisionSettings
from certfleet.controller.plan import Outcome, Request
from certfleet.controller.ports import Ports
from certfleet.controller.reconcile import OrderLease, Reconciler
from certfleet.controller.renewal_windows import AriWindows
from certfleet.controller.trust_bundles import SecretTrustBundles, system_roots
from certfleet.core.clock import Clock, utc_now
from certfleet.core.errors import CertfleetError
from certfleet.core.ownership import LocationOwner

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2
DEFAULT_OWNER = "default"
# While another machine holds the order lease, look again this often.
LEASE_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class BuildMachineSettings:
    files: tuple[Path, ...]
    runtimedata: Path = Path("runtimedata")
    secrets_dir: Path = Path("/etc/certfleet/secrets")
    manual_dir: Path | None = None  # default: RUNTIMEDATA/manual
    state_dir: Path | None = None  # default: RUNTIMEDATA/.certfleet (ACME accounts)
    status_file: Path | None = None  # default: RUNTIMEDATA/certfleet-status.json
    metrics_textfile: Path | None = None
    http01_listen: tuple[str, int] = ("0.0.0.0", 8089)  # noqa: S104 - the webservers proxy here
    acme_ca_bundle: str | None = None
    wait_for_other_order_seconds: float = 300.0
    # Order now even while the last failed order's back-off holds (a person fixed the cause).
    retry_now: bool = False
    decisions: DecisionSettings = field(default_factory=DecisionSettings)
    # This machine's name, the same at every run: a run killed mid-order leaves a lease that
    # the next run of the same machine may take at once (others wait for it to expire).
    identity: str = field(default_factory=lambda: f"build machine {socket.gethostname()[:200]}")
    # The owner of the locations these files name (core.ownership): shared by every build
    # machine of one fleet, so that they all act on the same certificates, and unlike the
    # owner name of any other fleet sharing the bucket.
    owner: str = DEFAULT_OWNER


class _Reporter:
    """The Reporter port of one certificate: the order is said at once, the outcome kept."""

    def __init__(self, certificate: CertificateDocument, out: TextIO) -> None:
        self._certificate = certificate
        self._out = out
        self.outcome: Outcome | None = None

    def issuing(self, message: str) -> None:
        print(f"{self._certificate.key} {self._certificate.spec.domain}: {message}", file=self._out)
        self._out.flush()

    def report(self, outcome: Outcome) -> None:
        self.outcome = outcome


class FilesTenancy:
    """The Tenancy port without a cluster: the files are one person's, so every namespace
    they name is admitted; no ManagedCertificate can be looked up (None: a person decides,
    by certfleet.io/take-over-from)."""

    def admits(self, cloudhost: CloudHostConfig, namespace: str) -> bool:
        return True

    def owner_exists(self, owner: LocationOwner) -> bool | None:
        return None


def _ports(
    settings: BuildMachineSettings, datastores: FileDatastores
) -> tuple[Ports, ChallengeStore]:
    runtimedata = settings.runtimedata
    secrets = SecretsDir(settings.secrets_dir)
    challenges = ChallengeStore()
    issuers = AcmeIssuers(
        FileAccountStore(settings.state_dir or runtimedata / ".certfleet"),
        challenges,
        secrets.value,
        acme_ca_bundle=settings.acme_ca_bundle,
    )
    ports = Ports(
        datastores=datastores,
        cache=FileCache(runtimedata),
        supplied=FolderSuppliedCertificates(settings.manual_dir or runtimedata / "manual"),
        issuer=issuers,
        windows=AriWindows(issuers.for_directory),
        tenancy=FilesTenancy(),
        # spec.trustBundle's Secret as a file of SECRETS_DIR, like the CloudHost's others.
        trust=SecretTrustBundles(secrets.value, system_roots()),
    )
    return ports, challenges


def run(
    settings: BuildMachineSettings,
    clock: Clock = utc_now,
    sleep: Callable[[float], None] = time.sleep,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    try:
        LocationOwner.build_machines(settings.owner)
    except ValueError as error:
        print(f"certfleet reconcile: --owner {settings.owner!r}: {error}", file=err)
        return EXIT_UNUSABLE
    try:
        documents = load_documents(settings.files)
    except CertfleetError as error:
        print(f"certfleet reconcile: {one_line(str(error))}; nothing was reconciled", file=err)
        return EXIT_UNUSABLE
    datastores = FileDatastores(documents.cloudhosts, SecretsDir(settings.secrets_dir))
    ports, challenges = _ports(settings, datastores)
    reconciler = Reconciler(ports, clock, settings.decisions, OrderLease(settings.identity))
    status_file = settings.status_file or settings.runtimedata / "certfleet-status.json"
    report = RunReport(clock, read_entries(status_file))
    needs_http01 = any(c.spec.acme is not None for c in documents.certificates)
    responder = Http01Server(challenges, *settings.http01_listen) if needs_http01 else None
    try:
        if responder is not None:
            responder.start()
    except OSError as error:
        host, port = settings.http01_listen
        print(f"certfleet reconcile: cannot listen on {host}:{port}: {error.strerror}", file=err)
        return EXIT_UNUSABLE
    failures = 0
    try:
        for certificate in documents.certificates:
            held = _held_back(certificate, report, settings)
            if held is not None:
                report.keep(certificate, held)
                outcome = held
            else:
                outcome = _reconcile(reconciler, certificate, report, settings, sleep, out)
                report.record(certificate, outcome)
            line = (
                f"{certificate.key} {certificate.spec.domain}: {outcome.reason}: "
                f"{one_line(outcome.message)}"
            )
            if is_good(outcome):
                print(line, file=out)
            else:
                failures += 1
                print(f"certfleet reconcile: FAILED {line}", file=err)
    finally:
        if responder is not None:
            responder.stop()
    try:
        report.write(status_file, settings.metrics_textfile, failures == 0)
    except CertfleetError as error:
        print(f"certfleet reconcile: {one_line(str(error))}", file=err)
        return EXIT_FAILED
    return EXIT_OK if failures == 0 else EXIT_FAILED


def _held_back(
    certificate: CertificateDocument, report: RunReport, settings: BuildMachineSettings
) -> Outcome | None:
    """The outcome of a certificate whose last order failed and whose back-off still holds:
    not reconciled, so no order (nor order lease) until its time."""
    if settings.retry_now:
        return None
    held = report.held_back(certificate, settings.decisions.issuance_backoff_cap_seconds)
    if held is None:
        return None
    previous = report.previous(certificate)
    ready = previous.ready
    # The failure's reason (a certificate that keeps serving meanwhile is still Ready).
    failed = ready is not None and ready.reason and ready.reason not in GOOD_REASONS
    return Outcome(
        ready=bool(ready and ready.status),
        reason=ready.reason if ready and failed else CertificateReason.IssuanceFailed,
        message=held.message(previous.failed_issuance_attempts),
        retry_after=held.remaining_seconds,
    )


def _reconcile(
    reconciler: Reconciler,
    certificate: CertificateDocument,
    report: RunReport,
    settings: BuildMachineSettings,
    sleep: Callable[[float], None],
    out: TextIO,
) -> Outcome:
    """One certificate; while another machine holds its order lease, look again until its
    certificate is there (a Reuse then) or the wait is over."""
    previous = report.previous(certificate)
    request = Request(
        certificate.namespace,
        certificate.raw_spec,
        previous_failures=previous.failed_issuance_attempts,
        highest_revision=previous.datastore_revision,
        highest_revision_uri=previous.datastore_uri,
        owner=LocationOwner.build_machines(settings.owner),
        take_over_from=certificate.take_over_from,
    )
    deadline = time.monotonic() + settings.wait_for_other_order_seconds
    said = False
    while True:
        outcome = reconciler.reconcile(request, _Reporter(certificate, out))
        left = deadline - time.monotonic()
        if outcome.reason != CertificateReason.OrderedElsewhere or left <= 0:
            return outcome
        if not said:
            print(
                f"{certificate.key} {certificate.spec.domain}: waiting: {outcome.message}", file=out
            )
            out.flush()
            said = True
        sleep(min(LEASE_POLL_SECONDS, left))
