"""Which ACME server of a resource's list an order goes to (pure), as Caddy tries its issuers:
the first (`spec.acme.server`) while it works, the next after it kept failing.

The count is the resource's consecutive failed issuances (`status.failedIssuanceAttempts`,
reset by every issuance): each server gets `failures_per_server` attempts in a row, through
the usual back-off, then the next one does; after the last, the first again, since a CA that
was down may be back. An issuance resets the count, so the next order starts at the first
server again.
"""

from __future__ import annotations

DEFAULT_FAILURES_PER_SERVER = 2


def server_position(consecutive_failures: int, servers: int, failures_per_server: int) -> int:
    """The position (0: the first server) of the server the next order goes to."""
    _check(servers, failures_per_server)
    return (max(consecutive_failures, 0) // failures_per_server) % servers


def moves_on(consecutive_failures: int, servers: int, failures_per_server: int) -> bool:
    """Whether the next order is the first at its server after failures at the one before
    (the moment to tell people it fell back)."""
    _check(servers, failures_per_server)
    return (
        servers > 1 and consecutive_failures > 0 and consecutive_failures % failures_per_server == 0
    )


def _check(servers: int, failures_per_server: int) -> None:
    if servers < 1 or failures_per_server < 1:
        raise ValueError("need at least one server and one attempt per server")
