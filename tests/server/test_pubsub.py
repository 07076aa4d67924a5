"""Rooms, fan-out, history, resume and presence on a live server with real clients."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.conftest import Connect, LiveServer, ServerFactory


def is_end(event: dict[str, Any]) -> bool:
    return event.get("data") == "end"


async def test_publish_reaches_subscribers_of_that_room_only(
    server: LiveServer, connect: Connect
) -> None:
    a, b, pub = [await connect(server.url) for _ in range(3)]
    assert (await a.call("subscribe", "red"))["ok"]
    assert (await b.call("subscribe", "blue"))["ok"]
    for i in range(5):
        ack = await pub.call("publish", "red" if i % 2 == 0 else "blue", data={"n": i})
        assert ack["ok"] and ack["offset"] == i // 2 + 1
    red = await a.messages(3)
    blue = await b.messages(2)
    assert [m["data"]["n"] for m in red] == [0, 2, 4]
    assert [m["data"]["n"] for m in blue] == [1, 3]
    assert [m["offset"] for m in red] == [1, 2, 3]
    assert all(m["room"] == "red" and isinstance(m["ts"], int) for m in red)
    # Markers behind everything else from the same publisher: the other room's messages
    # would have come before them.
    await pub.call("publish", "blue", data="end")
    await pub.call("publish", "red", data="end")
    assert [(e["op"], e["room"], e["data"]) for e in await a.events_until(is_end)] == [
        ("message", "red", "end")]
    assert [(e["op"], e["room"], e["data"]) for e in await b.events_until(is_end)] == [
        ("message", "blue", "end")]


async def test_many_subscribers_get_every_message_in_order(
    server: LiveServer, connect: Connect
) -> None:
    subs = [await connect(server.url) for _ in range(20)]
    for s in subs:
        await s.call("subscribe", "fan")
    pub = await connect(server.url)
    for i in range(50):
        await pub.send_raw(f'{{"op":"publish","room":"fan","id":{i},"data":{i}}}')
    for s in subs:
        assert [m["data"] for m in await s.messages(50)] == list(range(50))


async def test_history_returns_latest_messages_oldest_first(
    server: LiveServer, connect: Connect
) -> None:
    c = await connect(server.url)
    for i in range(10):
        await c.call("publish", "h", data=i)
    rep = await c.call("history", "h", limit=4)
    assert rep["ok"] and rep["offset"] == 10
    assert [m["data"] for m in rep["messages"]] == [6, 7, 8, 9]
    assert [m["offset"] for m in rep["messages"]] == [7, 8, 9, 10]


async def test_resume_after_forced_disconnect_has_no_loss_and_no_duplicates(
    server: LiveServer, connect: Connect
) -> None:
    sub = await connect(server.url)
    pub = await connect(server.url)
    first = await sub.call("subscribe", "res")
    epoch = first["epoch"]
    for i in range(5):
        await pub.call("publish", "res", data=i)
    seen = await sub.messages(5)
    last = seen[-1]["offset"]
    sub.ws._response.connection.transport.abort()  # type: ignore[union-attr]
    await sub.wait_closed()
    for i in range(5, 12):
        await pub.call("publish", "res", data=i)
    again = await connect(server.url)
    rep = await again.call("subscribe", "res", since={"offset": last, "epoch": epoch})
    assert rep["recovered"] is True
    await pub.call("publish", "res", data=12)
    got = await again.messages(8)
    assert [m["data"] for m in got] == list(range(5, 13))
    assert [m["offset"] for m in got] == list(range(6, 14))
    await pub.call("publish", "res", data="end")  # nothing repeated before it
    assert [(e["op"], e["offset"]) for e in await again.events_until(is_end)] == [
        ("message", 14)]


async def test_resume_races_with_live_publishes_without_gap_or_duplicate(
    server: LiveServer, connect: Connect
) -> None:
    pub = await connect(server.url)
    sub = await connect(server.url)
    await pub.call("publish", "race", data=0)
    epoch = (await pub.call("history", "race", limit=1))["epoch"]

    async def flood() -> None:  # (150 frames: within the rate limit's burst of 200)
        for i in range(1, 150):
            await pub.send_raw(f'{{"op":"publish","room":"race","id":{i},"data":{i}}}')
            if i % 20 == 0:
                await asyncio.sleep(0)

    task = asyncio.create_task(flood())
    rep = await sub.call("subscribe", "race", since={"offset": 1, "epoch": epoch})
    await task
    assert rep["recovered"] is True
    got = await sub.messages(149)
    assert [m["offset"] for m in got] == list(range(2, 151))


async def test_resume_outside_history_says_recovered_false(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory(history_size=3)
    c = await connect(server.url)
    first = await c.call("subscribe", "small")
    for i in range(6):
        await c.call("publish", "small", data=i)
    other = await connect(server.url)
    rep = await other.call("subscribe", "small", since={"offset": 1, "epoch": first["epoch"]})
    assert rep["ok"] and rep["recovered"] is False and rep["offset"] == 6
    rep2 = await other.call("subscribe", "small2", since={"offset": 0, "epoch": "nope"})
    assert rep2["recovered"] is False
    # Nothing was replayed: the first messages after the subscribes are the markers.
    await c.call("publish", "small", data="end")
    await c.call("publish", "small2", data="end")
    got = await other.events_until(lambda e: e.get("room") == "small2")
    assert [(e["op"], e["room"], e["offset"], e["data"]) for e in got] == [
        ("message", "small", 7, "end"), ("message", "small2", 1, "end")]


async def test_presence_join_and_leave(server_factory: ServerFactory, connect: Connect) -> None:
    server = await server_factory()
    watcher = await connect(server.url)
    await watcher.call("subscribe", "lobby", presence=True)
    me = (await watcher.next_event())["user"]
    quiet = await connect(server.url)  # did not ask for events: gets none
    await quiet.call("subscribe", "lobby")
    quiet_user = (await watcher.next_event())["user"]
    other = await connect(server.url)
    await other.call("subscribe", "lobby")
    joined = await watcher.next_event()
    assert joined["op"] == "join" and joined["room"] == "lobby"
    users = (await watcher.call("presence", "lobby"))["users"]
    assert sorted(users) == sorted([me, quiet_user, joined["user"]])
    await other.close()
    left = await watcher.next_event()
    assert left == {"op": "leave", "room": "lobby", "user": joined["user"]}
    # A reply to quiet comes behind whatever the server sent quiet before: no join, no leave.
    assert (await quiet.call("presence", "lobby"))["ok"]
    assert quiet.events.empty()
    await quiet.close()
    assert await watcher.next_event() == {"op": "leave", "room": "lobby", "user": quiet_user}
    assert (await watcher.call("presence", "lobby"))["users"] == [me]
    await watcher.call("unsubscribe", "lobby")
    assert (await watcher.call("presence", "lobby"))["users"] == []
    assert (await watcher.call("subscribe", "lobby", presence=1))["error"]["code"] == "bad_request"


async def test_bad_input_gets_error_replies_and_the_connection_keeps_working(
    server: LiveServer, connect: Connect
) -> None:
    c = await connect(server.url)
    bystander = await connect(server.url)
    await bystander.call("subscribe", "calm")
    await c.send_raw("not json")
    assert (await c.next_event())["error"]["code"] == "bad_json"
    assert (await c.call("dance", "r"))["error"]["code"] == "unknown_op"
    assert (await c.call("publish", "bad room!", data=1))["error"]["code"] == "invalid_room"
    assert (await c.call("unsubscribe", "never"))["error"]["code"] == "not_subscribed"
    assert (await c.call("history", "r", limit="x"))["error"]["code"] == "bad_request"
    await c.call("publish", "calm", data="still here")
    assert (await bystander.messages(1))[0]["data"] == "still here"


async def test_resume_after_history_ttl_says_recovered_false(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory(history_ttl=0.3)
    c = await connect(server.url)
    first = await c.call("subscribe", "ttl")
    await c.call("publish", "ttl", data=1)
    await c.call("publish", "ttl", data=2)
    other = await connect(server.url)
    ok = await other.call("subscribe", "ttl", since={"offset": 1, "epoch": first["epoch"]})
    assert ok["recovered"] is True
    await asyncio.sleep(0.4)  # the TTL (0.3 s) passes: time itself is under test
    late = await connect(server.url)
    rep = await late.call("subscribe", "ttl", since={"offset": 1, "epoch": first["epoch"]})
    assert rep["recovered"] is False


async def test_origin_allow_list(server_factory: ServerFactory, connect: Connect) -> None:
    server = await server_factory(allowed_origins=("https://app.example",))
    ok = await connect(server.url, origin="https://app.example")
    assert (await ok.call("publish", "r", data=1))["ok"]
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await connect(server.url, origin="https://evil.example")
    assert info.value.status == 403
