"""The renewal timers: one asyncio task per ManagedCertificate that reconciles it when its
renewal time comes (or its recheck interval passes).

Not a kopf daemon or timer: kopf puts its finalizer on every resource that has one (to stop it
before the resource goes), so deleting a resource, or its namespace, hangs for as long as no
operator runs. These tasks need no finalizer. The handlers start (or wake) a resource's task
after each of their reconciliations; the task reads the resource afresh from the API server
before it acts, so it never reconciles an old spec; it ends when the resource is gone (a 404,
or its DELETED event) and all of them end at the operator's cleanup.

The arithmetic is the pure ``core.schedule``. Each resource's rechecks come at its own phase
of the interval (``recheck_phase`` of its namespace and name), not one interval after the
operator started: otherwise every resource is rechecked in one burst each interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from certfleet.api.status import CertificateStatus
from certfleet.controller.plan import Outcome
from certfleet.core.clock import Clock
from certfleet.core.schedule import (
    last_recheck_slot,
    recheck_phase,
    seconds_after_reconciliation,
    seconds_until_due,
)

log = logging.getLogger(__name__)

# After a failed read or reconciliation of the timer's own, look again this soon.
RETRY_SECONDS = 30.0

Key = tuple[str, str]  # (namespace, name)
# Reads a ManagedCertificate (None: it is gone); reconciles one (its body as read).
ReadResource = Callable[[str, str], Mapping[str, Any] | None]
ReconcileResource = Callable[[Mapping[str, Any]], Outcome]


class RenewalTimers:
    def __init__(
        self,
        read: ReadResource,
        reconcile: ReconcileResource,
        clock: Clock,
        recheck: timedelta,
    ) -> None:
        self._read = read
        self._reconcile = reconcile
        self._clock = clock
        self._recheck = recheck
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._wakes: dict[Key, asyncio.Event] = {}

    # -- from kopf's handlers -----------------------------------------------------------

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the tasks run on (kopf's), from a startup handler."""
        self._loop = loop

    def track(self, namespace: str, name: str, due: datetime | None = None) -> None:
        """After a handler's reconciliation (any thread): start the resource's task, or wake
        it so that it reads the new renewal time. `due`: the renewal time the handler just
        wrote or read, so that a new task's first pause needs no read of its own."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._track, (namespace, name), due)

    def forget(self, namespace: str, name: str) -> None:
        """The resource was deleted (in the event loop)."""
        task = self._tasks.pop((namespace, name), None)
        self._wakes.pop((namespace, name), None)
        if task is not None:
            task.cancel()

    async def stop_all(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        self._wakes.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def tracked(self) -> set[Key]:
        return {key for key, task in self._tasks.items() if not task.done()}

    # -- the tasks ----------------------------------------------------------------------

    def _track(self, key: Key, due: datetime | None) -> None:
        task = self._tasks.get(key)
        if task is not None and not task.done():
            self._wakes[key].set()
            return
        self._wakes[key] = asyncio.Event()
        self._tasks[key] = asyncio.get_running_loop().create_task(
            self._run(key, due), name=f"renewal timer {key[0]}/{key[1]}"
        )

    def _last_slot(self, key: Key) -> datetime:
        """The resource's latest recheck slot: its rechecks keep one phase of the interval."""
        phase = recheck_phase(f"{key[0]}/{key[1]}", self._recheck)
        return last_recheck_slot(self._clock(), phase, self._recheck)

    async def _run(self, key: Key, due: datetime | None) -> None:
        wake = self._wakes[key]
        checked = self._last_slot(key)
        # A renewal time handed over: sleep first (if it is not due), read when waking up.
        handed = seconds_until_due(self._clock(), due, checked, self._recheck) if due else None
        try:
            while True:
                pause: float | None
                if handed is not None:
                    pause, handed = handed, None
                else:
                    wake.clear()
                    pause, checked = await self._guarded_step(key, checked)
                if pause is None:
                    return  # deleted
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=pause)
        finally:
            if self._tasks.get(key) is asyncio.current_task():
                self._tasks.pop(key, None)
                self._wakes.pop(key, None)

    async def _guarded_step(self, key: Key, checked: datetime) -> tuple[float | None, datetime]:
        try:
            return await self._step(key, checked)
        except Exception as error:  # the API server away, or a bug: never end silently
            log.warning(
                "renewal timer of %s/%s: %s; trying again in %.0f s", *key, error, RETRY_SECONDS
            )
            return RETRY_SECONDS, checked

    async def _step(self, key: Key, checked: datetime) -> tuple[float | None, datetime]:
        """Reconcile if due; how long to sleep then (None: the resource is gone)."""
        body = await asyncio.to_thread(self._read, *key)
        if body is None:
            return None, checked
        due = CertificateStatus.from_dict(body.get("status") or {}).renewal_time
        if due is None:
            # Not reconciled well yet: the handlers (and their retries) own it; they wake
            # this task once a renewal time is written.
            return self._recheck.total_seconds(), checked
        pause = seconds_until_due(self._clock(), due, checked, self._recheck)
        if pause is not None:
            return pause, checked
        outcome = await asyncio.to_thread(self._reconcile, body)
        now = self._clock()
        return (
            seconds_after_reconciliation(now, outcome.retry_after, outcome.renew_at, self._recheck),
            self._last_slot(key),
        )
