"""The backlog at start, and the resources that must not wait behind it.

When the operator starts, kopf hands every existing resource to the handlers at once: resumed,
or created if no operator handled it yet. In one pool of threads a resource created or changed
meanwhile would wait behind all of them (minutes, at thousands). So the resources that existed
before this operator started queue in a pool of their own; the others run in kopf's pool at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TypeVar

# kopf's pool: sync handlers run in kopf's thread pool (min(32, CPUs + 4) by default: 6 on 2
# cores); reconciliations wait on S3 and the CA, not the CPU, so allow more of them at once.
FRESH_WORKERS = 32
# The backlog's reconciliations at once. Together they are bound by the operator's one core
# (the GIL), not by S3 or the API server: more threads add no speed, only wait for the GIL,
# and a fresh resource's thread would wait behind them.
BACKLOG_WORKERS = 12
# creationTimestamp has whole seconds, and two machines' clocks differ a little: a resource
# made this shortly before the start counts as new (one more at once does no harm).
CLOCK_SLACK = timedelta(seconds=2)

T = TypeVar("T")


def is_backlog(reason: str, created: datetime | None, started: datetime) -> bool:
    """Whether a reconciliation waits its turn: a resource resumed at start, or created
    before it. A change (kopf's "update") is someone's action now: never backlog."""
    if reason == "update":
        return False
    if reason == "resume":
        return True
    return created is not None and created < started - CLOCK_SLACK


class ReconcilePools:
    """kopf's pool (`fresh`, also kopf's executor for sync handlers) and the backlog's."""

    def __init__(self, started: datetime, fresh_workers: int, backlog_workers: int) -> None:
        self.started = started
        self.fresh = ThreadPoolExecutor(fresh_workers, thread_name_prefix="reconcile")
        self.backlog = ThreadPoolExecutor(backlog_workers, thread_name_prefix="backlog")

    async def run(self, reason: str, created: datetime | None, work: Callable[[], T]) -> T:
        """`work` in its pool, with the caller's context (kopf's logger posts events from it,
        as kopf does for its own sync handlers)."""
        pool = self.backlog if is_backlog(reason, created, self.started) else self.fresh
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, functools.partial(context.run, work))

    def shutdown(self) -> None:
        """Drops what still waits, so the process can exit (running work ends by itself)."""
        for pool in (self.backlog, self.fresh):
            pool.shutdown(wait=False, cancel_futures=True)
