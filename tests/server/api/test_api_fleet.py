"""The server API on a Redis fleet of three nodes: a call on one node reaches the whole fleet
(publishes through the broker, presence from Redis, a user disconnected on every node)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.conftest import Connect, ServerFactory
from tests.server.api.test_api_live import KEY, post
from tests.support.redisproc import RedisProc, broker_url
from tests.support.tokens import SECRET, hs


async def test_a_call_on_one_node_reaches_the_fleet(
        monkeypatch: pytest.MonkeyPatch, redis_proc: RedisProc, server_factory: ServerFactory,
        connect: Connect) -> None:
    monkeypatch.setenv("WSOPS_API_KEYS", KEY)
    common = {"broker": broker_url(redis_proc), "allow_anonymous": False, "jwt_secret": SECRET}
    a = await server_factory(api_port=0, **common)
    b, c = [await server_factory(**common) for _ in range(2)]

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
