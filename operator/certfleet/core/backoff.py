"""How long to wait before the next issuance attempt after failures. Pure.

Exponential with a cap, so a CA outage costs a handful of requests an hour, not thousands; a
CA's own Retry-After (rate limits) is honoured when it asks for longer.
"""

from __future__ import annotations

DEFAULT_BASE_SECONDS = 30.0
DEFAULT_CAP_SECONDS = 6 * 3600.0


def retry_delay(
    consecutive_failures: int,
    *,
    base_seconds: float = DEFAULT_BASE_SECONDS,
    cap_seconds: float = DEFAULT_CAP_SECONDS,
    retry_after_seconds: float | None = None,
) -> float:
    """Seconds until the next attempt, after `consecutive_failures` failures in a row (>= 1).

    base, 2*base, 4*base ... up to cap; never shorter than what the CA asked for.
    """
    if consecutive_failures < 1:
        raise ValueError("retry_delay is for after a failure: consecutive_failures >= 1")
    if base_seconds <= 0 or cap_seconds < base_seconds:
        raise ValueError("need 0 < base_seconds <= cap_seconds")
    # Exponent bounded so huge failure counts cannot overflow a float.
    delay = min(cap_seconds, base_seconds * 2.0 ** min(consecutive_failures - 1, 64))
    if retry_after_seconds is not None and retry_after_seconds > delay:
        return float(retry_after_seconds)
    return delay
