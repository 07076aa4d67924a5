"""Graceful drain and heartbeats on a live server, and SIGTERM on a real ``wsops serve``."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from tests.conftest import Connect, ServerFactory
from tests.support.procs import start_serve
from tests.support.rawws import open_raw
from tests.support.waits import until


async def _readyz(admin_url: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(admin_url + "/readyz") as r:
        return r.status


async def test_drain_closes_everyone_with_1012_in_batches_while_readiness_is_503(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory()
    clients = [await connect(server.url) for _ in range(30)]
    for c in clients:
        await c.call("subscribe", "room")
    assert await _readyz(server.admin_url) == 200
    started = time.monotonic()
    task = server.node.drain(batch=10, interval=0.2, deadline=10)
    await until(lambda: server.node.drainer.draining, what="the drain to start")
    assert await _readyz(server.admin_url) == 503
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await connect(server.url)
    assert info.value.status == 503
    codes = [await c.wait_closed() for c in clients]
    status = await task
    elapsed = time.monotonic() - started
    assert codes == [1012] * 30
    assert status.state == "drained" and status.closed == 30 and status.batches == 3
    assert status.forced == 0
    assert 0.2 <= elapsed < 5  # two jittered gaps of 0.1-0.3 s (a loaded machine: up to 5)
    assert len(server.node.hub.conns) == 0
    assert server.node.hub.stats.close_codes[1012] == 30
    # Cancel restores readiness and admission.
    assert server.node.drainer.cancel()
    assert await _readyz(server.admin_url) == 200
    again = await connect(server.url)
    assert (await again.call("publish", "room", data=1))["ok"]


async def test_drain_deadline_forces_the_rest(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory()
    for _ in range(6):
        await connect(server.url)
    # batch 1 with a long interval: the deadline comes first.
    status = await server.node.drain(batch=1, interval=5.0, deadline=0.5)
    assert status.state == "drained"
    assert status.closed < 6 and status.closed + status.forced == 6
    await until(lambda: not server.node.hub.conns, what="the forced connections gone")


async def test_heartbeat_closes_a_dead_peer(server_factory: ServerFactory) -> None:
    heartbeat = 0.4
    server = await server_factory(heartbeat=heartbeat)
    started = time.monotonic()
    _reader, writer, status = await open_raw(server.port)  # never answers pings
    assert status == 101
    await until(lambda: len(server.node.hub.conns) == 1, what="the connection registered")
    # Closed once a ping went unanswered: not before the first ping is due, and well within
    # 5 s on a loaded machine (without a heartbeat it is never closed).
    await until(lambda: not server.node.hub.conns, 5.0, "the dead peer closed")
    assert time.monotonic() - started >= heartbeat
    assert server.node.hub.stats.close_codes == {1006: 1}
    writer.close()


async def test_sigterm_drains_a_real_wsops_serve_process(connect: Connect) -> None:
    sp = await asyncio.to_thread(
        start_serve, "--allow-anonymous", "--drain-batch", "5", "--drain-interval", "0.1"
    )
    try:
        clients = [await connect(sp.url) for _ in range(12)]
        for c in clients:
            await c.call("subscribe", "x")
        sp.proc.send_signal(signal.SIGTERM)
        codes = [await c.wait_closed(timeout=10) for c in clients]
        assert codes == [1012] * 12
        assert await asyncio.to_thread(sp.proc.wait, 15) == 0
        out = sp.proc.stdout.read().decode() if sp.proc.stdout else ""
        assert "drained: closed 12, forced 0" in out
    finally:
        sp.stop()


async def test_drain_counts_each_connection_once(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory()
    for _ in range(8):
        await connect(server.url)
    status = await server.node.drain(batch=3, interval=2.0, deadline=0.3)
    assert status.closed + status.forced == 8
    assert status.forced >= 5
