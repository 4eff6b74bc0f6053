"""Which ACME server an order goes to after failures in a row, as a table."""

from __future__ import annotations

import pytest

from certfleet.core.fallback import moves_on, server_position

# (failures in a row, servers, failures per server) -> (position, moves on to it now)
TABLE = [
    (0, 1, 2, 0, False),  # one server: always it
    (5, 1, 2, 0, False),
    (0, 2, 2, 0, False),  # the first server while it has not failed
    (1, 2, 2, 0, False),  # one failure: the back-off retries the same server
    (2, 2, 2, 1, True),  # its second failure: the fallback, and an event says so
    (3, 2, 2, 1, False),
    (4, 2, 2, 0, True),  # the fallback failed twice too: the first again (it may be back)
    (1, 2, 1, 1, True),  # one failure per server
    (2, 3, 1, 2, True),
    (3, 3, 1, 0, True),
    (6, 3, 3, 2, True),
    (-1, 2, 2, 0, False),  # a nonsense count from a status: the first server
]


@pytest.mark.parametrize(("failures", "servers", "per_server", "position", "moves"), TABLE)
def test_the_server_after_failures_in_a_row(
    failures: int, servers: int, per_server: int, position: int, moves: bool
) -> None:
    assert server_position(failures, servers, per_server) == position
    assert moves_on(failures, servers, per_server) is moves


@pytest.mark.parametrize(("servers", "per_server"), [(0, 1), (1, 0)])
def test_no_server_or_no_attempt_is_a_programming_error(servers: int, per_server: int) -> None:
    with pytest.raises(ValueError):
        server_position(0, servers, per_server)
    with pytest.raises(ValueError):
        moves_on(0, servers, per_server)
