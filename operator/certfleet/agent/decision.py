"""Install this revision or not, and why: a pure function of what is installed, what the
datastore offers, the force flag and the clock (passed in). No files, no network.

The order of the rules is part of the API, since it decides which reason is reported:

1. The candidate must pass the certificate policy (PEM parses, the key matches, it covers the
   domain, it may serve TLS, the chain links and leads to a trusted root, it is neither
   expired nor not yet valid). A certificate that is
   only due for renewal is still installed: it is the best there is. Nothing overrides this.
2. The candidate's serial must be the one the pointer names (the pointer and the files were
   written together; a difference means someone changed one of them).
3. Byte-identical files are already installed: keep them.
4. No rollback: a pointer naming a revision below the one the installed files came from (the
   same datastore folder) is refused, unless forced. Revisions order publishes, not the
   certificates' notBefore: a person's MANUAL replacement issued before the certificate it
   replaces comes in a newer revision and is installed at once. An installed certificate that
   is expired, for another name or unparsable (a placeholder), or whose revision is not
   known (installed by hand, or by an older agent), protects nothing.
5. Otherwise install.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from cryptography import x509

from certfleet.core.checks import Reason
from certfleet.core.facts import CertificateFacts
from certfleet.core.policy import Failure, Verdict, evaluate, fit_to_serve


class SyncReason(StrEnum):
    """The agent's own reasons; a refused candidate reports the policy's Reason (checks.py)."""

    # Success.
    Installed = "Installed"
    UpToDate = "UpToDate"
    # The candidate is refused (besides the policy's reasons).
    PointerMismatch = "PointerMismatch"
    Downgrade = "Downgrade"
    # The pointer is not the operator's own for this location, or was put back.
    PointerUnauthenticated = "PointerUnauthenticated"  # no tag: format 1, or stripped
    PointerForged = "PointerForged"  # the tag does not verify
    PointerMisplaced = "PointerMisplaced"  # authentic, but another location's
    RolledBack = "RolledBack"  # below the highest revision this node accepted
    # The datastore.
    NotPublished = "NotPublished"
    DatastoreUnavailable = "DatastoreUnavailable"
    DatastoreIntegrity = "DatastoreIntegrity"
    UnknownMasterKey = "UnknownMasterKey"
    DatastoreFailed = "DatastoreFailed"
    # The node.
    InstallFailed = "InstallFailed"
    ConfigTestFailed = "ConfigTestFailed"
    ReloadFailed = "ReloadFailed"
    ProbeFailed = "ProbeFailed"
    # Reloads did not make the webserver serve the installed leaf; it is no longer reloaded
    # for it until something changes (a new revision, other files, another served leaf).
    NotServed = "NotServed"


# Why a node is in the state it is: status `reason`, metric label, log. Values are the API.
NodeReason = Reason | SyncReason

SUCCESS_REASONS = frozenset({SyncReason.Installed, SyncReason.UpToDate})


class Action(StrEnum):
    INSTALL = "Install"
    KEEP = "Keep"  # what is installed is what the datastore holds
    REFUSE = "Refuse"  # keep serving what is installed; report the reason


@dataclass(frozen=True, slots=True)
class Judged:
    """A pair of PEM files with the policy's verdict on them (facts only when they parsed)."""

    verdict: Verdict
    fullchain_sha256: str
    privkey_sha256: str = field(repr=False)

    @property
    def facts(self) -> CertificateFacts | None:
        return self.verdict.facts

    @property
    def acceptable(self) -> bool:
        """Fine to serve: valid, or valid but due for renewal (that is the operator's job)."""
        return fit_to_serve(self.verdict)


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: NodeReason
    message: str


def judge(
    fullchain: bytes,
    privkey: bytes,
    *,
    domain: str,
    now: datetime,
    trust_roots: Sequence[x509.Certificate],
) -> Judged:
    """The policy's verdict on a pair, for `domain` at `now`: the operator's own checks, the
    chain's trust included (``trust_roots``: agent/trust.py), so a certificate someone else
    put in the bucket, signed by their own CA, is refused here too."""
    return Judged(
        verdict=evaluate(fullchain, privkey, names=[domain], now=now, trust_roots=trust_roots),
        fullchain_sha256=hashlib.sha256(fullchain).hexdigest(),
        privkey_sha256=hashlib.sha256(privkey).hexdigest(),
    )


def decide(
    candidate: Judged,
    installed: Judged | None,
    *,
    pointer_serial: str,
    pointer_revision: int | None = None,
    installed_revision: int | None = None,
    force: bool = False,
) -> Decision:
    """The rules of the module docstring, in order. `installed_revision` is the revision the
    installed files came from, from the pointer's own datastore folder (None: not known)."""
    facts = candidate.facts
    if not candidate.acceptable or facts is None:
        assert isinstance(candidate.verdict, Failure)
        return Decision(
            Action.REFUSE,
            candidate.verdict.reason,
            f"refused the datastore's certificate: {candidate.verdict.message}",
        )
    if facts.serial != pointer_serial:
        return Decision(
            Action.REFUSE,
            SyncReason.PointerMismatch,
            f"the pointer names serial {pointer_serial}, but the stored certificate has serial "
            f"{facts.serial}",
        )
    if (
        installed is not None
        and installed.fullchain_sha256 == candidate.fullchain_sha256
        and installed.privkey_sha256 == candidate.privkey_sha256
    ):
        return Decision(Action.KEEP, SyncReason.UpToDate, f"serial {facts.serial} is installed")
    old = installed.facts if installed is not None and installed.acceptable else None
    if (
        old is not None
        and pointer_revision is not None
        and installed_revision is not None
        and pointer_revision < installed_revision
    ):
        message = (
            f"the pointer names revision {pointer_revision} (serial {facts.serial}), older "
            f"than the installed revision {installed_revision} (serial {old.serial})"
        )
        if not force:
            return Decision(
                Action.REFUSE,
                SyncReason.Downgrade,
                f"refused a downgrade: {message}; run with --force to install it anyway",
            )
        return Decision(Action.INSTALL, SyncReason.Installed, f"forced a downgrade: {message}")
    return Decision(Action.INSTALL, SyncReason.Installed, f"install serial {facts.serial}")
