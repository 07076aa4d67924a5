"""Hostile clients against the node's memory budget (issue #14): amplifying publishes, history
reads of large entries, a resume that never reads, non-finite numbers, and the history TTL of a
subscribed room. Each attack runs beside a well-behaved bystander that must lose nothing; figures
go to tests/artifacts/memory-*.json and RELIABILITY.md ("Memory budget")."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any, cast

import psutil  # type: ignore[import-untyped]
import pytest

from tests.conftest import Connect, ServerFactory
from tests.reliability.bystander import Bystander
from tests.support.artifacts import record
from tests.support.procs import start_serve
from tests.support.rawws import client_frame, open_raw, read_frame
from tests.support.redisproc import RedisProc, broker_url
from tests.support.waits import until
from tests.support.wsclient import RawClient
from wsops.server.broker.redis import RedisBroker
from wsops.server.core.protocol import Position

# 63 KB of JSON that decodes to ~1.6 MB of Python objects: the amplifying payload.
AMPLIFYING = "[" + ",".join(["{}"] * 21_000) + "]"
BIG = json.dumps("x" * 63_000).encode()  # 63 KB of data for history entries


@pytest.mark.slow
async def test_amplifying_publishes_stay_within_the_history_budget() -> None:
    budget = int(os.environ.get("WSOPS_TEST_HISTORY_MEMORY", str(64 << 20)))
    conns, per_conn, rooms = 8, int(os.environ.get("WSOPS_TEST_AMPLIFY_PER_CONN", "300")), 40
    sp = await asyncio.to_thread(start_serve, "--allow-anonymous", "--history-memory",
                                 str(budget))
    proc = psutil.Process(sp.proc.pid)
    try:
        url = f"ws://127.0.0.1:{sp.port}/ws"
        by = await Bystander.start(url)
        before = proc.memory_info().rss
        peak = before
        attackers = [await RawClient.connect(url) for _ in range(conns)]

        async def attack(i: int, client: RawClient) -> int:
            ok = 0
            for n in range(per_conn):
                # At the rate limit (100/s after a burst of 200): nothing is refused.
                if n >= 200:
                    await asyncio.sleep(0.0105)
                req_id = next(client.ids)
                reply = asyncio.ensure_future(_reply(client, req_id))
                await client.send_raw(f'{{"op":"publish","room":"amp-{i}-{n % rooms}",'
                                      f'"id":{req_id},"data":{AMPLIFYING}}}')
                rep = await asyncio.wait_for(reply, 30)
                assert rep["ok"], rep
                ok += 1
            return ok

        async def watch_rss() -> None:
            nonlocal peak
            while True:
                peak = max(peak, proc.memory_info().rss)
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch_rss())
        started = time.monotonic()
        accepted = sum(await asyncio.gather(*(attack(i, c) for i, c in enumerate(attackers))))
        took = time.monotonic() - started
        watcher.cancel()
        peak = max(peak, proc.memory_info().rss)
        for c in attackers:
            await c.close()
        stats = await _stats(sp.admin_url)
        figures = await by.stop()
    finally:
        sp.stop()
    offered = accepted * (len(AMPLIFYING) + 60)
    growth = peak - before
    history = stats["broker"]
    record("memory-amplifying.json", {
        **figures, "accepted": accepted, "offered_mb": round(offered / 2**20, 1),
        "seconds": round(took, 1), "history_memory_mb": budget / 2**20,
        "rss_before_mb": round(before / 2**20, 1), "rss_peak_mb": round(peak / 2**20, 1),
        "rss_growth_mb": round(growth / 2**20, 1),
        "history_bytes_mb": round(history["history_bytes"] / 2**20, 1),
        "history_entries": history["history_entries"],
        "history_evicted": history["history_evicted"],
    })
    assert accepted == conns * per_conn
    assert offered > 2 * budget  # the attack offered more than the budget holds
    assert history["history_bytes"] <= budget and history["history_evicted"] > 0
    # What stays is the budget (frames, not decoded data) plus the allocator's slack; before
    # the budget, 1,200 such publishes grew the node by 1.9 GB.
    assert growth < budget * 1.5 + (48 << 20), figures


async def _stats(admin_url: str) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(admin_url + "/admin/stats") as r:
        body: dict[str, Any] = await r.json()
        return body


async def _fill(server: Any, room: str, n: int, data: bytes) -> None:
    for _ in range(n):
        await server.node.broker.publish(room, data)


async def _history_attack(server: Any, connect: Connect, name: str) -> None:
    await _fill(server, "big", 1000, BIG)
    by = await Bystander.start(server.url)
    attackers = [await connect(server.url) for _ in range(4)]
    sizes: list[int] = []

    async def attack(client: RawClient) -> None:
        for _ in range(10):
            rep = await client.call("history", "big", limit=1000, timeout=30)
            assert rep["ok"] and rep["truncated"] is True, {k: rep[k] for k in rep if
                                                             k != "messages"}
            msgs = rep["messages"]
            assert [m["offset"] for m in msgs] == list(range(1001 - len(msgs), 1001))
            assert all(m["data"] == "x" * 63_000 and isinstance(m["ts"], int) for m in msgs)
            sizes.append(len(json.dumps(rep)))

    started = time.monotonic()
    await asyncio.gather(*(attack(c) for c in attackers))
    took = time.monotonic() - started
    figures = await by.stop()
    record(f"memory-history-{name}.json", {
        **figures, "requests": len(sizes), "largest_reply_kb": round(max(sizes) / 1024, 1),
        "seconds": round(took, 2)})
    assert max(sizes) <= server.settings.send_queue_bytes // 2 + 4096
    assert figures["bystander_worst_rtt_ms"] < 250, figures


@pytest.mark.slow
async def test_history_of_large_entries_keeps_bystanders_fast_memory(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory(history_room_bytes=128 << 20, history_memory=256 << 20)
    await _history_attack(server, connect, "memory")


@pytest.mark.slow
async def test_history_of_large_entries_keeps_bystanders_fast_redis(
    server_factory: ServerFactory, connect: Connect, redis_proc: RedisProc
) -> None:
    server = await server_factory(broker=broker_url(redis_proc))
    await _history_attack(server, connect, "redis")


async def test_a_resume_that_never_reads_is_bounded_by_its_send_queue(
    server_factory: ServerFactory, connect: Connect
) -> None:
    limit = 256 << 10
    server = await server_factory(send_queue_bytes=limit, history_room_bytes=64 << 20)
    hub = server.node.hub
    await _fill(server, "busy", 400, BIG)  # 25 MB to replay: more than the sockets buffer
    position = (await server.node.broker.recover("busy", None)).position
    member = await connect(server.url)
    assert (await member.call("subscribe", "busy"))["ok"]
    by = await Bystander.start(server.url)
    # The resuming client: a tiny receive buffer, and it never reads.
    known = set(hub.conns)
    _reader, writer, status = await open_raw(server.port, rcvbuf=4096)
    assert status == 101
    writer.write(client_frame(json.dumps({"op": "subscribe", "room": "busy", "id": 1, "since": {
        "offset": 0, "epoch": position.epoch}}).encode()))
    await until(lambda: any(c.rooms for i, c in hub.conns.items() if i not in known),
                10.0, what="the resume started")
    [resumer] = [c for i, c in hub.conns.items() if i not in known]
    slow_before = hub.stats.slow_consumers
    publisher = await connect(server.url)
    held_peak, sent = 0, 0
    started = time.monotonic()
    while not resumer.closing and time.monotonic() - started < 20:
        sent += 1
        rep = await publisher.call("publish", "busy", data={"n": sent, "pad": "p" * 8000})
        assert rep["ok"], rep
        held_peak = max(held_peak, resumer.held_bytes)
        await asyncio.sleep(0.01)
    took = time.monotonic() - started
    assert resumer.closing, "the resume was not cut"
    assert hub.stats.slow_consumers == slow_before + 1
    assert resumer.held_bytes == 0  # released at once; the close handshake may take longer
    await until(lambda: resumer.id not in hub.conns, 10.0, what="the connection gone")
    assert held_peak <= limit
    # The well-behaved member got every live message, in order.
    got = await member.messages(sent, timeout=10)
    assert [m["data"]["n"] for m in got] == list(range(1, sent + 1))
    figures = await by.stop()
    writer.close()
    record("memory-replay.json", {**figures, "send_queue_bytes": limit, "held_peak": held_peak,
                                  "cut_after_s": round(took, 2), "live_published": sent})
    assert took < 5  # before the bound: held until the replay's 30 s patience ran out


async def test_non_finite_numbers_are_refused_and_never_stored_or_relayed(
    server: Any, connect: Connect
) -> None:
    sub = await connect(server.url)
    pub = await connect(server.url)
    assert (await sub.call("subscribe", "nan"))["ok"]
    for i, bad in enumerate(["NaN", "[1,Infinity]", '{"x":-Infinity}'], start=100):
        await pub.send_raw(f'{{"op":"publish","room":"nan","id":{i},"data":{bad}}}')
        rep = await asyncio.wait_for(_reply(pub, i), 5)
        assert rep["ok"] is False and rep["error"]["code"] == "bad_request", rep
        assert "non-finite" in rep["error"]["message"]
    rep = await pub.call("publish", "nan", data=1)
    assert rep["ok"] and rep["offset"] == 1  # nothing took an offset before
    [msg] = await sub.messages(1)
    assert msg["data"] == 1 and msg["offset"] == 1
    hist = await pub.call("history", "nan")
    assert [m["data"] for m in hist["messages"]] == [1]


async def _reply(client: RawClient, req_id: int) -> dict[str, Any]:
    fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    client.replies[req_id] = fut
    return await fut


async def test_history_ttl_holds_while_the_room_is_subscribed(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory(history_ttl=0.5)
    sub = await connect(server.url)
    assert (await sub.call("subscribe", "kept"))["ok"]
    for i in range(3):
        assert (await sub.call("publish", "kept", data=i))["ok"]
    assert len((await sub.call("history", "kept"))["messages"]) == 3
    broker = server.node.broker
    # The node's sweeper drops them although the room keeps its subscriber.
    await until(lambda: broker.stats()["history_entries"] == 0, timeout=5,
                what="expired entries dropped")
    assert broker.stats()["history_bytes"] == 0
    rep = await sub.call("history", "kept")
    assert rep["messages"] == [] and rep["offset"] == 3  # same epoch, same offsets


async def test_a_resume_through_redis_reads_history_in_pages(
    server_factory: ServerFactory, connect: Connect, redis_proc: RedisProc
) -> None:
    server = await server_factory(broker=broker_url(redis_proc))
    broker = server.node.broker
    await _fill(server, "big", 200, BIG)  # 12.6 MB in the room's log
    epoch = (await broker.recover("big", None)).position.epoch
    budget = server.settings.send_queue_bytes // 2
    page = await broker.recover("big", Position(0, epoch), budget)
    assert page.recovered and page.more
    assert [m.offset for m in page.messages] == list(range(1, len(page.messages) + 1))
    assert sum(len(m.frame) for m in page.messages) <= budget + len(BIG) + 200
    rest = await broker.recover("big", Position(195, epoch), budget)
    assert [m.offset for m in rest.messages] == [196, 197, 198, 199, 200] and not rest.more
    # The whole resume, with live messages published while it is replayed: each once, in order.
    sub = await connect(server.url)
    pub = await connect(server.url)
    resume = asyncio.ensure_future(sub.call("subscribe", "big", timeout=30,
                                            since={"offset": 0, "epoch": epoch}))
    for n in range(5):
        assert (await pub.call("publish", "big", data=n))["ok"]
    rep = await resume
    assert rep["ok"] and rep["recovered"] is True, rep
    got = await sub.messages(205, timeout=30)
    assert [m["offset"] for m in got] == list(range(1, 206))


async def test_history_trimmed_during_a_paged_replay_closes_with_4001(
    server_factory: ServerFactory, redis_proc: RedisProc
) -> None:
    import redis.asyncio as aioredis

    server = await server_factory(broker=broker_url(redis_proc))
    broker = cast(RedisBroker, server.node.broker)  # a Redis broker: its keys are used
    await _fill(server, "big", 300, BIG)  # 19 MB: more than the sockets buffer
    epoch = (await broker.recover("big", None)).position.epoch
    reader, writer, status = await open_raw(server.port, rcvbuf=4096)
    assert status == 101
    writer.write(client_frame(json.dumps({"op": "subscribe", "room": "big", "id": 1, "since": {
        "offset": 0, "epoch": epoch}}).encode()))
    hub = server.node.hub
    await until(lambda: "big" in hub.rooms and hub.rooms["big"].syncing, 10.0,
                what="replay started")
    r = aioredis.from_url(redis_proc.url)
    try:
        await r.xtrim(broker.keys.log("big"), maxlen=1)  # the rest of the replay is gone
    finally:
        await r.aclose()
    offsets: list[int] = []
    async with asyncio.timeout(30):
        while True:
            op, payload = await read_frame(reader)
            if op == 0x8:
                code = int.from_bytes(payload[:2], "big")
                break
            body = json.loads(payload)
            if body["op"] == "message":
                offsets.append(body["offset"])
    writer.close()
    assert code == 4001
    assert offsets == list(range(1, len(offsets) + 1)) and len(offsets) < 300
