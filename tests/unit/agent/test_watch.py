"""The watch hint: wakes the agent when the ManagedCertificate names a new serial or revision."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from certfleet.agent.watch import CertificateWatch


def event(kind: str, serial: str | None, revision: int | None, **status: Any) -> dict[str, Any]:
    found: dict[str, Any] = dict(status)
    if serial is not None:
        found["serialNumber"] = serial
    if revision is not None:
        found["datastore"] = {"uri": "s3://b/p/", "revision": revision}
    return {"type": kind, "object": {"metadata": {"name": "web"}, "status": found}}


def run_until_drained(
    streams: list[Iterable[Mapping[str, Any]] | Exception],
) -> tuple[CertificateWatch, int]:
    """Runs a watch over the given streams (an exception stands for a broken watch)."""
    calls = 0
    wakes = threading.Event()
    drained = threading.Event()
    remaining = list(streams)

    def stream() -> Iterator[Mapping[str, Any]]:
        if not remaining:
            drained.set()
            threading.Event().wait(10)  # a quiet watch; the thread is a daemon
            return
        current = remaining.pop(0)
        if isinstance(current, Exception):
            raise current
        yield from current

    def on_change() -> None:
        nonlocal calls
        calls += 1
        wakes.set()

    watch = CertificateWatch(stream, on_change, retry_seconds=0.01)
    watch.start()
    assert drained.wait(5), "the watch did not consume every stream"
    watch.stop()
    return watch, calls


def test_a_new_serial_or_revision_wakes_the_agent_and_reports_do_not() -> None:
    watch, calls = run_until_drained(
        [
            [
                event("ADDED", "0a", 1),
                # Agents' own reports change the status, not the mark.
                event("MODIFIED", "0a", 1, fleet={"nodes": {"a": {"servedSerial": "0a"}}}),
                event("MODIFIED", "0b", 2),
                event("MODIFIED", "0b", 2, conditions=[]),
                event("MODIFIED", "0b", 3),  # a republished revision of the same serial
            ]
        ]
    )
    assert calls == 2 and watch.changes == 2
    assert watch.ready.is_set()


def test_the_first_sight_is_no_change_and_deletions_are_ignored() -> None:
    _, calls = run_until_drained([[event("ADDED", None, None), event("DELETED", "0c", 4)]])
    assert calls == 0


def test_a_broken_watch_is_reopened_and_keeps_its_memory() -> None:
    _, calls = run_until_drained(
        [
            [event("ADDED", "0a", 1)],
            ConnectionResetError("the API server went away"),
            [event("ADDED", "0a", 1), event("MODIFIED", "0b", 2)],
            [{"type": "ERROR", "object": {"code": 410}}, {"type": "MODIFIED", "object": "junk"}],
        ]
    )
    assert calls == 1
