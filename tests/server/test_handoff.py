"""After the upgrade aiohttp keeps nothing of a bundled connection (the handoff), and what a
connection then costs. The canary tests fail if aiohttp's handler changes under the handoff."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import tracemalloc
import weakref
from pathlib import Path

import aiohttp
from aiohttp import web_protocol

from tests.conftest import ServerFactory
from tests.support.rawws import UPGRADE, client_frame, open_raw, read_close_code, read_frame
from tests.support.scrape import scrape
from tests.support.waits import until
from wsops.config import Settings
from wsops.server.app import NODE_KEY, running

ROOT = Path(__file__).resolve().parents[2]


def _handlers() -> int:
    gc.collect()
    return sum(isinstance(o, web_protocol.RequestHandler) for o in gc.get_objects())


async def test_aiohttp_lets_go_and_the_bytes_after_the_request_are_served() -> None:
    settings = Settings(host="127.0.0.1", port=0, admin_port=None, allow_anonymous=True)
    async with running(settings) as (app, runner, port):
        tasks = asyncio.all_tasks()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # The upgrade request, a ping and a publish in one packet: the tail aiohttp read with
        # the request reaches the connection.
        writer.write(UPGRADE.encode() + client_frame(b"hb", 0x9)
                     + client_frame(b'{"op":"publish","room":"r","id":7,"data":1}'))
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        assert await read_frame(reader) == (0xA, b"hb")
        op, reply = await read_frame(reader)
        assert op == 0x1 and b'"id":7,"ok":true' in reply
        node = app[NODE_KEY]
        assert len(node.hub.conns) == 1
        assert runner.server is not None and not runner.server.connections
        assert _handlers() == 0
        assert asyncio.all_tasks() - tasks == set(), "an idle connection has no task"
        writer.write(client_frame(b"\x03\xe8", 0x8))  # close 1000
        assert await read_close_code(reader) == 1000
        assert await reader.read() == b""  # and the server hangs up
        await until(lambda: not node.hub.conns and not node.endpoint.sockets,
                    what="the connection forgotten")
        writer.close()


async def test_a_refused_handshake_is_answered_by_aiohttp_and_counted(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory()
    async with aiohttp.ClientSession() as s:
        bad = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "c2hvcnQ="}
        async with s.get(f"http://127.0.0.1:{server.port}/ws", headers=bad) as resp:
            assert resp.status == 400 and "Handshake error" in await resp.text()
        old = {**bad, "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
               "Sec-WebSocket-Version": "8"}
        async with s.get(f"http://127.0.0.1:{server.port}/ws", headers=old) as resp:
            assert resp.status == 400 and resp.headers["Sec-WebSocket-Version"] == "13"
    m = await scrape(server.admin_url)
    assert m.get("wsops_handshake_failures_total", route="/ws", reason="http_400") == 2
    assert m.get("wsops_connections_opened_total", route="/ws") == 0


async def test_open_connections_get_1001_when_the_server_stops() -> None:
    settings = Settings(host="127.0.0.1", port=0, admin_port=None, allow_anonymous=True)
    async with running(settings) as (app, _runner, port):
        clients = [await open_raw(port) for _ in range(3)]
        await until(lambda: len(app[NODE_KEY].hub.conns) == 3, what="three connections")
    for reader, writer, _ in clients:
        assert await read_close_code(reader) == 1001
        writer.close()


async def test_connections_are_freed_by_reference_counting_however_they_end_frozen_or_not(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory()
    node = server.node
    gc.collect()
    gc.disable()  # nothing may need the cyclic collector to be freed
    try:
        clients = [await open_raw(server.port) for _ in range(4)]
        await until(lambda: len(node.endpoint.sockets) == 4, what="four connections")
        conns = list(node.endpoint.sockets.values())
        for _, writer, _ in clients:
            writer.write(client_frame(b'{"op":"subscribe","room":"r","id":1}'))
        await until(lambda: "r" in node.hub.rooms and len(node.hub.rooms["r"].conns) == 4,
                    what="all subscribed")
        alive = [weakref.ref(c) for c in conns]
        del conns
        gc.freeze()  # as wsops serve's GC policy does: frozen state is still freed by refcount
        clients[0][1].write(client_frame(b"\x03\xe8", 0x8))  # a clean close
        clients[1][1].transport.abort()  # a reset
        clients[2][1].write(client_frame(b"\x01", 0x2))  # a binary frame: closed with 1003
        node.hub.conns[max(node.hub.conns)].close(4001, "resync")  # closed by the server
        # The two the server closed are dropped when their (silent) peers miss the 5 s close
        # deadline.
        await until(lambda: not node.endpoint.sockets and not node.hub.rooms, 10.0,
                    what="every connection gone and its room left")
        await until(lambda: all(r() is None for r in alive), what="every WsConn freed")
    finally:
        gc.unfreeze()
        gc.enable()
        for _, writer, _ in clients:
            writer.close()


async def test_an_idle_subscribed_connection_costs_under_5_kib_and_30_tracked_objects() -> None:
    """The budget of the lean core (docs/lean-core-design.md): measured with tracemalloc on
    300 idle connections held by another process; today's figure is ~3 KiB and 22 objects,
    an aiohttp ``WebSocketResponse`` connection ~21 KiB and 120."""
    n = 300
    settings = Settings(host="127.0.0.1", port=0, admin_port=None, allow_anonymous=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    async with running(settings) as (app, _runner, port):
        loop = asyncio.get_running_loop()

        def clients(count: int) -> subprocess.Popen[bytes]:
            return subprocess.Popen([sys.executable, "-m", "tests.support.idleclients",
                                     str(port), str(count), "10"], env=env, cwd=ROOT,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)

        warm = clients(10)  # first-use caches are not the connections' cost
        assert warm.stdout is not None and warm.stdin is not None
        await loop.run_in_executor(None, warm.stdout.readline)
        gc.collect()
        objects = len(gc.get_objects())
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            proc = clients(n)
            assert proc.stdout is not None and proc.stdin is not None
            assert await loop.run_in_executor(None, proc.stdout.readline) == b"ready\n"
            await asyncio.sleep(0.2)
            gc.collect()
            per_conn = (tracemalloc.get_traced_memory()[0] - before) / n
        finally:
            tracemalloc.stop()
        per_conn_objects = (len(gc.get_objects()) - objects) / n
        assert len(app[NODE_KEY].hub.conns) == n + 10
        proc.stdin.close()
        warm.stdin.close()
        proc.wait()
        warm.wait()
    assert per_conn < 5 * 1024, per_conn
    assert per_conn_objects < 30, per_conn_objects


async def test_pipelined_requests_are_served_in_order_and_reading_resumes(
    server_factory: ServerFactory,
) -> None:
    """200 requests in one write: more than wait while one is served (reading pauses at 16),
    every reply comes, in order, then the close handshake completes."""
    server = await server_factory(rate_limit=10_000, rate_burst=10_000)
    reader, writer, status = await open_raw(server.port)
    assert status == 101
    writer.write(b"".join(
        client_frame(b'{"op":"publish","room":"p","id":%d,"data":%d}' % (i, i))
        for i in range(1, 201)))
    ids: list[int] = []
    while len(ids) < 200:
        op, payload = await read_frame(reader)
        assert op == 0x1
        ids.append(int(payload.split(b'"id":')[1].split(b",")[0]))
    assert ids == list(range(1, 201))
    writer.write(client_frame(b"\x03\xe8", 0x8))
    assert await read_close_code(reader) == 1000
    writer.close()
