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
