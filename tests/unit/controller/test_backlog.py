"""The start's backlog apart: which reconciliations wait their turn, and that one which does not
runs while the backlog's pool is full."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from datetime import timedelta

import pytest

from certfleet.controller.backlog import ReconcilePools, is_backlog
from unit.core.certificates import NOW

BEFORE, AFTER = NOW - timedelta(minutes=5), NOW + timedelta(seconds=3)


def test_resources_resumed_or_created_before_the_start_are_the_backlog() -> None:
    assert is_backlog("resume", AFTER, NOW)  # resumed: it was there at the start
    assert is_backlog("resume", None, NOW)
    assert is_backlog("create", BEFORE, NOW)  # never handled, waiting since before
    assert not is_backlog("create", AFTER, NOW)  # applied since: at once
    assert not is_backlog("create", NOW - timedelta(seconds=1), NOW)  # within the clock slack
    assert not is_backlog("create", None, NOW)  # no timestamp: treated as new
    assert not is_backlog("update", BEFORE, NOW)  # someone's change: never backlog


def test_a_new_resource_runs_while_the_backlog_pool_is_full() -> None:
    pools = ReconcilePools(NOW, fresh_workers=2, backlog_workers=1)
    release = threading.Event()
    request = contextvars.ContextVar[str]("request")

    async def scenario() -> tuple[str, bool]:
        request.set("the handler's")
        blocked = [
            asyncio.ensure_future(pools.run("resume", BEFORE, lambda: release.wait(10)))
            for _ in range(3)
        ]
        fresh = await asyncio.wait_for(pools.run("create", AFTER, request.get), timeout=10)
        waiting = not any(task.done() for task in blocked)
        release.set()
        assert all(await asyncio.gather(*blocked))
        return fresh, waiting

    try:
        fresh, backlog_was_waiting = asyncio.run(scenario())
    finally:
        release.set()
        pools.shutdown()
    assert fresh == "the handler's"  # run with the caller's context
    assert backlog_was_waiting


def test_shutdown_drops_what_still_waits() -> None:
    pools = ReconcilePools(NOW, fresh_workers=1, backlog_workers=1)
    started, release = threading.Event(), threading.Event()

    def first() -> bool:
        started.set()
        return release.wait(10)

    running = pools.backlog.submit(first)
    queued = pools.backlog.submit(lambda: "never")
    assert started.wait(10)
    pools.shutdown()
    release.set()
    assert running.result(timeout=10) is True
    assert queued.cancelled()
    with pytest.raises(RuntimeError):
        pools.backlog.submit(lambda: "after")
