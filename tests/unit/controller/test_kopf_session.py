"""kopf's session to the API server: the credentials kopf finds, at most KOPF_CONNECTIONS
connections."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest

from certfleet.controller.kopf_session import KOPF_CONNECTIONS, bounded_session

FOUND = kopf.ConnectionInfo(
    server="https://api.cluster.test:6443", scheme="Bearer", token="t0ken", default_namespace="ops"
)


def test_the_session_carries_kopfs_credentials_with_bounded_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kopf, "login_via_client", lambda **_: FOUND)

    async def scenario() -> None:
        made = await bounded_session(logger=None)
        assert isinstance(made, kopf.AiohttpSession)
        try:
            assert (made.server, made.default_namespace) == (FOUND.server, "ops")
            assert made.aiohttp_session.connector is not None
            assert made.aiohttp_session.connector.limit == KOPF_CONNECTIONS > 0
            assert made.aiohttp_session.headers["Authorization"] == "Bearer t0ken"
        finally:
            await made.aiohttp_session.close()

    asyncio.run(scenario())


def test_no_credentials_found_is_no_session(monkeypatch: pytest.MonkeyPatch) -> None:
    def nothing(**_: Any) -> None:
        return None

    monkeypatch.setattr(kopf, "login_via_client", nothing)
    assert asyncio.run(bounded_session(logger=None)) is None
