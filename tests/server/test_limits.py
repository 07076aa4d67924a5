"""Limits and bad data: slow consumers, rate limits, sizes, binary and invalid UTF-8."""

from __future__ import annotations

import asyncio
import json
from typing import cast

import aiohttp
import pytest

from tests.conftest import Connect, LiveServer, ServerFactory
from tests.support.rawws import client_frame, open_raw, read_close_code
from tests.support.waits import until
from wsops.server.core.hub import Conn


async def test_slow_consumer_is_closed_with_4000_and_memory_stays_bounded(
    server_factory: ServerFactory, connect: Connect
) -> None:
    limit = 256 * 1024
    server = await server_factory(send_queue_bytes=limit, max_message_size=64 * 1024)
    _reader, writer, status = await open_raw(server.port, rcvbuf=4096)
    assert status == 101
    writer.write(client_frame(b'{"op":"subscribe","room":"firehose","id":1}'))
    await writer.drain()
    fast = await connect(server.url)
    await fast.call("subscribe", "firehose")
    pub = await connect(server.url)
    local = writer.get_extra_info("sockname")

    def slow_subscribed() -> Conn | None:
        return next((c for c in server.node.hub.conns.values()
                     if cast(asyncio.Transport, c.transport).get_extra_info("peername") == local
                     and "firehose" in c.rooms),
                    None)

    slow_conn: Conn = await until(slow_subscribed, what="the slow reader's subscription")
    blob = "x" * 60_000
    peak = 0
    for i in range(120):
        await pub.call("publish", "firehose", data={"i": i, "blob": blob})
        if not slow_conn.closing:
            peak = max(peak, slow_conn.queued_bytes)
    assert slow_conn.closing and slow_conn.close_code == 4000
    assert server.node.hub.stats.slow_consumers == 1
    # Bounded: never more than the limit plus one message in flight.
    assert peak <= limit + 64 * 1024
    got = await fast.messages(120, timeout=10)
    assert [m["data"]["i"] for m in got] == list(range(120))
    writer.close()


async def test_rate_limit_refuses_then_closes_a_flooder(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory(rate_limit=5.0, rate_burst=5, rate_limit_strikes=10)
    c = await connect(server.url)
    other = await connect(server.url)
    for i in range(8):
        await c.send_raw(json.dumps({"op": "publish", "room": "r", "id": i, "data": i}))
    replies = [await c.next_event() for _ in range(8)]
    assert [r["ok"] for r in replies].count(True) == 5
    assert {r["error"]["code"] for r in replies if not r["ok"]} == {"rate_limited"}
    for i in range(20):
        await c.send_raw(json.dumps({"op": "publish", "room": "r", "id": 100 + i, "data": i}))
    assert await c.wait_closed() == 1008
    assert (await other.call("history", "r"))["offset"] <= 6


async def test_max_connections_refuses_with_503(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory(max_connections=3)
    for _ in range(3):
        await connect(server.url)
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await connect(server.url)
    assert info.value.status == 503
    assert server.node.handshake_failures["full"] == 1


async def test_max_rooms_per_connection(server_factory: ServerFactory, connect: Connect) -> None:
    server = await server_factory(max_rooms_per_connection=2)
    c = await connect(server.url)
    assert (await c.call("subscribe", "a"))["ok"]
    assert (await c.call("subscribe", "b"))["ok"]
    assert (await c.call("subscribe", "c"))["error"]["code"] == "too_many_rooms"
    await c.call("unsubscribe", "a")
    assert (await c.call("subscribe", "c"))["ok"]


async def test_oversize_frame_closes_with_1009_and_others_go_on(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory(max_message_size=1024)
    c = await connect(server.url)
    other = await connect(server.url)
    await c.send_raw(json.dumps({"op": "publish", "room": "r", "id": 1, "data": "x" * 2000}))
    assert await c.wait_closed() == 1009
    assert (await other.call("publish", "r", data="ok"))["ok"]
    assert (await other.call("history", "r"))["offset"] == 1


async def test_binary_frame_closes_with_1003(server: LiveServer, connect: Connect) -> None:
    c = await connect(server.url)
    await c.ws.send_bytes(b'{"op":"publish"}')
    assert await c.wait_closed() == 1003


async def test_invalid_utf8_closes_with_1007(server_factory: ServerFactory) -> None:
    server = await server_factory()
    reader, writer, status = await open_raw(server.port)
    assert status == 101
    writer.write(client_frame(b'{"op":"\xff\xfe"}'))
    assert await read_close_code(reader) == 1007
    writer.close()


async def test_a_resume_bigger_than_the_send_queue_is_replayed_not_disconnected(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory(send_queue_bytes=64 * 1024, rate_limit=10_000, rate_burst=1000)
    pub = await connect(server.url)
    first = await pub.call("subscribe", "big")
    blob = "y" * 8000
    for i in range(60):  # ~480 KB of history, 7x the send queue
        await pub.call("publish", "big", data={"i": i, "blob": blob})
    sub = await connect(server.url)
    rep = await sub.call("subscribe", "big", since={"offset": 0, "epoch": first["epoch"]})
    assert rep["recovered"] is True
    got = await sub.messages(60, timeout=10)
    assert [m["data"]["i"] for m in got] == list(range(60))
    assert server.node.hub.stats.slow_consumers == 0
    hist = await sub.call("history", "big", limit=1000)
    assert hist["truncated"] is True
    assert 0 < len(hist["messages"]) < 60
    assert hist["messages"][-1]["data"]["i"] == 59
