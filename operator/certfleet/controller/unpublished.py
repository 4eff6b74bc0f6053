"""Which cached certificate is not published yet, as the caches keep it.

A certificate is cached before it is published (an order's, a person's), so a process that
dies in between leaves the cache holding one the datastore lacks; a copy of the published
certificate is cached too, after it. The two can have the same notBefore (a renewal in the
second its predecessor was issued), so the cache says which it holds: beside a certificate
that was not the published one it records the revision that was (0: none). While the
datastore still publishes that revision, the cached certificate is the one meant to replace
it. A Secret or a file anyone may have edited is an input: a marker that does not read is
no marker.
"""

from __future__ import annotations

REPLACES_KEY = "replaces-revision"  # the Secret key or file name of the marker
MAX_MARKER_BYTES = 20  # a revision is a decimal integer


def marker(replaces: int | None) -> bytes:
    """What the cache writes: the revision, or nothing for a copy of the published one."""
    return b"" if replaces is None else str(replaces).encode()


def read_marker(data: bytes | None) -> int | None:
    if not data or len(data) > MAX_MARKER_BYTES or not data.isdigit():
        return None
    return int(data)
