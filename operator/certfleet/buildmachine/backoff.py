"""The issuance back-off across cron runs. Pure.

In a cluster, kopf waits the back-off (core.backoff.retry_delay) before it reconciles a
certificate whose order failed again. A build machine is a new process at every cron or timer
run: so the run that failed writes when the next attempt is due into its status file (beside
the status, with a digest of the spec it failed for), and a run before that time places no
order for that certificate: it says so in one line and exits non-zero. A changed spec (a
person fixed the cause) or `--retry-now` ends the wait at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from certfleet.core.clock import parse_rfc3339, rfc3339

ENTRY_KEY = "issuanceBackoff"  # in the status file's entry of a certificate, beside "status"


def spec_digest(raw_spec: Mapping[str, Any]) -> str:
    """The spec as the YAML file gave it, in canonical JSON, hashed."""
    canonical = json.dumps(raw_spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def backoff_entry(
    retry_after_seconds: float, now: datetime, raw_spec: Mapping[str, Any]
) -> dict[str, str]:
    """What a failed issuance leaves for the next run."""
    return {
        "nextAttempt": rfc3339(now + timedelta(seconds=retry_after_seconds)),
        "specSha256": spec_digest(raw_spec),
    }


@dataclass(frozen=True, slots=True)
class HeldBack:
    next_attempt: datetime
    remaining_seconds: float

    def message(self, failures: int) -> str:
        return (
            f"backing off after {failures} failed issuance{'s' * (failures != 1)} in a row: "
            f"next attempt at {rfc3339(self.next_attempt)} (in {self.remaining_seconds:.0f} s); "
            "no order placed (--retry-now to try now)"
        )


def held_back(
    entry: Any, raw_spec: Mapping[str, Any], now: datetime, cap_seconds: float
) -> HeldBack | None:
    """Whether this run must not order: the last run's back-off for the same spec has not
    passed. At most `cap_seconds` from now, whatever the file says (a clock set back, a
    hand-edited file)."""
    if not isinstance(entry, Mapping) or entry.get("specSha256") != spec_digest(raw_spec):
        return None
    next_attempt = parse_rfc3339(entry.get("nextAttempt"))
    if next_attempt is None or next_attempt <= now:
        return None
    next_attempt = min(next_attempt, now + timedelta(seconds=cap_seconds))
    return HeldBack(next_attempt, (next_attempt - now).total_seconds())
