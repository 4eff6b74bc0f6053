"""What a restarted operator takes from the status it wrote before it stopped.

At a restart kopf resumes every resource. Reconciled at once, each would have its certificate
read from S3 and checked again: minutes of work at thousands of certificates, when nothing
changed. Nothing else is lost at a restart: between two rechecks a running operator knows no
more of S3 than its last status says. So a resource whose status says the job was done, for
the spec as it is now, is taken as its status says (its metrics from it), and verified at its
next recheck, at its own phase of the interval, as if the operator had never stopped.
Anything else (an order under way, a failure, a spec not yet reconciled, a renewal due) is
reconciled at once.
"""

from __future__ import annotations

from datetime import datetime

from certfleet.api.reasons import CertificateReason
from certfleet.api.status import CertificateStatus

# The Ready reasons of a finished job: a certificate published and fit to serve, nothing left
# to retry. (ManualRenewalRequired waits for a person: looked at again at once, cheaply.)
DONE = frozenset(
    {
        CertificateReason.Issued,
        CertificateReason.Reused,
        CertificateReason.RestoredFromCache,
        CertificateReason.ManualCertificateAccepted,
        CertificateReason.Resealed,
    }
)


def settled(status: CertificateStatus, generation: int | None, now: datetime) -> bool:
    """Whether a resumed resource may wait for its next recheck (pure)."""
    ready, issuing = status.ready, status.issuing
    return (
        ready is not None
        and ready.status
        and ready.reason in DONE
        and generation is not None
        and ready.observed_generation == generation
        and (issuing is None or not issuing.status)
        and status.failed_issuance_attempts == 0
        and status.serial is not None
        and status.not_after is not None
        and status.renewal_time is not None
        and now < status.renewal_time < status.not_after
    )
