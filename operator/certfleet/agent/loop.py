"""The agent's loop: follow the datastore pointer, install what it names, reload, confirm, report.

One sync:

1. A conditional GET of `current.json` (If-None-Match: the last ETag). Unchanged: nothing is
   downloaded, and if the last revision was handled well that is a successful sync (every
   `recheck_interval` the node's files and served leaf are checked again, locally).
2. Changed (or a failed attempt is due for a retry): if the installed files already have the
   pointer's digests, nothing is downloaded; else the revision is fetched and every digest
   checked (S3Datastore.read_revision).
3. The pure decision (certfleet.agent.decision): install, keep, or refuse and why.
4. Install: new files switched in atomically, the webserver's config test, a graceful reload,
   then a TLS handshake confirms the new leaf is served. A failed test or reload restores the
   previous files (and reloads again after a failed reload).
5. Report: metrics, the log, and the node's entry in the ManagedCertificate's status.

What the node serves is never touched by a failure: refusals, an unreachable S3 and a broken
webserver config all leave the previous certificate in place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from certfleet.agent.decision import Action, NodeReason, SyncReason, decide, judge
from certfleet.agent.installer import CertificateInstaller, InstallError, Switch
from certfleet.agent.metrics import RELOAD_FAILED, RELOAD_SUCCESS, RELOAD_TEST_FAILED, AgentMetrics
from certfleet.agent.probe import ProbeError, ServedCertificate
from certfleet.agent.reporter import NodeReport, ReportError, StatusReporter
from certfleet.agent.webserver import Webserver
from certfleet.core.clock import utc_now
from certfleet.core.facts import CertificateFacts
from certfleet.datastore.errors import (
    DatastoreError,
    DatastoreIntegrityError,
    DatastoreUnavailableError,
    UnknownMasterKeyError,
)
from certfleet.datastore.location import DatastoreLocation
from certfleet.datastore.pointer import Pointer
from certfleet.datastore.protocol import PointerPoll, PollStatus, StoredCertificate

log = logging.getLogger(__name__)


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
class AgentSettings:
    domain: str
    node: str
    poll_interval: float = 60.0
    # After a failed install, retry the same revision after interval * 2^n, at most this long.
    max_backoff: float = 300.0
    # False: install only, for the init step before the webserver runs (`--once --no-reload`).
    reload: bool = True
    force: bool = False  # allow a downgrade
    probe_timeout: float = 10.0
    # Even without a change, refresh lastSuccessfulSync in the status this often.
    report_interval: float = 300.0
    # Even with an unchanged datastore, check the node this often: the files are still the
    # pointer's and the webserver serves them (a hand-edit or a restart with other files is
    # repaired; nothing is downloaded unless the files changed).
    recheck_interval: float = 300.0


@dataclass(frozen=True, slots=True)
class SyncResult:
    ok: bool
    reason: NodeReason
    message: str


def datastore_reason(error: DatastoreError) -> SyncReason:
    if isinstance(error, UnknownMasterKeyError):
        return SyncReason.UnknownMasterKey
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


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        datastore: Datastore,
        location: DatastoreLocation,
        installer: CertificateInstaller,
        webserver: Webserver | None,
        prober: Prober | None,
        reporter: StatusReporter,
        metrics: AgentMetrics,
        *,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if settings.reload and webserver is None:
            raise ValueError("a webserver is needed unless reloading is off")
        self.settings = settings
        self._store = datastore
        self._location = location
        self._installer = installer
        self._webserver = webserver
        self._prober = prober
        self._reporter = reporter
        self._metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        self._state = _State()
        self._wake = threading.Event()
        self._stopping = threading.Event()

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> None:
        """Sync every poll interval (sooner after `request_sync`) until `stop`."""
        while not self._stopping.is_set():
            started = self._monotonic()
            try:
                self.sync_once()
            except Exception:  # a bug must not stop the node from ever syncing again
                log.exception("unexpected error during a sync; trying again next interval")
            elapsed = self._monotonic() - started
            self._wake.wait(max(0.0, self.settings.poll_interval - elapsed))
            self._wake.clear()

    def request_sync(self) -> None:
        """A hint that the datastore changed (the ManagedCertificate's status moved)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    @property
    def served(self) -> ServedCertificate | None:
        return self._state.served

    @property
    def last_result(self) -> tuple[NodeReason | None, str | None]:
        return self._state.reason, self._state.error

    # -- one sync -----------------------------------------------------------------------

    def sync_once(self) -> SyncResult:
        state = self._state
        pointer_uri = self._location.s3_uri_of(self._location.pointer_key)
        try:
            poll = self._store.poll_pointer(self._location, state.etag)
        except DatastoreError as error:
            self._metrics.polled("error")
            return self._finish(SyncResult(False, datastore_reason(error), str(error)))

        if poll.status is PollStatus.MISSING:
            self._metrics.polled("missing")
            state.etag, state.pointer, state.applied_ok = None, None, False
            return self._finish(
                SyncResult(False, SyncReason.NotPublished, f"nothing is published at {pointer_uri}")
            )
        if poll.status is PollStatus.UNCHANGED:
            self._metrics.polled("unchanged")
            if state.pointer is None or state.etag is None:
                # Only an ETag we sent can be unchanged; forget it and read afresh next time.
                state.etag = None
                return SyncResult(False, state.reason or SyncReason.UpToDate, state.error or "")
            since = self._monotonic() - state.checked_at
            if state.applied_ok and since < self.settings.recheck_interval:
                return self._finish(
                    SyncResult(True, state.applied_reason, "the datastore is unchanged")
                )
            if not state.applied_ok and self._monotonic() < state.retry_at:
                # Backing off: nothing new to say, nothing to count.
                return SyncResult(False, state.reason or SyncReason.UpToDate, state.error or "")
            pointer, etag = state.pointer, state.etag
        else:
            self._metrics.polled("changed")
            if poll.pointer is None or poll.etag is None:
                raise AssertionError("a changed pointer comes with its body and ETag")
            pointer, etag = poll.pointer, poll.etag
        state.etag, state.pointer = etag, pointer

        try:
            with self._installer.locked():
                outcome = self._apply(pointer, etag)
        except InstallError as error:
            outcome = SyncResult(False, SyncReason.InstallFailed, str(error))
        state.applied_ok = outcome.ok
        if outcome.ok:
            state.applied_reason, state.failures = outcome.reason, 0
            state.checked_at = self._monotonic()
        else:
            state.failures += 1
            backoff = self.settings.poll_interval * 2 ** (state.failures - 1)
            state.retry_at = self._monotonic() + min(backoff, self.settings.max_backoff)
        return self._finish(outcome)

    def _apply(self, pointer: Pointer, etag: str) -> SyncResult:
        now = self._clock()
        domain = self.settings.domain
        files = self._installer.read_installed()
        installed = judge(files.fullchain, files.privkey, domain=domain, now=now) if files else None
        self._state.installed_serial = (
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
                stored = self._store.read_revision(self._location, pointer, etag)
            except DatastoreError as error:
                return SyncResult(
                    False,
                    datastore_reason(error),
                    f"refused revision {pointer.revision}: {error}",
                )
            candidate = judge(stored.fullchain, stored.privkey, domain=domain, now=now)

        decision = decide(
            candidate, installed, pointer_serial=pointer.serial, force=self.settings.force
        )
        if decision.action is Action.REFUSE:
            return SyncResult(
                False, decision.reason, f"revision {pointer.revision}: {decision.message}"
            )
        facts = candidate.facts
        assert facts is not None
        if decision.action is Action.KEEP:
            return self._ensure_served(facts)
        assert stored is not None
        switch = self._installer.install(stored.fullchain, stored.privkey, label=facts.serial)
        self._state.installed_serial = facts.serial
        log.info(
            "installed serial %s (revision %d) into %s",
            facts.serial,
            pointer.revision,
            self._installer.link,
        )
        if not self.settings.reload:
            self._prune()
            return SyncResult(
                True,
                SyncReason.Installed,
                f"{decision.message}; the webserver was not reloaded (reload is off)",
            )
        return self._reload_and_confirm(facts, switch, decision.message)

    def _ensure_served(self, facts: CertificateFacts) -> SyncResult:
        """The datastore's certificate is installed; make sure it is the one served too (an
        agent restarted between install and reload would otherwise leave the old one)."""
        if not self.settings.reload:
            return SyncResult(True, SyncReason.UpToDate, f"serial {facts.serial} is installed")
        if self._prober is None:
            self._state.served = ServedCertificate(facts.serial, facts.sha256, facts.not_after)
            return SyncResult(True, SyncReason.UpToDate, f"serial {facts.serial} is installed")
        try:
            served = self._prober.served()
            if served.sha256 == facts.sha256:
                # "Served" means what clients see: the same verified handshake as after a
                # reload, not only the same leaf.
                self._prober.verify()
        except ProbeError as error:
            return SyncResult(False, SyncReason.ProbeFailed, str(error))
        if served.sha256 == facts.sha256:
            self._state.served = served
            return SyncResult(True, SyncReason.UpToDate, f"serial {facts.serial} is served")
        log.info("serial %s is installed but %s is served; reloading", facts.serial, served.serial)
        self._state.served = served
        return self._reload_and_confirm(facts, None, f"serve the installed serial {facts.serial}")

    def _reload_and_confirm(
        self, facts: CertificateFacts, switch: Switch | None, what: str
    ) -> SyncResult:
        assert self._webserver is not None
        test = self._webserver.test()
        if not test.ok:
            self._metrics.reloaded(RELOAD_TEST_FAILED)
            restored = self._restore(switch, reload=False)
            return SyncResult(
                False,
                SyncReason.ConfigTestFailed,
                f"the webserver's configuration test failed, {restored}: {test.detail}",
            )
        reload = self._webserver.reload()
        if not reload.ok:
            self._metrics.reloaded(RELOAD_FAILED)
            restored = self._restore(switch, reload=True)
            return SyncResult(
                False,
                SyncReason.ReloadFailed,
                f"the webserver's reload failed, {restored}: {reload.detail}",
            )
        self._metrics.reloaded(RELOAD_SUCCESS)
        if self._prober is None:
            self._state.served = ServedCertificate(facts.serial, facts.sha256, facts.not_after)
        else:
            try:
                self._state.served = self._prober.wait_for(
                    facts.sha256, self.settings.probe_timeout
                )
            except ProbeError as error:
                # The files passed the webserver's own test and reload: keep them (a rollback
                # would not make the new ones served); retry the reload later.
                self._refresh_served()
                return SyncResult(False, SyncReason.ProbeFailed, f"reloaded, but {error}")
        self._prune()
        return SyncResult(True, SyncReason.Installed, f"{what}; serial {facts.serial} is served")

    def _restore(self, switch: Switch | None, *, reload: bool) -> str:
        """Undo `switch` (and reload again); says what was done, for the error message."""
        if switch is None:
            said = "the files were not changed"
        else:
            try:
                self._installer.rollback(switch)
                said = "the previous files were restored"
            except InstallError as error:
                said = f"restoring the previous files failed ({error})"
            files = self._installer.read_installed()
            previous = (
                judge(
                    files.fullchain, files.privkey, domain=self.settings.domain, now=self._clock()
                )
                if files
                else None
            )
            self._state.installed_serial = (
                previous.facts.serial if previous and previous.facts else None
            )
        if reload and self._webserver is not None:
            again = self._webserver.reload()
            said += (
                " and reloaded"
                if again.ok
                else f" (the reload after that failed too: {again.detail})"
            )
        self._refresh_served()
        return said

    def _refresh_served(self) -> None:
        if self._prober is None:
            return
        try:
            self._state.served = self._prober.served()
        except ProbeError as error:
            log.warning("cannot tell which certificate is served: %s", error)

    def _prune(self) -> None:
        try:
            self._installer.prune()
        except OSError as error:  # old versions only cost disk space
            log.warning("cannot prune old versions under %s: %s", self._installer.store, error)

    # -- reporting ----------------------------------------------------------------------

    def _finish(self, outcome: SyncResult) -> SyncResult:
        state = self._state
        changed = (outcome.reason, None if outcome.ok else outcome.message) != (
            state.reason,
            state.error,
        )
        if outcome.ok:
            state.last_success = self._clock()
            self._metrics.sync_succeeded(state.last_success)
            if changed:
                log.info("%s: %s", outcome.reason, outcome.message)
        else:
            self._metrics.sync_failed(outcome.reason)
            log.log(
                logging.WARNING if changed else logging.DEBUG,
                "%s: %s",
                outcome.reason,
                outcome.message,
            )
        state.reason = outcome.reason
        state.error = None if outcome.ok else outcome.message
        if state.served is not None:
            self._metrics.served_certificate(state.served.serial, state.served.not_after)
        self._report()
        return outcome

    def _report(self) -> None:
        state = self._state
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
            log.warning("cannot report the node's state (trying again next sync): %s", error)
            return
        state.reported, state.reported_at = report, now
