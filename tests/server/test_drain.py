"""Graceful drain and heartbeats on a live server, and SIGTERM on a real ``wsops serve``."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import aiohttp
import pytest

from tests.conftest import Connect, ServerFactory
from tests.support.procs import start_serve
from tests.support.rawws import client_frame, open_raw, read_frame
from tests.support.scrape import scrape
from tests.support.waits import until
from wsops.client import Client


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


async def test_a_publish_read_just_before_a_drain_is_stored_only_if_it_is_acknowledged(
    server_factory: ServerFactory, connect: Connect
) -> None:
    """The drain's close lands between the read of a publish and the start of its serving
    (the drainer's step already queued in that loop turn; every read does this on Python
    3.11, whose tasks start on the next turn): the publish is either served and answered
    before the close frame, or not served at all. Stored without its answer, the client (which
    resends what was not answered after reconnecting) would store it twice."""
    server = await server_factory(rate_limit=10_000, rate_burst=10_000)
    ep = server.node.endpoint
    serve = ep.run
    drained: list[bool] = []

    def run_then_drain(coro: Any) -> None:
        serve(coro)
        if not drained and coro.__qualname__ == "WsConn._serve":
            drained.append(True)
            for conn in list(server.node.hub.conns.values()):
                conn.close(1012, "draining")  # what the drainer's batch does

    ep.run = run_then_drain  # type: ignore[method-assign]
    reader, writer, status = await open_raw(server.port)
    assert status == 101
    writer.write(client_frame(b'{"op":"publish","room":"d","id":1,"data":1}'))
    answered = 0
    while True:
        op, payload = await read_frame(reader)
        if op == 0x8:
            assert payload[:2] == (1012).to_bytes(2, "big")
            break
        answered += b'"id":1' in payload
    writer.close()
    ep.run = serve  # type: ignore[method-assign]
    assert drained
    other = await connect(server.url)
    stored = (await other.call("publish", "d", data=2))["offset"] - 1
    assert stored == answered, f"{stored} stored, {answered} answered"


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
        assert "drain finished in" in out and "12 closed, 0 forced" in out
        assert "drained; exiting" in out
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


async def _refused_while_draining(admin_url: str) -> float:
    return (await scrape(admin_url)).get("wsops_handshake_failures_total", reason="draining")


async def _attempts_after_a_drain(spread: float, clients: int,
                                  watch: float) -> list[tuple[float, float]]:
    """Drain a real node of ``clients`` wsops clients with ``--drain-spread spread`` and return,
    every ~0.1 s for ``watch`` seconds, (seconds since the drain, reconnect attempts it has
    refused since): the node stays draining, so each attempt is one refusal, and its 503 says
    Retry-After 5, so no client tries twice within ``watch``."""
    sp = await asyncio.to_thread(
        start_serve, "--allow-anonymous", "--max-connections", str(clients + 100),
        "--drain-batch", str(clients), "--drain-interval", "0", "--drain-spread", str(spread))
    opened: list[Client] = []
    try:
        for start in range(0, clients, 250):
            chunk = [Client(sp.url) for _ in range(min(250, clients - start))]
            opened += chunk
            await asyncio.gather(*(c.connect(timeout=60) for c in chunk))
        async with aiohttp.ClientSession() as s, s.post(sp.admin_url + "/admin/drain") as r:
            assert r.status == 202
        loop = asyncio.get_running_loop()
        began = loop.time()
        counts: list[tuple[float, float]] = []
        while loop.time() - began < watch and (not counts or counts[-1][1] < clients):
            await asyncio.sleep(0.05)
            counts.append((loop.time() - began, await _refused_while_draining(sp.admin_url)))
        assert all(c.close_codes[:1] == [1012] for c in opened)
        return counts
    finally:
        await asyncio.gather(*(c.close() for c in opened), return_exceptions=True)
        sp.stop()


@pytest.mark.slow
async def test_a_drains_reconnect_hint_spreads_1000_clients_over_its_window() -> None:
    """Without a hint the clients of a drained node all try again within their first backoff
    (0-0.2 s), as fast as the node can refuse them; with ``--drain-spread 4`` they come back
    over 4 s, about a quarter in each second. (1,000 clients: with 2,000 in this one process,
    reading the closes and refusals took 3.4 s under a CI run's load, past the burst's bound.)"""
    n = 1000
    burst = await _attempts_after_a_drain(0.0, n, watch=4.5)
    spread = await _attempts_after_a_drain(4.0, n, watch=4.8)

    def by(counts: list[tuple[float, float]], seconds: float) -> float:
        """Attempts in the first ``seconds`` (the last sample taken by then)."""
        return max((k for t, k in counts if t <= seconds), default=0.0)

    def reached(counts: list[tuple[float, float]], share: float) -> float:
        """When ``share`` of the clients had tried (the first sample that saw it)."""
        return min((t for t, k in counts if k >= share * n), default=float("inf"))

    per_second = [by(spread, s + 1) - (by(spread, s) if s else 0) for s in range(4)]
    shown = [(round(t, 2), int(k)) for t, k in burst if t <= reached(burst, 0.97) + 0.01]
    print(f"\nreconnect attempts (s, refused so far), no hint: {shown}; hint of 4 s: "
          f"{[round(x) for x in per_second]} per second, {by(spread, 4.8):.0f} in 4.8 s")
    # The burst: all within the first backoff and the node's time to refuse them (the sample
    # that sees it waits behind those refusals too).
    assert reached(burst, 0.97) <= 3.0, burst
    assert reached(spread, 0.97) >= 3.5, spread  # with the hint: spread over the window
    assert by(spread, 2.0) <= 0.6 * n
    assert by(spread, 4.8) >= 0.97 * n
    for second in per_second:  # about a quarter in each second of the window (the first one
        # a little less: 2,000 closes take this process a while to read)
        assert 0.08 * n <= second <= 0.4 * n, per_second
