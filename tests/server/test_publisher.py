"""``wsops.Publisher`` and ``wsops.SyncPublisher``: publishing into a Redis fleet without a
socket gives what a node's publish gives (the room's next offset, history a client resumes
from, the same envelope), reaches subscribers on every node, reads the fleet's history
settings, refuses another layout, and says clearly when Redis is not there."""

from __future__ import annotations

import asyncio
import os
import threading
import time

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
                                   + "b" * 16 + "-01", tracestate="vendor=x")
    assert (first.room, first.offset, second.offset) == ("news", 1, 3)
    assert first.epoch == second.epoch
    for client in (on_a, on_b):
        got = await client.messages(3)
        assert [(m["offset"], m["data"]) for m in got] == [
            (1, {"headline": "é \u2028 ok", "n": [1, 2.5, None]}), (2, "from a client"),
            (3, "second")]
        assert got[2]["traceparent"].startswith("00-aaaa")
        assert got[2]["tracestate"] == "vendor=x"
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
        with pytest.raises(ValueError, match="tracestate must be a W3C tracestate"):
            await pub.publish("r", 1, traceparent="00-x", tracestate="Bad")
        with pytest.raises(ValueError, match="tracestate needs a traceparent"):
            await pub.publish("r", 1, tracestate="k=v")
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


async def _once_redis_answers(pub: wsops.Publisher, room: str, data: object) -> wsops.Receipt:
    """Publish as soon as the Publisher's probe has found Redis up again (within 5 s)."""
    for _ in range(50):
        try:
            return await pub.publish(room, data)
        except wsops.PublishError:
            await asyncio.sleep(0.1)
    raise AssertionError("Redis did not come back within 5 s")


async def test_no_redis_is_a_clear_error_and_a_lost_redis_too(redis_proc: RedisProc) -> None:
    with pytest.raises(wsops.PublishError, match=r"did not answer within 0\.5 s"):
        await wsops.Publisher(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5).start()
    pub = wsops.Publisher(broker_url(redis_proc), timeout=0.5, heartbeat=0.2)
    await pub.start()
    try:
        assert (await pub.publish("r", 1)).offset == 1
        redis_proc.stop()
        errors: list[wsops.PublishError] = []
        for _ in range(3):  # the first may find the connection gone; then Redis is down
            with pytest.raises(wsops.PublishError) as caught:
                await pub.publish("r", 2)
            errors.append(caught.value)
        assert "is down" in str(errors[-1]) and errors[-1].maybe_stored is False
        assert all(e.maybe_stored == ("may have been stored" in str(e)) for e in errors)
        redis_proc.start()  # back, empty: the probe marks it up again
        receipt = await _once_redis_answers(pub, "r", 3)
        assert receipt.offset == 1  # a new log (the restarted Redis kept nothing)
    finally:
        await pub.close()
    with pytest.raises(RuntimeError, match="Publisher closed"):
        await pub.publish("r", 4)
    with pytest.raises(RuntimeError, match="starts once"):
        await pub.start()


async def test_a_publish_without_an_answer_may_have_been_stored(redis_proc: RedisProc) -> None:
    """Redis stopped (SIGSTOP) while the script is on its way: no answer within the timeout,
    so the caller is told it may have been stored; the script's deadline then keeps a late
    run from storing it after the caller gave up."""
    async with wsops.Publisher(broker_url(redis_proc), timeout=0.5) as pub:
        assert (await pub.publish("r", 1)).offset == 1
        redis_proc.pause()
        try:
            with pytest.raises(wsops.PublishError, match="may have been stored") as caught:
                await pub.publish("r", 2)
            assert caught.value.maybe_stored is True
            await asyncio.sleep(0.6)  # past the script's deadline (half the timeout)
        finally:
            redis_proc.resume()
        receipt = await _once_redis_answers(pub, "r", 3)
    assert receipt.offset == 2  # the late script did not store message 2


def test_sync_publisher_close_never_leaves_a_caller_waiting(redis_proc: RedisProc) -> None:
    pub = wsops.SyncPublisher(broker_url(redis_proc), timeout=5.0)
    outcome: list[BaseException | int] = []

    def publish() -> None:
        try:
            outcome.append(pub.publish("r", 1).offset)
        except BaseException as exc:
            outcome.append(exc)

    redis_proc.pause()  # the publish waits for an answer (up to 5 s)
    try:
        caller = threading.Thread(target=publish)
        caller.start()
        time.sleep(0.3)
        started = time.monotonic()
        pub.close()
        caller.join(5)
        assert not caller.is_alive() and time.monotonic() - started < 2
    finally:
        redis_proc.resume()
    [got] = outcome
    assert isinstance(got, wsops.PublishError) and got.maybe_stored is True
    assert "closed during the call" in str(got)
    with pytest.raises(RuntimeError, match="SyncPublisher closed"):
        pub.publish("r", 2)
    pub.close()  # twice is fine


def test_a_sync_publisher_from_another_process_says_so(redis_proc: RedisProc) -> None:
    with wsops.SyncPublisher(broker_url(redis_proc)) as pub:
        pid = os.fork()
        if pid == 0:  # the child: its copy has no loop thread
            try:
                pub.publish("r", 1)
            except RuntimeError as exc:
                os._exit(0 if "make one per process" in str(exc) else 1)
            os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert pub.publish("r", 1).offset == 1  # the parent's still works
