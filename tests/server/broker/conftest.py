"""Fixtures for the Redis broker: a private redis-server and nodes that use it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tests.conftest import LiveServer, ServerFactory
from tests.support.redisproc import RedisProc, broker_url

NodeFactory = Callable[..., Awaitable[LiveServer]]


@pytest.fixture
def node_factory(redis_proc: RedisProc, server_factory: ServerFactory) -> NodeFactory:
    """Start a node on the test's Redis (``Settings`` overrides as keywords)."""

    async def start(**overrides: Any) -> LiveServer:
        return await server_factory(broker=broker_url(redis_proc), **overrides)

    return start


async def readyz(server: LiveServer) -> int:
    async with aiohttp.ClientSession() as s, s.get(server.admin_url + "/readyz") as r:
        return r.status


async def broker_up(server: LiveServer) -> float:
    async with aiohttp.ClientSession() as s, s.get(server.admin_url + "/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        if line.startswith("wsops_broker_up "):
            return float(line.split()[1])
    raise AssertionError("wsops_broker_up missing from /metrics")
