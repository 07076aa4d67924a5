"""Redis faults: stopped, restarted empty, paused; a node's feed lost. Never a silent gap."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, cast

from tests.conftest import Connect, LiveServer
from tests.server.broker.conftest import (
    NodeFactory,
    broker_up,
    readyz,
)
from tests.support.ports import free_port
from tests.support.redisproc import TIMEOUT, RedisProc
from tests.support.scrape import scrape
from tests.support.waits import until
from tests.support.wsclient import RawClient
from wsops.client import Client, ClientState, Event, Gap, Message
from wsops.server.broker.redis import RedisBroker
from wsops.server.broker.redis_feed import Feeds
from wsops.server.broker.resp import Endpoint


def _broker(server: LiveServer) -> RedisBroker:
    broker = server.node.broker
    assert isinstance(broker, RedisBroker)
    return broker


def _feeds(server: LiveServer) -> Feeds:
    """The node's pub/sub feeds (a single Redis here, not a cluster)."""
    return cast(Feeds, _broker(server).feeds)


def _messages(client: RawClient) -> list[dict[str, Any]]:
    return [e for e in list(client.events._queue) if e["op"] == "message"]  # type: ignore[attr-defined]


async def _healthy(*servers: LiveServer, up: bool = True, within: float = 15.0) -> None:
    await until(lambda: all(s.node.broker.healthy is up for s in servers), within)


async def test_redis_stopped_then_restarted_empty_fails_loudly_and_resyncs_subscribers(
    node_factory: NodeFactory, redis_proc: RedisProc, connect: Connect
) -> None:
    a, b = await node_factory(), await node_factory()
    sub_a, sub_b, pub = await connect(a.url), await connect(b.url), await connect(a.url)
    first = await sub_a.call("subscribe", "r")
    await sub_b.call("subscribe", "r")
    for i in range(3):
        await pub.call("publish", "r", data=i)
    last = (await sub_a.messages(3))[-1]
    assert (await sub_b.messages(3))[-1] == last

    redis_proc.stop()
    await _healthy(a, b, up=False)
    assert await readyz(a) == 503 and await broker_up(a) == 0.0
    # What needs the fleet's shared state is refused; publishes go on locally (island mode).
    fields: dict[str, Any]
    for op, fields in (("presence", {}), ("history", {}), ("subscribe", {})):
        rep = await pub.call(op, "other" if op == "subscribe" else "r", **fields)
        assert not rep["ok"] and rep["error"]["code"] == "unavailable", rep
    await until(lambda: not _broker(a).link.up, 10.0)
    island = await pub.call("publish", "r", data=9)
    assert island["ok"] and island["local"] is True and island["epoch"] != first["epoch"]
    assert sub_a.close_code is None and sub_b.close_code is None  # local clients stay

    redis_proc.start()  # same port, no data: every room lost its log and epoch
    await _healthy(a, b)
    assert await readyz(a) == 200 and await broker_up(b) == 1.0
    # The feeds cannot tell what was lost: subscribers are told to resume, and learn the gap.
    assert await sub_a.wait_closed() == 4001 and await sub_b.wait_closed() == 4001
    await until(lambda: _broker(a).islands.pending == 0, 10.0)  # the island message is stored
    since = {"offset": last["offset"], "epoch": first["epoch"]}
    again_a, again_b = await connect(a.url), await connect(b.url)
    rep_a = await again_a.call("subscribe", "r", since=since)
    rep_b = await again_b.call("subscribe", "r", since=since)
    assert rep_a["recovered"] is False and rep_b["recovered"] is False
    assert rep_a["epoch"] == rep_b["epoch"] != first["epoch"]
    assert [m["data"] for m in (await again_a.call("history", "r"))["messages"]] == [9]
    ack = await (await connect(b.url)).call("publish", "r", data="back")
    assert ack["ok"] and ack["offset"] == 2 and "local" not in ack
    assert (await again_a.messages(1))[0]["data"] == "back"
    assert (await again_b.messages(1))[0]["data"] == "back"
    metrics = await scrape(a.admin_url)
    assert metrics.get("wsops_broker_events_total", event="resyncs") >= 1
    assert metrics.get("wsops_broker_events_total", event="reconnects") >= 1
    assert metrics.get("wsops_broker_events_total", event="island_published") == 1
    assert metrics.get("wsops_broker_events_total", event="island_forwarded") == 1


async def test_redis_paused_then_resumed_refuses_publishes_and_applies_none_later(
    node_factory: NodeFactory, redis_proc: RedisProc, connect: Connect
) -> None:
    a, b = await node_factory(), await node_factory()
    sub_a, sub_b, pub = await connect(a.url), await connect(b.url), await connect(a.url)
    first = await sub_a.call("subscribe", "p")
    await sub_b.call("subscribe", "p", presence=True)
    before = set((await sub_b.call("presence", "p"))["users"])
    member = await connect(a.url)
    await member.call("subscribe", "p")
    for i in range(3):
        await pub.call("publish", "p", data=i)
    await sub_a.messages(3)  # (sub_b's are read below: its queue holds join events too)
    members = set((await sub_b.call("presence", "p"))["users"])
    [user] = members - before

    redis_proc.pause()
    try:
        await member.close()  # its leave cannot be written now
        rep = await pub.call("publish", "p", data="during pause", timeout=TIMEOUT * 4)
        assert rep["error"]["code"] == "unavailable"
        await _healthy(a, b, up=False, within=TIMEOUT * 4)
        assert await readyz(b) == 503 and await broker_up(b) == 0.0
        # The silent pub/sub links are noticed too (1.5x the timeout without even a PONG).
        await until(lambda: not (_broker(a).feeds.live or _broker(b).feeds.live),
                         TIMEOUT * 4)
    finally:
        redis_proc.resume()
    await _healthy(a, b)
    assert await readyz(a) == 200
    # Redis ran the queued publish script at SIGCONT: its deadline had passed, so it refused.
    hist = await pub.call("history", "p")
    assert [m["data"] for m in hist["messages"]] == [0, 1, 2]
    assert hist["epoch"] == first["epoch"] and hist["offset"] == 3
    # Nothing was missed, so nobody was disconnected; delivery goes on, gap-free.
    ack = await (await connect(b.url)).call("publish", "p", data=3)
    assert ack["offset"] == 4
    assert (await sub_a.messages(1))[0]["offset"] == 4
    seen_b: list[dict[str, Any]] = []
    while sum(e["op"] == "message" for e in seen_b) < 4:
        seen_b.append(await sub_b.next_event())
    assert [e["offset"] for e in seen_b if e["op"] == "message"] == [1, 2, 3, 4]
    assert sub_a.close_code is None and sub_b.close_code is None
    assert a.node.hub.stats.resyncs == 0 and b.node.hub.stats.resyncs == 0
    # Presence caught up once Redis was back: the member who left meanwhile is gone. (Its
    # leave event is best effort: written by the script Redis ran at SIGCONT, it may have been
    # published while b's feed was still reconnecting. The listing is authoritative.)

    async def caught_up() -> bool:
        return set((await sub_b.call("presence", "p"))["users"]) == members - {user}

    await until(caught_up, 5.0, step=0.05, what=f"presence on b without {user}")
    assert set((await sub_a.call("presence", "p"))["users"]) == members - {user}


async def _cut_feed(server: LiveServer) -> Endpoint:
    """Drop a node's pub/sub connection and keep it from reconnecting; returns the endpoint
    to restore."""
    locate = _feeds(server).locate
    endpoint = await locate()
    locate.endpoint = dataclasses.replace(endpoint, port=free_port())
    feeds = _feeds(server)
    assert feeds.conn is not None
    feeds.conn.close()
    await until(lambda: not server.node.broker.healthy, 10.0)
    return endpoint


async def test_messages_missed_by_a_node_are_filled_from_the_log_after_it_reconnects(
    node_factory: NodeFactory, connect: Connect
) -> None:
    a, b = await node_factory(), await node_factory()
    sub_a, sub_b, pub = await connect(a.url), await connect(b.url), await connect(b.url)
    await sub_a.call("subscribe", "f")
    await sub_b.call("subscribe", "f")
    await pub.call("publish", "f", data=0)
    await sub_a.messages(1)
    await sub_b.messages(1)
    endpoint = await _cut_feed(a)
    for i in range(1, 6):  # Redis is fine: these are accepted, a's feed misses them
        assert (await pub.call("publish", "f", data=i))["ok"]
    assert [m["data"] for m in await sub_b.messages(5)] == [1, 2, 3, 4, 5]
    _feeds(a).locate.endpoint = endpoint
    await _healthy(a)
    await pub.call("publish", "f", data=6)  # the marker: what sub_a got up to it is all it got
    got = await sub_a.events_until(lambda e: e.get("data") == 6)
    assert [(e["op"], e["offset"], e["data"]) for e in got] == [
        ("message", offset, offset - 1) for offset in range(2, 8)]
    # All 5 were filled from the log: none came through the cut feed (or twice).
    assert sub_a.close_code is None and _broker(a).stats()["filled"] == 5


async def test_messages_missed_beyond_the_log_close_subscribers_with_4001(
    node_factory: NodeFactory, connect: Connect
) -> None:
    a, b = await node_factory(history_size=0), await node_factory(history_size=0)
    sub_a, pub = await connect(a.url), await connect(b.url)
    first = await sub_a.call("subscribe", "g")
    await pub.call("publish", "g", data=0)
    seen = (await sub_a.messages(1))[-1]
    endpoint = await _cut_feed(a)
    for i in range(1, 4):
        await pub.call("publish", "g", data=i)
    _feeds(a).locate.endpoint = endpoint
    await _healthy(a)
    assert await sub_a.wait_closed() == 4001
    assert _messages(sub_a) == []  # nothing after the gap was delivered before the close
    again = await connect(a.url)
    rep = await again.call("subscribe", "g", since={"offset": seen["offset"],
                                                    "epoch": first["epoch"]})
    assert rep["recovered"] is False and rep["offset"] == 4


async def test_the_python_client_sees_an_explicit_gap_when_redis_lost_its_data(
    node_factory: NodeFactory, redis_proc: RedisProc
) -> None:
    a, b = await node_factory(), await node_factory()
    events: list[Event] = []
    async with Client(a.url, backoff_base=0.01, backoff_cap=0.1, on_message=events.append,
                      on_gap=events.append) as sub, Client(b.url) as pub:
        await sub.subscribe("c")
        first = await pub.publish("c", 1)
        await until(lambda: len(events) == 1, 10.0)
        redis_proc.restart()  # empty: the room's epoch and log are gone
        await _healthy(a, b)
        await until(lambda: sub.reconnects == 1 and sub.state is ClientState.OPEN, 10.0)
        # The resubscribe's answer (the gap) before publishing again: a publish between the
        # reconnect and the resubscribe lands in the new epoch before the client's position
        # there, inside the gap (it failed so on a loaded machine).
        await until(lambda: len(events) == 2, 10.0)
        later = await pub.publish("c", 2)

        def seen() -> str:  # failed once in CI (not reproduced in 28 runs): say what it saw
            feeds = _broker(a).feeds
            return (f"3 events; events {events}, close codes {sub.close_codes}, state "
                    f"{sub.state}, published {later}, node a feed counts {feeds.counts}, live "
                    f"{feeds.live}, watched {list(feeds.feeds)}")

        await until(lambda: len(events) == 3, 10.0, what=seen)
        assert sub.close_codes == [4001]
    assert events[0] == Message("c", 1, first.epoch, 1, events[0].ts,  # type: ignore[union-attr]
                                events[0].sender)  # type: ignore[union-attr]
    assert events[0].sender.startswith("anon-")  # type: ignore[union-attr]
    assert isinstance(events[1], Gap) and events[1].last_offset == 1
    assert (events[1].last_epoch, events[1].new_epoch) == (first.epoch, later.epoch)
    assert isinstance(events[2], Message) and (events[2].offset, events[2].data) == (1, 2)


async def test_while_redis_is_down_publishes_reach_local_subscribers_and_redis_later(
    node_factory: NodeFactory, redis_proc: RedisProc, connect: Connect
) -> None:
    a, b = await node_factory(), await node_factory()
    sub_a, sub_b, pub = await connect(a.url), await connect(b.url), await connect(a.url)
    first = await sub_a.call("subscribe", "i")
    await sub_b.call("subscribe", "i")
    for i in range(2):
        await pub.call("publish", "i", data=i)
    await sub_a.messages(2)
    await sub_b.messages(2)

    redis_proc.pause()
    try:
        await until(lambda: not _broker(a).link.up, TIMEOUT * 6)
        acks = [await pub.call("publish", "i", data=f"island {n}") for n in range(3)]
        # Local delivery goes on, under an island epoch the publisher is told about.
        assert {(r["ok"], r["local"]) for r in acks} == {(True, True)}
        assert [r["offset"] for r in acks] == [3, 4, 5]  # on from the last seen: a Gap
        assert len({r["epoch"] for r in acks}) == 1 and acks[0]["epoch"] != first["epoch"]
        got_a = await sub_a.messages(3)
        assert [(m["epoch"], m["data"]) for m in got_a] == [
            (acks[0]["epoch"], f"island {n}") for n in range(3)]
        assert _broker(a).islands.pending == 3
    finally:
        redis_proc.resume()
    await _healthy(a, b)
    # Redis is back: the island's subscribers resume (they missed other nodes' messages), and
    # the island messages are stored in order after the room's earlier ones, for every node.
    assert await sub_a.wait_closed() == 4001
    got_b = await sub_b.messages(3)
    assert [(m["offset"], m["epoch"], m["data"]) for m in got_b] == [
        (3 + n, first["epoch"], f"island {n}") for n in range(3)]
    assert sub_b.close_code is None
    again = await connect(a.url)
    rep = await again.call("subscribe", "i", since={"offset": 5, "epoch": acks[0]["epoch"]})
    assert rep["recovered"] is False and (rep["epoch"], rep["offset"]) == (first["epoch"], 5)
    ack = await (await connect(b.url)).call("publish", "i", data="after")
    assert ack["offset"] == 6 and "local" not in ack
    assert (await again.messages(1))[0]["data"] == "after"
    assert (await sub_b.messages(1))[0]["offset"] == 6
    hist = await again.call("history", "i")
    assert [m["data"] for m in hist["messages"]] == [0, 1, "island 0", "island 1", "island 2",
                                                     "after"]
    metrics = await scrape(a.admin_url)
    assert metrics.get("wsops_broker_events_total", event="island_published") == 3
    assert metrics.get("wsops_broker_events_total", event="island_forwarded") == 3


async def test_island_messages_are_stored_once_when_settles_overlap(
    node_factory: NodeFactory, redis_proc: RedisProc, connect: Connect
) -> None:
    """``close`` settles while the island loop may be settling: each message stored once."""
    a = await node_factory()
    pub = await connect(a.url)
    redis_proc.pause()
    try:
        await until(lambda: not _broker(a).link.up, TIMEOUT * 6)
        for n in range(50):
            assert (await pub.call("publish", "o", data=n))["local"] is True
    finally:
        redis_proc.resume()
    broker = _broker(a)
    await until(lambda: broker.link.up and broker.feeds.live, 15.0)
    await asyncio.gather(broker.settle(), broker.settle(), broker.settle())
    assert broker.islands.pending == 0 and broker.islands.forwarded == 50
    hist = await (await connect(a.url)).call("history", "o")
    assert [m["data"] for m in hist["messages"]] == list(range(50))
