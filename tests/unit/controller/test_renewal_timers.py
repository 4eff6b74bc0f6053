"""The renewal timers (certfleet's own tasks, no kopf daemon and so no finalizer): a due
resource is reconciled as read afresh, a deleted one ends its task, a wake re-reads."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from certfleet.controller.plan import Outcome
from certfleet.controller.renewal_timers import RenewalTimers

NOW = datetime(2030, 6, 1, 12, tzinfo=UTC)


class World:
    def __init__(self) -> None:
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.reconciled: list[Mapping[str, Any]] = []
        self.reads = 0

    def read(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        self.reads += 1
        return self.resources.get((namespace, name))

    def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        self.reconciled.append(body)
        # Renewed: the next renewal is far away.
        body["status"]["renewalTime"] = "2030-09-01T12:00:00Z"
        return Outcome(True, "Renewed", "renewed", renew_at=NOW + timedelta(days=90))


def _timers(world: World) -> RenewalTimers:
    return RenewalTimers(world.read, world.reconcile, lambda: NOW, timedelta(hours=1))


async def _until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition did not come true")


def test_a_due_resource_is_reconciled_as_read_and_a_deleted_one_ends() -> None:
    async def scenario() -> None:
        world = World()
        spec = {"domain": "www.example.com", "generation": 2}
        world.resources[("shop", "web")] = {
            "spec": spec,
            "status": {"renewalTime": "2030-06-01T11:00:00Z"},
        }
        timers = _timers(world)
        timers.bind(asyncio.get_running_loop())
        timers.track("shop", "web")
        await _until(lambda: world.reconciled)
        assert world.reconciled[0]["spec"] is spec, "reconciled what was read, not a copy"
        assert timers.tracked == {("shop", "web")}

        del world.resources[("shop", "web")]
        reads = world.reads
        timers.track("shop", "web")  # a wake: the task reads again and finds it gone
        await _until(lambda: not timers.tracked)
        assert world.reads == reads + 1
        assert len(world.reconciled) == 1
        await timers.stop_all()

    asyncio.run(scenario())


def test_no_renewal_time_yet_is_left_to_the_handlers_and_forget_cancels() -> None:
    async def scenario() -> None:
        world = World()
        world.resources[("shop", "web")] = {"spec": {}, "status": {}}
        timers = _timers(world)
        timers.bind(asyncio.get_running_loop())
        timers.track("shop", "web")
        await _until(lambda: world.reads == 1)
        await asyncio.sleep(0.05)
        assert world.reconciled == []
        timers.forget("shop", "web")
        await _until(lambda: not timers.tracked)
        await timers.stop_all()

    asyncio.run(scenario())


def test_resources_tracked_at_once_have_their_rechecks_spread_over_the_interval() -> None:
    """A restart tracks every resource at once: their first rechecks must not all come one
    interval later (a burst each interval), but each at its own phase, within the interval."""

    async def scenario() -> None:
        world = World()
        keys = [("shop", f"web-{i}") for i in range(100)]
        for key in keys:
            world.resources[key] = {"spec": {}, "status": {"renewalTime": "2030-09-01T12:00:00Z"}}
        timers = _timers(world)
        pauses = []
        for key in keys:
            # What a timer's task does first: its last slot, then a step from it.
            pause, checked = await timers._step(key, timers._last_slot(key))
            assert pause is not None and checked <= NOW
            pauses.append(pause)
        assert world.reconciled == [], "nothing due: no reconciliation at the start"
        assert all(0 < pause <= 3600 for pause in pauses)
        assert max(pauses) - min(pauses) > 3000, "spread over the hour, not one burst"
        assert len(set(pauses)) == len(pauses)

    asyncio.run(scenario())


def test_after_a_recheck_the_next_keeps_the_resources_phase() -> None:
    async def scenario() -> None:
        world = World()
        key = ("shop", "web")
        world.resources[key] = {"spec": {}, "status": {"renewalTime": "2030-09-01T12:00:00Z"}}
        timers = _timers(world)
        slot = timers._last_slot(key)
        # An hour after the slot has passed: a recheck now, and the slot it was is kept (no
        # drift by the reconciliation's own time).
        pause, checked = await timers._step(key, slot - timedelta(hours=1))
        assert len(world.reconciled) == 1
        assert checked == slot
        assert pause == 3600.0

    asyncio.run(scenario())


def test_a_renewal_time_handed_over_needs_no_read_until_the_task_wakes() -> None:
    """After a reconciliation (or a restart that takes the status as it stands) the handler
    knows the renewal time: the new task sleeps on it; a wake reads as before."""

    async def scenario() -> None:
        world = World()
        far, due = {"renewalTime": "2030-09-01T12:00:00Z"}, {"renewalTime": "2030-06-01T11:59:00Z"}
        world.resources[("shop", "web")] = {"spec": {}, "status": far}
        timers = _timers(world)
        timers.bind(asyncio.get_running_loop())
        timers.track("shop", "web", NOW + timedelta(days=90))
        await _until(lambda: timers.tracked == {("shop", "web")})
        await asyncio.sleep(0.05)
        assert (world.reads, world.reconciled) == (0, [])
        timers.track("shop", "web")  # a wake: the task reads now
        await _until(lambda: world.reads == 1)
        assert world.reconciled == []

        # A renewal time already due is no reason to sleep: read (and reconcile) at once.
        world.resources[("shop", "due")] = {"spec": {}, "status": due}
        timers.track("shop", "due", NOW - timedelta(minutes=1))
        await _until(lambda: len(world.reconciled) == 1)
        await timers.stop_all()

    asyncio.run(scenario())
