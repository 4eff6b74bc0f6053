"""One certificate the agent serves: its poll, its decision, its files, its probe and its report.

The loop (certfleet.agent.loop) drives every certificate through the same steps and batches the
webserver's part: `gather` polls the pointer; `prepare` judges what is installed against the
revision, asks the pure decision and, for an install, switches the files in; the loop then tests
and reloads the webserver once for all the certificates that changed; `confirm` checks by a TLS
handshake that the new leaf is served, or `restore` puts the previous files back; `conclude`
records the outcome (backoff, metrics, log, the status report).

Before anything is judged, a pointer below the highest revision this node has accepted for the
location is refused (`RolledBack`, `agent.revisions`); one that is not authentic never gets
here (the poll refuses it, with the reason `datastore_reason` names).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from cryptography import x509

from certfleet.agent.decision import Action, Judged, NodeReason, SyncReason, decide, judge
from certfleet.agent.installer import CertificateInstaller, InstallError, Origin, Switch
from certfleet.agent.metrics import DomainMetrics
from certfleet.agent.probe import ProbeError, ServedCertificate
from certfleet.agent.reporter import NodeReport, ReportError, StatusReporter
from certfleet.agent.revisions import RevisionMemory
from certfleet.core.clock import utc_now
from certfleet.core.facts import CertificateFacts
from certfleet.core.rollback import rolled_back
from certfleet.datastore.errors import (
    DatastoreError,
    DatastoreIntegrityError,
    DatastoreUnavailableError,
    PointerLocationError,
    PointerMacError,
    UnauthenticatedPointerError,
    UnknownMasterKeyError,
)
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.pointer import Pointer
from certfleet.datastore.protocol import PointerPoll, PollStatus, StoredCertificate

log = logging.getLogger(__name__)

# Reloads for an installed leaf the webserver keeps not serving (it serves another certificate
# for the name: a misconfiguration no reload repairs) before the agent stops reloading for it.
MAX_RELOADS_FOR_UNSERVED = 3


class Datastore(Protocol):
    """The two reads the agent needs (S3Datastore has them)."""

    def poll_pointer(self, location: DatastoreLocation, etag: str | None) -> PointerPoll: ...

    def read_revision(
        self, location: DatastoreLocation, pointer: Pointer, pointer_etag: str
    ) -> StoredCertificate: ...


class Prober(Protocol):
    def served(self) -> ServedCertificate: ...

    def verify(self) -> None:
        """A verified handshake (chain and name, as clients see it); raises ProbeError."""

    def wait_for(self, sha256: str, timeout: float) -> ServedCertificate: ...


@dataclass(frozen=True, slots=True)
class CertificateSettings:
    """What the loop's settings say about each certificate."""

    poll_interval: float
    max_backoff: float
    reload: bool
    force: bool
    probe_timeout: float
    report_interval: float
    recheck_interval: float


@dataclass(frozen=True, slots=True)
class SyncResult:
    ok: bool
    reason: NodeReason
    message: str


@dataclass(frozen=True, slots=True)
class Due:
    """The pointer is to be handled now (changed, due for a recheck or a retry)."""

    pointer: Pointer
    etag: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """Nothing to handle: the result, and whether it is recorded (metrics, log, report)."""

    result: SyncResult
    recorded: bool = True


@dataclass(frozen=True, slots=True)
class Pending:
    """Installed (`switch`) or already installed but not served (`switch` None): the webserver
    must reload before `facts` is served (`unserved`: the leaf served instead, then)."""

    facts: CertificateFacts
    switch: Switch | None
    message: str
    unserved: tuple[str, str] | None = None


def datastore_reason(error: DatastoreError) -> SyncReason:
    if isinstance(error, UnknownMasterKeyError):
        return SyncReason.UnknownMasterKey
    if isinstance(error, UnauthenticatedPointerError):
        return SyncReason.PointerUnauthenticated
    if isinstance(error, PointerMacError):
        return SyncReason.PointerForged
    if isinstance(error, PointerLocationError):
        return SyncReason.PointerMisplaced
    if isinstance(error, DatastoreIntegrityError):
        return SyncReason.DatastoreIntegrity
    if isinstance(error, DatastoreUnavailableError):
        return SyncReason.DatastoreUnavailable
    return SyncReason.DatastoreFailed


@dataclass
class _State:
    etag: str | None = None  # of the last pointer handled, well or not
    pointer: Pointer | None = None
    applied_ok: bool = False  # the last handling of `pointer` succeeded
    checked_at: float = float("-inf")  # monotonic time of the last successful handling
    applied_reason: NodeReason = SyncReason.UpToDate
    failures: int = 0  # consecutive failed handlings, for the backoff
    retry_at: float = 0.0  # monotonic
    installed_serial: str | None = None
    served: ServedCertificate | None = None
    last_success: datetime | None = None
    reason: NodeReason | None = None
    error: str | None = None
    reported: NodeReport | None = None
    reported_at: float = field(default=float("-inf"))
    # (installed leaf, served leaf) digests of reloads that did not make the first served,
    # and how many there were in a row: bounded by MAX_RELOADS_FOR_UNSERVED.
    unserved: tuple[str, str] | None = None
    unserved_reloads: int = 0


class CertificateSync:
    def __init__(
        self,
        location: DatastoreLocation,
        settings: CertificateSettings,
        datastore: Datastore,
        installer: CertificateInstaller,
        prober: Prober | None,
        reporter: StatusReporter,
        metrics: DomainMetrics,
        *,
        trust_roots: Sequence[x509.Certificate],
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.location = location
        self.domain = location.domain
        self.settings = settings
        self.installer = installer
        self._store = datastore
        self._prober = prober
        self._reporter = reporter
        self._metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        self._roots = tuple(trust_roots)
        self.state = _State()
        # Rollback protection: the highest revision accepted, kept with the installed files.
        self.revisions = RevisionMemory(installer.store)

    def _judge(self, fullchain: bytes, privkey: bytes, now: datetime) -> Judged:
        return judge(fullchain, privkey, domain=self.domain, now=now, trust_roots=self._roots)

    # -- gather -------------------------------------------------------------------------

    def gather(self) -> Due | Skipped:
        """One conditional GET of the pointer, and whether it is to be handled now."""
        state = self.state
        pointer_uri = self.location.s3_uri_of(self.location.pointer_key)
        try:
            poll = self._store.poll_pointer(self.location, state.etag)
        except DatastoreError as error:
            self._metrics.polled("error")
            return Skipped(SyncResult(False, datastore_reason(error), str(error)))
        if poll.status is PollStatus.MISSING:
            self._metrics.polled("missing")
            state.etag, state.pointer, state.applied_ok = None, None, False
            return Skipped(
                SyncResult(False, SyncReason.NotPublished, f"nothing is published at {pointer_uri}")
            )
        if poll.status is PollStatus.UNCHANGED:
            self._metrics.polled("unchanged")
            if state.pointer is None or state.etag is None:
                # Only an ETag we sent can be unchanged; forget it and read afresh next time.
                state.etag = None
                return Skipped(self._last(), recorded=False)
            since = self._monotonic() - state.checked_at
            if state.applied_ok and since < self.settings.recheck_interval:
                return Skipped(SyncResult(True, state.applied_reason, "the datastore is unchanged"))
            if not state.applied_ok and self._monotonic() < state.retry_at:
                # Backing off: nothing new to say, nothing to count.
                return Skipped(self._last(), recorded=False)
            return Due(state.pointer, state.etag)
        self._metrics.polled("changed")
        if poll.pointer is None or poll.etag is None:
            raise AssertionError("a changed pointer comes with its body and ETag")
        state.etag, state.pointer = poll.etag, poll.pointer
        return Due(poll.pointer, poll.etag)

    def _last(self) -> SyncResult:
        state = self.state
        return SyncResult(False, state.reason or SyncReason.UpToDate, state.error or "")

    # -- decide and install -------------------------------------------------------------

    def prepare(self, due: Due) -> SyncResult | Pending:
        """Decide on the pointer's revision; install it (without reloading) if that is the
        decision. A SyncResult is final; Pending needs the webserver's reload."""
        try:
            return self._prepare(due.pointer, due.etag)
        except InstallError as error:
            return SyncResult(False, SyncReason.InstallFailed, str(error))

    def _prepare(self, pointer: Pointer, etag: str) -> SyncResult | Pending:
        refused = rolled_back(pointer.revision, self.revisions.highest(self.location))
        # --force is a person's decision to go back: the same override as for a downgrade.
        if refused is not None and not self.settings.force:
            return SyncResult(
                False, SyncReason.RolledBack, f"refused revision {pointer.revision}: {refused}"
            )
        now = self._clock()
        files = self.installer.read_installed()
        installed = self._judge(files.fullchain, files.privkey, now) if files else None
        self.state.installed_serial = (
            installed.facts.serial if installed and installed.facts else None
        )
        stored: StoredCertificate | None = None
        if (
            installed is not None
            and installed.fullchain_sha256 == pointer.fullchain_sha256
            and installed.privkey_sha256 == pointer.privkey_sha256
        ):
            candidate = installed  # already here: nothing to download
        else:
            try:
                stored = self._store.read_revision(self.location, pointer, etag)
            except DatastoreError as error:
                return SyncResult(
                    False, datastore_reason(error), f"refused revision {pointer.revision}: {error}"
                )
            candidate = self._judge(stored.fullchain, stored.privkey, now)

        origin = files.origin if files is not None else None
        decision = decide(
            candidate,
            installed,
            pointer_serial=pointer.serial,
            pointer_revision=pointer.revision,
            installed_revision=(
                origin.revision
                if origin is not None and origin.location == self.location.s3_uri
                else None
            ),
            force=self.settings.force,
        )
        if decision.action is Action.REFUSE:
            return SyncResult(
                False, decision.reason, f"revision {pointer.revision}: {decision.message}"
            )
        facts = candidate.facts
        assert facts is not None
        # Accepted (authentic, verified, fit): nothing below it is taken from now on.
        self.revisions.remember(self.location, pointer.revision)
        if decision.action is Action.KEEP:
            return self._ensure_served(facts)
        assert stored is not None
        switch = self.installer.install(
            stored.fullchain,
            stored.privkey,
            label=facts.serial,
            origin=Origin(self.location.s3_uri, pointer.revision),
        )
        self.state.installed_serial = facts.serial
        log.info(
            "installed serial %s (revision %d) into %s",
            facts.serial,
            pointer.revision,
            self.installer.link,
        )
        if not self.settings.reload:
            self.prune()
            return SyncResult(
                True,
                SyncReason.Installed,
                f"{decision.message}; the webserver was not reloaded (reload is off)",
            )
        return Pending(facts, switch, decision.message)

    def _ensure_served(self, facts: CertificateFacts) -> SyncResult | Pending:
        """The datastore's certificate is installed; make sure it is the one served too (an
        agent restarted between install and reload would otherwise leave the old one)."""
        if not self.settings.reload:
            return SyncResult(True, SyncReason.UpToDate, f"serial {facts.serial} is installed")
        if self._prober is None:
            self.state.served = ServedCertificate(facts.serial, facts.sha256, facts.not_after)
            return SyncResult(True, SyncReason.UpToDate, f"serial {facts.serial} is installed")
        try:
            served = self._prober.served()
            if served.sha256 == facts.sha256:
                # "Served" means what clients see: the same verified handshake as after a
                # reload, not only the same leaf.
                self._prober.verify()
        except ProbeError as error:
            return SyncResult(False, SyncReason.ProbeFailed, str(error))
        state = self.state
        state.served = served
        if served.sha256 == facts.sha256:
            state.unserved, state.unserved_reloads = None, 0
            return SyncResult(True, SyncReason.UpToDate, f"serial {facts.serial} is served")
        unserved = (facts.sha256, served.sha256)
        if state.unserved != unserved:
            state.unserved, state.unserved_reloads = unserved, 0  # something changed: try again
        if state.unserved_reloads >= MAX_RELOADS_FOR_UNSERVED:
            return SyncResult(
                False,
                SyncReason.NotServed,
                f"serial {facts.serial} is installed in {self.installer.link}, but after "
                f"{state.unserved_reloads} reloads the webserver still serves serial "
                f"{served.serial} for {self.domain}: its configuration likely names other "
                "files for this name; not reloading again until the datastore, the installed "
                "files or the served certificate change",
            )
        log.info("serial %s is installed but %s is served; reloading", facts.serial, served.serial)
        return Pending(facts, None, f"serve the installed serial {facts.serial}", unserved)

    # -- after the webserver's reload ---------------------------------------------------

    def confirm(self, pending: Pending) -> SyncResult:
        """The reload succeeded: a handshake with this certificate's name must see its leaf."""
        facts = pending.facts
        if self._prober is None:
            self.state.served = ServedCertificate(facts.serial, facts.sha256, facts.not_after)
        else:
            try:
                self.state.served = self._prober.wait_for(facts.sha256, self.settings.probe_timeout)
            except ProbeError as error:
                # The files passed the webserver's own test and reload: keep them (a rollback
                # would not make the new ones served); retry the reload later, a few times.
                self.refresh_served()
                if pending.unserved is not None and pending.unserved == self.state.unserved:
                    self.state.unserved_reloads += 1
                return SyncResult(False, SyncReason.ProbeFailed, f"reloaded, but {error}")
        self.prune()
        return SyncResult(
            True, SyncReason.Installed, f"{pending.message}; serial {facts.serial} is served"
        )

    def restore(self, switch: Switch | None) -> str:
        """Undo `switch`; says what was done, for the error message."""
        if switch is None:
            return "the files were not changed"
        try:
            self.installer.rollback(switch)
            said = "the previous files were restored"
        except InstallError as error:
            said = f"restoring the previous files failed ({error})"
        try:
            files = self.installer.read_installed()
        except InstallError:
            files = None
        previous = self._judge(files.fullchain, files.privkey, self._clock()) if files else None
        self.state.installed_serial = previous.facts.serial if previous and previous.facts else None
        return said

    def refresh_served(self) -> None:
        if self._prober is None:
            return
        try:
            self.state.served = self._prober.served()
        except ProbeError as error:
            log.warning("%s: cannot tell which certificate is served: %s", self.domain, error)

    def prune(self) -> None:
        try:
            self.installer.prune()
        except OSError as error:  # old versions only cost disk space
            log.warning("cannot prune old versions under %s: %s", self.installer.store, error)

    # -- report -------------------------------------------------------------------------

    def conclude(self, outcome: SyncResult) -> SyncResult:
        """A handled pointer's outcome: the backoff, then `record`."""
        state = self.state
        state.applied_ok = outcome.ok
        if outcome.ok:
            state.applied_reason, state.failures = outcome.reason, 0
            state.checked_at = self._monotonic()
        else:
            state.failures += 1
            backoff = self.settings.poll_interval * 2 ** (state.failures - 1)
            state.retry_at = self._monotonic() + min(backoff, self.settings.max_backoff)
        return self.record(outcome)

    def record(self, outcome: SyncResult) -> SyncResult:
        """Metrics, the log (a change at INFO/WARNING, a repeat at DEBUG) and the report."""
        state = self.state
        changed = (outcome.reason, None if outcome.ok else outcome.message) != (
            state.reason,
            state.error,
        )
        if outcome.ok:
            state.last_success = self._clock()
            self._metrics.sync_succeeded(state.last_success)
            if changed:
                log.info("%s: %s (%s)", outcome.reason, outcome.message, self.domain)
        else:
            self._metrics.sync_failed(outcome.reason)
            log.log(
                logging.WARNING if changed else logging.DEBUG,
                "%s: %s (%s)",
                outcome.reason,
                outcome.message,
                self.domain,
            )
        state.reason = outcome.reason
        state.error = None if outcome.ok else outcome.message
        if state.served is not None:
            self._metrics.served_certificate(state.served.serial, state.served.not_after)
        self._report()
        return outcome

    def _report(self) -> None:
        state = self.state
        assert state.reason is not None
        report = NodeReport(
            reason=state.reason,
            served_serial=state.served.serial if state.served else None,
            installed_serial=state.installed_serial,
            last_successful_sync=state.last_success,
            last_error=state.error,
        )
        now = self._monotonic()
        previous = state.reported
        # lastSuccessfulSync moves every interval; only a heartbeat carries that alone.
        same = previous is not None and (
            previous.reason,
            previous.served_serial,
            previous.installed_serial,
            previous.last_error,
            previous.last_successful_sync is None,
        ) == (
            report.reason,
            report.served_serial,
            report.installed_serial,
            report.last_error,
            report.last_successful_sync is None,
        )
        if same and now - state.reported_at < self.settings.report_interval:
            return
        try:
            self._reporter.report(report)
        except ReportError as error:
            log.warning(
                "%s: cannot report the node's state (trying again next sync): %s",
                self.domain,
                error,
            )
            return
        state.reported, state.reported_at = report, now
