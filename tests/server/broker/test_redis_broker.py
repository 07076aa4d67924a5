"""Two nodes on one Redis: shared offsets, history, resume on any node, presence, registry."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from unittest.mock import ANY

import aiohttp
import pytest

from tests.conftest import Connect, LiveServer, Trap
from tests.server.broker.conftest import NodeFactory
from tests.support.procs import start_serve
from tests.support.redisproc import BEAT, RedisProc, broker_url
from tests.support.tokens import SECRET, hs
from tests.support.waits import until
from tests.support.wsclient import RawClient
from wsops.config import Settings
from wsops.server.app import NODE_KEY, make_broker, running
from wsops.server.broker.redis import RedisBroker, list_nodes


def is_end(event: dict[str, Any]) -> bool:
    return event.get("data") == "end"


def _broker(server: LiveServer) -> RedisBroker:
    broker = server.node.broker
    assert isinstance(broker, RedisBroker)
    return broker


async def test_messages_cross_nodes_in_one_order_with_the_same_offsets(
    node_factory: NodeFactory, connect: Connect
) -> None:
    a, b = await node_factory(), await node_factory()
    sub_a, sub_b = await connect(a.url), await connect(b.url)
    rep_a = await sub_a.call("subscribe", "chat")
    rep_b = await sub_b.call("subscribe", "chat")
    assert rep_a["epoch"] == rep_b["epoch"] and rep_a["offset"] == rep_b["offset"] == 0
    pub_a, pub_b = await connect(a.url), await connect(b.url)
    acks = []
    for i in range(20):
        acks.append(await (pub_a if i % 2 else pub_b).call("publish", "chat", data={"n": i}))
    assert [ack["offset"] for ack in acks] == list(range(1, 21))
    assert {ack["epoch"] for ack in acks} == {rep_a["epoch"]}
    got_a, got_b = await sub_a.messages(20), await sub_b.messages(20)
    assert got_a == got_b
    assert [m["data"]["n"] for m in got_a] == list(range(20))
    assert [m["offset"] for m in got_a] == list(range(1, 21))
    # Concurrent publishers on both nodes: one order, seen identically everywhere.
    await asyncio.gather(*(p.call("publish", "chat", data=i) for i in range(10)
                           for p in (pub_a, pub_b)))
    more_a, more_b = await sub_a.messages(20), await sub_b.messages(20)
    assert more_a == more_b and [m["offset"] for m in more_a] == list(range(21, 41))
    # A node decodes only the rooms it delivers: nobody on b watches "elsewhere".
    await pub_a.call("subscribe", "elsewhere")
    await pub_a.call("publish", "elsewhere", data=1)
    assert "elsewhere" not in b.node.broker._watched  # type: ignore[attr-defined]
    assert (await pub_a.messages(1))[0]["room"] == "elsewhere"


async def test_history_and_resume_on_another_node_use_the_shared_log(
    node_factory: NodeFactory, connect: Connect
) -> None:
    a, b = await node_factory(), await node_factory()
    sub = await connect(a.url)
    first = await sub.call("subscribe", "log")
    pub = await connect(b.url)
    for i in range(5):
        await pub.call("publish", "log", data=i)
    seen = await sub.messages(5)
    await sub.close()
    for i in range(5, 12):
        await pub.call("publish", "log", data=i)
    hist_a = await (await connect(a.url)).call("history", "log", limit=4)
    hist_b = await pub.call("history", "log", limit=4)
    assert hist_a == {**hist_b, "id": hist_a["id"]}
    assert [m["data"] for m in hist_a["messages"]] == [8, 9, 10, 11]
    assert hist_a["offset"] == 12 and hist_a["epoch"] == first["epoch"]
    # The client comes back on the other node and resumes from where it was.
    again = await connect(b.url)
    rep = await again.call("subscribe", "log", since={"offset": seen[-1]["offset"],
                                                      "epoch": first["epoch"]})
    assert rep["recovered"] is True and rep["offset"] == 12
    await pub.call("publish", "log", data=12)
    got = await again.messages(8)
    assert [m["data"] for m in got] == list(range(5, 13))
    assert [m["offset"] for m in got] == list(range(6, 14))
    stale = await again.call("subscribe", "log2", since={"offset": 3, "epoch": "nope"})
    assert stale["recovered"] is False


async def test_subscribing_on_a_busy_room_neither_loses_nor_repeats_messages(
    node_factory: NodeFactory, connect: Connect
) -> None:
    a, b = await node_factory(rate_burst=1000), await node_factory()
    early = await connect(b.url)
    await early.call("subscribe", "busy")  # b already watches the room
    pub = await connect(a.url)
    epoch = (await pub.call("publish", "busy", data=0))["epoch"]

    async def flood() -> None:
        for i in range(1, 300):
            await pub.send_raw(f'{{"op":"publish","room":"busy","id":{1000 + i},"data":{i}}}')
            if i % 10 == 0:
                await asyncio.sleep(0.001)

    task = asyncio.create_task(flood())
    late = [await connect(b.url) for _ in range(3)]
    replies = []
    for i, c in enumerate(late):
        await asyncio.sleep(0.01)  # each subscribes at a different point of the flood
        since: dict[str, Any] = {"since": {"offset": 1, "epoch": epoch}} if i == 0 else {}
        replies.append(await c.call("subscribe", "busy", **since))
    await task
    assert replies[0]["recovered"] is True
    for c, rep in zip(late, replies, strict=True):
        start = 1 if "recovered" in rep else rep["offset"]
        got = await c.messages(300 - start)
        assert [m["offset"] for m in got] == list(range(start + 1, 301))
    assert [m["offset"] for m in await early.messages(300)] == list(range(1, 301))
    # A marker behind the flood: nothing repeated comes before it, to anyone.
    await pub.call("publish", "busy", data="end")
    for c in (*late, early):
        assert [(e["op"], e["offset"]) for e in await c.events_until(is_end)] == [
            ("message", 301)]


async def test_an_expired_room_starts_a_new_epoch_and_resume_says_recovered_false(
    node_factory: NodeFactory, connect: Connect
) -> None:
    a = await node_factory(history_ttl=0.3)
    c = await connect(a.url)
    first = await c.call("publish", "brief", data=1)
    await asyncio.sleep(0.6)  # the TTL (0.3 s) passes: time itself is under test
    second = await c.call("publish", "brief", data=2)
    assert second["offset"] == 1 and second["epoch"] != first["epoch"]
    rep = await c.call("subscribe", "brief", since={"offset": 1, "epoch": first["epoch"]})
    assert rep["recovered"] is False and rep["epoch"] == second["epoch"]


async def test_presence_is_shared_and_join_leave_events_cross_nodes(
    node_factory: NodeFactory, connect: Connect
) -> None:
    a = await node_factory(jwt_secret=SECRET)
    b = await node_factory(jwt_secret=SECRET)
    watcher_a = await connect(a.url)
    await watcher_a.call("subscribe", "chat:lobby", presence=True)
    me = (await watcher_a.next_event())["user"]
    watcher_b = await connect(b.url)
    await watcher_b.call("subscribe", "chat:lobby", presence=True)
    assert await watcher_a.next_event() == {"op": "join", "room": "chat:lobby",
                                            "user": (await watcher_b.next_event())["user"]}
    token = hs(sub="alice")
    alice_a = await connect(a.url + "?token=" + token)
    await alice_a.call("subscribe", "chat:lobby")
    join = {"op": "join", "room": "chat:lobby", "user": "alice"}
    assert await watcher_a.next_event() == join
    assert await watcher_b.next_event() == join
    # Alice's second connection, on the other node: she is already a member, no event.
    alice_b = await connect(b.url + "?token=" + token)
    await alice_b.call("subscribe", "chat:lobby")
    users = (await watcher_b.call("presence", "chat:lobby"))["users"]
    assert "alice" in users and me in users and len(users) == 3
    assert (await watcher_a.call("presence", "chat:lobby"))["users"] == users
    await alice_a.close()
    # Once node a has written alice_a's leave, bob's join is a marker behind it (one Redis
    # channel per room, in order): no leave for alice may come first, she is still on b.
    await until(lambda: len(a.node.hub.conns) == 1, 10.0)
    assert await _broker(a).fleet.flushed(5.0)
    bob = await connect(a.url + "?token=" + hs(sub="bob"))
    await bob.call("subscribe", "chat:lobby")
    bob_joined = {"op": "join", "room": "chat:lobby", "user": "bob"}
    assert await watcher_a.next_event() == bob_joined
    assert await watcher_b.next_event() == bob_joined
    await alice_b.close()
    leave = {"op": "leave", "room": "chat:lobby", "user": "alice"}
    assert await watcher_a.next_event() == leave
    assert await watcher_b.next_event() == leave
    assert "alice" not in (await watcher_a.call("presence", "chat:lobby"))["users"]


async def test_a_node_that_stops_heartbeating_leaves_presence_within_three_beats(
    node_factory: NodeFactory, connect: Connect
) -> None:
    a, b = await node_factory(), await node_factory()
    watcher = await connect(b.url)
    await watcher.call("subscribe", "room", presence=True)
    await watcher.next_event()
    members = [await connect(a.url) for _ in range(3)]
    for m in members:
        await m.call("subscribe", "room")
    joined = {(await watcher.next_event())["user"] for _ in members}
    assert set((await watcher.call("presence", "room"))["users"]) >= joined
    broker = a.node.broker
    assert isinstance(broker, RedisBroker)
    assert broker._heartbeat is not None
    broker._heartbeat.cancel()  # the node hangs: no more beats, its connections stay open
    bound = 3 * BEAT

    async def gone() -> bool:
        return not joined & set((await watcher.call("presence", "room"))["users"])

    took = asyncio.get_running_loop().time()
    await until(gone, bound + 1.0, step=0.05, what="the hung node's members out of presence")
    took = asyncio.get_running_loop().time() - took
    assert took <= bound + 0.5
    # The surviving node removes the dead one and tells its watchers.
    left = {(await watcher.next_event(timeout=bound + 2))["user"] for _ in members}
    assert left == joined
    await until(lambda: b.node.broker.stats()["nodes_reaped"] == 1, 2.0)


async def test_list_nodes_shows_every_live_node_with_its_admin_url(
    node_factory: NodeFactory, redis_proc: RedisProc
) -> None:
    a = await node_factory()
    settings = Settings(broker=broker_url(redis_proc), port=0, admin_port=0,
                        allow_anonymous=True)
    async with running(settings) as (app_b, _, _):
        node_b = app_b[NODE_KEY]
        assert node_b.admin is not None
        nodes = await list_nodes(broker_url(redis_proc))
        assert {n["admin_url"] for n in nodes} == {a.admin_url, node_b.admin.url}
        ids = {n["id"] for n in nodes}
        assert ids == {a.node.broker.node_id, node_b.broker.node_id}
        assert all(n["version"] and n["started_at"] > 0 and not n["draining"] for n in nodes)
        drain = node_b.drain()
        await until(lambda: node_b.drainer.draining, 10.0)

        async def draining() -> bool:
            got = {n["id"]: n for n in await list_nodes(broker_url(redis_proc))}
            return bool(got[node_b.broker.node_id]["draining"])

        await until(draining, 10 * BEAT, step=BEAT / 4, what="the registry to say draining")
        await drain
    # A node that stops cleanly leaves the registry at once.
    assert [n["id"] for n in await list_nodes(broker_url(redis_proc))] == [
        a.node.broker.node_id]


async def test_wsops_serve_runs_on_the_redis_broker_from_the_flag(redis_proc: RedisProc) -> None:
    proc = await asyncio.to_thread(start_serve, "--broker", broker_url(redis_proc),
                                   "--allow-anonymous")
    try:
        [node] = await list_nodes(redis_proc.url)
        assert node["admin_url"] == proc.admin_url
        c = await RawClient.connect(proc.url)
        try:
            ack = await c.call("publish", "cli", data=1)
            assert ack["ok"] and ack["offset"] == 1
        finally:
            await c.close()
    finally:
        proc.stop()
    with pytest.raises(ValueError, match="unknown broker"):
        make_broker(Settings(broker="postgres://x"))
    with pytest.raises(ValueError, match="heartbeat and timeout are seconds"):
        make_broker(Settings(broker="redis://h?heartbeat=no"))
    with pytest.raises(ValueError, match="needs a Redis broker"):
        make_broker(Settings(broker_ack="replica"))
    with pytest.raises(ValueError, match="broker ack must be one of master, replica"):
        make_broker(Settings(broker="redis://h", broker_ack="all"))


async def test_wsops_status_finds_the_fleet_in_the_redis_registry(
    node_factory: NodeFactory, redis_proc: RedisProc
) -> None:
    from tests.support.runcli import cli

    a = await node_factory()
    b = await node_factory()
    result = await cli("status", "--redis", broker_url(redis_proc), "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert {a.admin_url, b.admin_url} <= set(result.stdout.replace('"', " ").split())
    empty = await cli("status", "--redis", broker_url(redis_proc).replace("/0", "/5"))
    assert empty.exit_code == 2 and "no live node" in empty.stderr


async def test_wsops_status_with_redis_sends_no_token_to_registry_addresses(
    node_factory: NodeFactory, redis_proc: RedisProc, trap: Trap
) -> None:
    """A rogue registry entry naming a listener of ours: `status --redis --token` lists it
    from its (absent) summary and never calls it, least of all with the token."""
    import redis.asyncio as aioredis

    from tests.support.runcli import cli
    from wsops.server.broker import redis_scripts as lua

    a = await node_factory()
    r = aioredis.from_url(redis_proc.url)
    keys = lua.Keys("wsops")
    try:
        await r.hset(keys.node("rogue"), mapping={"admin_url": trap.url})
        await r.zadd(keys.nodes, {"rogue": 1e15})
    finally:
        await r.aclose()
    result = await cli("status", "--redis", broker_url(redis_proc), "--token", "s3cret", "--json")
    rows = {n["url"]: n for n in json.loads(result.stdout)["nodes"]}
    assert rows[a.admin_url]["status"] == "up", rows
    assert rows[trap.url]["status"] == "error", rows
    assert trap.requests == []



async def test_a_plain_redis_url_does_not_track_the_master(
    node_factory: NodeFactory, redis_proc: RedisProc, connect: Connect
) -> None:
    """No Sentinel, no failover to follow: the publish script skips INFO (~2 us of Redis CPU
    per publish) and keeps no master id (test_redis_sentinel checks the other side)."""
    import redis.asyncio as aioredis

    a = await node_factory()
    await (await connect(a.url)).call("publish", "plain", data=1)
    r = aioredis.Redis(port=redis_proc.port)
    try:
        assert await r.hgetall("wsops:{plain}:meta") == {b"epoch": ANY, b"top": b"1"}
    finally:
        await r.aclose()


async def test_the_layout_version_is_written_once_and_another_one_is_refused_loudly(
    redis_proc: RedisProc, node_factory: NodeFactory, connect: Connect,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first node writes the schema version under its prefix; a node that finds another
    one (a newer wsops migrated the data) stays out of the fleet, is not ready and refuses
    publishes with a message saying why, and serves again once the versions agree."""
    from redis.asyncio import Redis

    from wsops.server.broker import redis_scripts as lua

    a = await node_factory()
    redis = Redis(port=redis_proc.port)
    try:
        assert await redis.get("wsops:schema") == lua.SCHEMA.encode() == b"1"
        c = await connect(a.url)
        assert (await c.call("publish", "r", data=1))["ok"]
        await redis.set("wsops:schema", "2")
        broker = _broker(a)
        await until(lambda: not broker.healthy, 3 * BEAT + 1, what="the conflict noticed")
        refused = await c.call("publish", "r", data=2)
        assert not refused["ok"] and refused["error"]["code"] == "unavailable"
        assert "schema '2'" in refused["error"]["message"]
        assert "this node reads schema '1'" in refused["error"]["message"]
        assert any("schema '2'" in r.message and r.levelname == "ERROR" for r in caplog.records)
        async with aiohttp.ClientSession() as s, s.get(a.admin_url + "/readyz") as r:
            assert r.status == 503 and "schema '2'" in " ".join((await r.json())["reasons"])
        await redis.set("wsops:schema", "1")
        await until(lambda: broker.healthy, 3 * BEAT + 1, what="serving again")
        assert (await c.call("publish", "r", data=3))["ok"]
    finally:
        await redis.aclose()
