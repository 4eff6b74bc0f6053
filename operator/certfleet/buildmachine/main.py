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
from certfleet.buildmachine.documents import CertificateDocument, load_documents
from certfleet.buildmachine.files import FileAccountStore, FileCache, FolderSuppliedCertificates
from certfleet.buildmachine.report import RunReport, is_good, one_line, read_statuses
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

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2
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
    # This machine's name, the same at every run: a run killed mid-order leaves a lease that
    # the next run of the same machine may take at once (others wait for it to expire).
    identity: str = field(default_factory=lambda: f"build machine {socket.gethostname()[:200]}")


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
        documents = load_documents(settings.files)
    except CertfleetError as error:
        print(f"certfleet reconcile: {one_line(str(error))}; nothing was reconciled", file=err)
        return EXIT_UNUSABLE
    datastores = FileDatastores(documents.cloudhosts, SecretsDir(settings.secrets_dir))
    ports, challenges = _ports(settings, datastores)
    reconciler = Reconciler(ports, clock, DecisionSettings(), OrderLease(settings.identity))
    status_file = settings.status_file or settings.runtimedata / "certfleet-status.json"
    report = RunReport(clock, read_statuses(status_file))
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
    request = Request(
        certificate.namespace,
        certificate.raw_spec,
        previous_failures=report.previous(certificate).failed_issuance_attempts,
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
