"""The server API on a Redis fleet of three nodes: a call on one node reaches the whole fleet
(publishes through the broker, presence from Redis, a user disconnected and a revocation in
force on every node)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from tests.conftest import Connect, LiveServer, ServerFactory
from tests.server.api.test_api_live import KEY, post
from tests.support.redisproc import RedisProc, broker_url
from tests.support.tokens import SECRET, hs
from tests.support.waits import until

Fleet = tuple[LiveServer, LiveServer, LiveServer, Callable[[], Awaitable[LiveServer]]]


@pytest.fixture
async def fleet(monkeypatch: pytest.MonkeyPatch, redis_proc: RedisProc,
                server_factory: ServerFactory) -> Fleet:
    """Three nodes on one Redis (A serves the API), and a way to start one more."""
    monkeypatch.setenv("WSOPS_API_KEYS", KEY)
    common = {"broker": broker_url(redis_proc), "allow_anonymous": False, "jwt_secret": SECRET}

    async def another() -> LiveServer:
        return await server_factory(**common)

    return await server_factory(api_port=0, **common), await another(), await another(), another


async def test_a_call_on_one_node_reaches_the_fleet(fleet: Fleet, connect: Connect) -> None:
    a, b, c, _ = fleet

    def as_user(user: str) -> dict[str, dict[str, str]]:
        return {"headers": {"Authorization": f"Bearer {hs(sub=user)}"}}

    alices = [await connect(n.url, **as_user("alice")) for n in (a, b, c)]
    bob = await connect(b.url, **as_user("bob"))
    carol = await connect(c.url, **as_user("carol"))
    for client in (*alices, bob, carol):
        assert (await client.call("subscribe", "chat:1", presence=True))["ok"]
    # publishes through A reach B's and C's subscribers, with contiguous offsets
    for i in range(5):
        status, got = await post(a, "publish", {"room": "chat:1", "data": i})
        assert status == 200 and got["offset"] == i + 1
    for client in (bob, carol):
        assert [(m["offset"], m["data"]) for m in await client.messages(5)] == [
            (i + 1, i) for i in range(5)]
    status, got = await post(a, "history", {"room": "chat:1", "limit": 3})
    assert [m["offset"] for m in got["messages"]] == [3, 4, 5]
    dave = await connect(c.url, **as_user("dave"))  # resumes after offset 3 on another node
    reply = await dave.call("subscribe", "chat:1", since={"offset": 3, "epoch": got["epoch"]})
    assert reply["ok"] and reply["recovered"] is True
    assert [m["data"] for m in await dave.messages(2)] == [3, 4]
    status, got = await post(a, "presence", {"room": "chat:1"})
    assert got["users"] == ["alice", "bob", "carol", "dave"]  # the fleet's, seen from A
    assert len((await post(a, "info"))[1]["nodes"]) == 3
    # disconnect: alice's connections on every node, nobody else's, well within a second
    started = time.monotonic()
    status, got = await post(a, "disconnect", {"user": "alice", "reason": "account locked"})
    assert status == 200 and got == {"disconnected": 1}  # A's own; B and C close theirs
    codes = await asyncio.gather(*(alice.wait_closed(timeout=1.0) for alice in alices))
    elapsed = time.monotonic() - started
    assert codes == [4002, 4002, 4002] and elapsed < 1.0, (codes, elapsed)
    assert (await bob.call("presence", "chat:1"))["ok"]  # bob and carol still served
    assert (await carol.call("presence", "chat:1"))["users"] == ["bob", "carol", "dave"]
    print(f"\nalice's 3 connections on 3 nodes closed {elapsed * 1000:.0f} ms after the call")


async def test_a_revocation_reaches_every_node_and_ends_on_time(fleet: Fleet,
                                                                connect: Connect) -> None:
    import aiohttp

    a, b, c, another = fleet
    alice_token, stolen = hs(sub="alice"), hs(sub="bob", jti="t-stolen")
    alices = [await connect(n.url, headers={"Authorization": f"Bearer {alice_token}"})
              for n in (a, b, c)]
    bob_stolen = await connect(c.url, headers={"Authorization": f"Bearer {stolen}"})
    bob_other = await connect(c.url, headers={"Authorization": f"Bearer {hs(sub='bob')}"})

    async def upgrade(url: str, token: str) -> int:
        async with aiohttp.ClientSession() as s:
            try:
                ws = await s.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status
            await ws.close()
            return 101

    status, got = await post(a, "revoke", {"user": "alice", "seconds": 2})
    assert status == 200 and got["disconnected"] == 1 and got["kind"] == "user"
    assert await asyncio.gather(*(x.wait_closed(timeout=1.0) for x in alices)) == [1008] * 3
    status, got = await post(a, "revoke", {"jti": "t-stolen", "seconds": 60})
    assert status == 200 and got["disconnected"] == 0  # on node C, not A
    assert await bob_stolen.wait_closed(timeout=1.0) == 1008
    assert (await bob_other.call("presence", "chat:1"))["ok"]  # bob's other token: still in
    for node in (a, b, c):
        assert await upgrade(node.url, alice_token) == 401
        assert await upgrade(node.url, stolen) == 401
        assert await upgrade(node.url, hs(sub="bob")) == 101
    late = await another()  # started after: reads the list from Redis
    assert await upgrade(late.url, stolen) == 401
    await asyncio.sleep(2.2)  # alice's revocation ends
    for node in (a, b, c, late):
        assert await upgrade(node.url, alice_token) == 101
        assert await upgrade(node.url, stolen) == 401


async def test_unsubscribe_takes_a_user_out_of_a_room_on_every_node(fleet: Fleet,
                                                                   connect: Connect) -> None:
    a, b, c, _ = fleet

    def as_user(user: str) -> dict[str, dict[str, str]]:
        return {"headers": {"Authorization": f"Bearer {hs(sub=user)}"}}

    alices = [await connect(n.url, **as_user("alice")) for n in (a, b, c)]
    bob = await connect(b.url, **as_user("bob"))
    for client in (*alices, bob):
        for room in ("chat:1", "chat:2"):
            assert (await client.call("subscribe", room))["ok"]
    status, got = await post(a, "unsubscribe", {"user": "alice", "room": "chat:1",
                                                "reason": "muted by a moderator"})
    assert status == 200 and got == {"unsubscribed": 1}  # A's own; B and C take theirs
    for alice in alices:
        event = await alice.next_event(timeout=1.0)
        assert event == {"op": "unsubscribed", "room": "chat:1",
                         "reason": "muted by a moderator"}
    # after it: chat:2 still comes, chat:1 no more (the chat:2 publish is the marker behind it)
    for room in ("chat:1", "chat:2"):
        assert (await post(a, "publish", {"room": room, "data": room}))[0] == 200
    for alice in alices:
        got_now = await alice.events_until(lambda e: e.get("room") == "chat:2")
        assert [(e["op"], e["room"]) for e in got_now] == [("message", "chat:2")]
    assert [m["room"] for m in await bob.messages(2)] == ["chat:1", "chat:2"]
    await until(lambda: _users(a, "chat:1", ["bob"]), 3.0, what="alice out of presence")
    assert (await post(a, "presence", {"room": "chat:2"}))[1]["users"] == ["alice", "bob"]
    assert (await alices[1].call("unsubscribe", "chat:1"))["error"]["code"] == "not_subscribed"
    assert (await alices[1].call("subscribe", "chat:1"))["ok"]  # may come back (a new grant)
    # nobody in the room: nothing to do, and said so
    assert (await post(a, "unsubscribe", {"user": "carol", "room": "chat:1"}))[1] == {
        "unsubscribed": 0}
    status, got = await post(a, "unsubscribe", {"room": "chat:1"})
    assert status == 400 and "'user' is required" in got["error"]["message"]


async def _users(node: LiveServer, room: str, want: list[str]) -> bool:
    """The fleet's presence of ``room``, asked of ``node``'s API, is ``want``."""
    users: list[str] = (await post(node, "presence", {"room": room}))[1]["users"]
    return users == want
