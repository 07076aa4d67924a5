"""Fixtures for the Redis broker: a private redis-server and nodes that use it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tests.conftest import LiveServer, ServerFactory
from tests.server.broker.redisproc import RedisProc

# Short beats and timeouts keep fault tests quick: a node is dead 1.5 s after its last beat,
# a silent pub/sub link after 1.5 s.
BEAT = 0.5
TIMEOUT = 1.0


def broker_url(proc: RedisProc) -> str:
    return f"{proc.url}?heartbeat={BEAT}&timeout={TIMEOUT}"


NodeFactory = Callable[..., Awaitable[LiveServer]]


@pytest.fixture
def node_factory(redis_proc: RedisProc, server_factory: ServerFactory) -> NodeFactory:
    """Start a node on the test's Redis (``Settings`` overrides as keywords)."""

    async def start(**overrides: Any) -> LiveServer:
        return await server_factory(broker=broker_url(redis_proc), **overrides)

    return start


async def wait_until(cond: Callable[[], bool], within: float = 10.0, step: float = 0.02) -> float:
    """Poll ``cond`` until true; returns the seconds it took (fails the test after ``within``)."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > within:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(step)
    return time.monotonic() - start


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
