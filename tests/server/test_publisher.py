"""``wsops.Publisher`` and ``wsops.SyncPublisher``: publishing into a Redis fleet without a
socket gives what a node's publish gives (the room's next offset, history a client resumes
from, the same envelope), reaches subscribers on every node, reads the fleet's history
settings, refuses another layout, and says clearly when Redis is not there."""

from __future__ import annotations

import asyncio
import threading

import pytest
from redis.asyncio import Redis

import wsops
from tests.conftest import Connect, LiveServer, ServerFactory
from tests.support.ports import free_port
from tests.support.redisproc import RedisProc, broker_url
from wsops.server.broker import redis_scripts as lua


@pytest.fixture
async def nodes(redis_proc: RedisProc, server_factory: ServerFactory
                ) -> tuple[LiveServer, LiveServer]:
    common = {"broker": broker_url(redis_proc), "history_size": 50, "history_ttl": 120.0}
    return await server_factory(**common), await server_factory(**common)


async def test_a_publish_reaches_every_node_between_the_nodes_own(
        nodes: tuple[LiveServer, LiveServer], redis_proc: RedisProc, connect: Connect) -> None:
    a, b = nodes
    on_a, on_b, sender = await connect(a.url), await connect(b.url), await connect(a.url)
    for client in (on_a, on_b):
        assert (await client.call("subscribe", "news"))["ok"]
    async with wsops.Publisher(broker_url(redis_proc)) as pub:
        assert pub.logs is not None  # the nodes' settings, from the registry
        assert (pub.logs.history_size, pub.logs.ttl_ms) == (50, 120_000)
        first = await pub.publish("news", {"headline": "é \u2028 ok", "n": [1, 2.5, None]})
        assert (await sender.call("publish", "news", data="from a client"))["offset"] == 2
        second = await pub.publish("news", "second", traceparent="00-" + "a" * 32 + "-"
                                   + "b" * 16 + "-01")
    assert (first.room, first.offset, second.offset) == ("news", 1, 3)
    assert first.epoch == second.epoch
    for client in (on_a, on_b):
        got = await client.messages(3)
        assert [(m["offset"], m["data"]) for m in got] == [
            (1, {"headline": "é \u2028 ok", "n": [1, 2.5, None]}), (2, "from a client"),
            (3, "second")]
        assert got[2]["traceparent"].startswith("00-aaaa")
        assert set(got[0]) == set(got[1]) - {"from"}  # a node's envelope, no sender
    # history and resume, on either node, past the publisher's messages
    late = await connect(b.url)
    reply = await late.call("subscribe", "news", since={"offset": 1, "epoch": first.epoch})
    assert reply["ok"] and reply["recovered"] is True
    assert [m["offset"] for m in await late.messages(2)] == [2, 3]
    history = await on_a.call("history", "news", limit=10)
    assert [m["data"] for m in history["messages"]] == [
        {"headline": "é \u2028 ok", "n": [1, 2.5, None]}, "from a client", "second"]


async def test_sync_publisher_from_threads(nodes: tuple[LiveServer, LiveServer],
                                           redis_proc: RedisProc, connect: Connect) -> None:
    a, _ = nodes
    sub = await connect(a.url)
    assert (await sub.call("subscribe", "jobs"))["ok"]

    def work() -> list[int]:
        offsets: list[int] = []
        with wsops.SyncPublisher(broker_url(redis_proc)) as pub:
            def many(k: int) -> None:
                offsets.extend(pub.publish("jobs", {"k": k, "i": i}).offset for i in range(10))
            threads = [threading.Thread(target=many, args=(k,)) for k in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        with pytest.raises(RuntimeError, match="closed"):
            pub.publish("jobs", 1)
        return offsets

    offsets = await asyncio.to_thread(work)
    assert sorted(offsets) == list(range(1, 31))
    got = await sub.messages(30)
    assert [m["offset"] for m in got] == list(range(1, 31))
    for k in range(3):  # each thread's messages in its order
        assert [m["data"]["i"] for m in got if m["data"]["k"] == k] == list(range(10))


async def test_bad_input_is_refused_before_redis(redis_proc: RedisProc) -> None:
    async with wsops.Publisher(broker_url(redis_proc), max_data=100) as pub:
        with pytest.raises(ValueError, match="room name is 1-128 characters"):
            await pub.publish("$wsops:control", 1)  # the fleet's order room among others
        with pytest.raises(ValueError, match="not a JSON value"):
            await pub.publish("r", {1, 2})
        with pytest.raises(ValueError, match="at most 100"):
            await pub.publish("r", "x" * 200)
        with pytest.raises(ValueError, match="traceparent"):
            await pub.publish("r", 1, traceparent="")
        assert pub.published == 0
        assert (await pub.publish("r", 1)).offset == 1
    with pytest.raises(ValueError, match="ack must be one of"):
        wsops.Publisher(broker_url(redis_proc), ack="all")
    with pytest.raises(ValueError):
        wsops.Publisher("http://127.0.0.1:1/")


async def test_another_layout_is_refused_and_nothing_written(redis_proc: RedisProc) -> None:
    url = broker_url(redis_proc)
    client = Redis.from_url(redis_proc.url)
    await client.set(lua.Keys().schema, "99")
    try:
        with pytest.raises(wsops.PublishError, match=r"schema '99'.*another \?prefix="):
            await wsops.Publisher(url).start()
        async with wsops.Publisher(url + "&prefix=other") as pub:  # its own prefix: fine
            assert (await pub.publish("r", 1)).offset == 1
        assert await client.get(lua.Keys("other").schema) == lua.SCHEMA.encode()
        assert await client.keys("wsops:{r}*") == []
    finally:
        await client.aclose()


async def test_no_redis_is_a_clear_error_and_a_lost_redis_too(redis_proc: RedisProc) -> None:
    with pytest.raises(wsops.PublishError, match=r"did not answer within 0\.5 s"):
        await wsops.Publisher(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5).start()
    pub = wsops.Publisher(broker_url(redis_proc), timeout=0.5, heartbeat=0.2)
    await pub.start()
    try:
        assert (await pub.publish("r", 1)).offset == 1
        redis_proc.stop()
        with pytest.raises(wsops.PublishError, match=r"unavailable|down") as caught:
            for _ in range(3):  # the first may find the connection gone, then it is down
                await pub.publish("r", 2)
        assert caught.value.maybe_stored is False
        redis_proc.start()  # back, empty: the probe marks it up again
        for _ in range(50):
            try:
                receipt = await pub.publish("r", 3)
                break
            except wsops.PublishError:
                await asyncio.sleep(0.1)
        assert receipt.offset == 1  # a new log (the restarted Redis kept nothing)
    finally:
        await pub.close()

