"""Issue #14, finding 6: the fleet page against a real Redis registry. A rogue registry entry
pointing at a listener of ours must never receive the admin token (or any request); peers'
figures come from what each node writes in its own entry. Finding 9: the registry never
advertises a wildcard admin address."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from tests.conftest import Connect, LiveServer, ServerFactory, Trap
from tests.support.redisproc import RedisProc
from tests.support.waits import until
from wsops.admin.access import ADMIN_TOKEN_ENV
from wsops.admin.advertise import routable_address

TOKEN = "fleet-registry-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def redis(redis_proc: RedisProc) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_proc.url)
    try:
        yield client
    finally:
        await client.aclose()


async def fleet(server: LiveServer) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(server.admin_url + "/admin/fleet",
                                                   headers=BEARER) as r:
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body


async def until_rows(server: LiveServer, ok: Any, within: float = 10.0) -> dict[str, Any]:
    """Poll the page's JSON until ``ok(rows by id)``; returns those rows."""
    seen: list[dict[str, Any]] = [{}]

    async def matched() -> list[dict[str, Any]] | None:
        seen[0] = {n["id"]: n for n in (await fleet(server))["nodes"]}
        return seen[0:1] if ok(seen[0]) else None

    found: list[dict[str, Any]] = await until(matched, within, step=0.1,
                                              what=lambda: f"page rows to match: {seen[0]}")
    return found[0]


async def test_a_rogue_registry_entry_gets_no_request_and_peers_come_from_the_registry(
    redis_proc: RedisProc, redis: Redis, server_factory: ServerFactory, connect: Connect,
    trap: Trap, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ADMIN_TOKEN_ENV, TOKEN)
    broker = f"{redis_proc.url}?heartbeat=0.2&timeout=1"
    a = await server_factory(broker=broker)
    b = await server_factory(broker=broker)
    b_id = b.node.broker.node_id
    assert b_id is not None
    clients = [await connect(b.url) for _ in range(2)]
    for c in clients:
        assert (await c.call("subscribe", "lobby"))["ok"]

    # Whoever can write to Redis adds a node whose admin URL is a listener of theirs, and one
    # whose fields are garbage.
    now_ms = int(time.time() * 1000)
    await redis.zadd("wsops:nodes", {"rogue": now_ms, "junk": now_ms})
    await redis.hset("wsops:node:rogue", mapping={"admin_url": trap.url, "version": "9.9.9",
                                                   "ready": "1", "connections": "7"})
    await redis.hset("wsops:node:junk", mapping={"connections": "lots", "started_at": "never",
                                                  "heartbeat_ms": "x", "ready": b"\xff\xfe"})
    for key in ("wsops:node:rogue", "wsops:node:junk"):
        await redis.pexpire(key, 60_000)

    rows = await until_rows(a, lambda r: {"rogue", "junk", b_id} <= set(r)
                            and r[b_id]["stats"]["connections"] == 2)
    assert trap.requests == []  # not the token, not anything
    peer = rows[b_id]
    assert peer["self"] is False and peer["error"] is None
    assert peer["admin_url"] == b.admin_url
    assert peer["stats"]["ready"] is True and peer["stats"]["draining"] is False
    assert peer["stats"]["rss_bytes"] and peer["stats"]["version"]
    assert peer["as_of"] is not None and abs(time.time() - peer["as_of"]) < 5
    rogue = rows["rogue"]["stats"]
    assert rows["rogue"]["admin_url"] == trap.url  # shown, never called
    assert rogue["connections"] == 7 and rogue["ready"] is True
    assert rows["junk"]["stats"]["connections"] is None
    assert rows["junk"]["stats"]["uptime_seconds"] is None

    # A drain on b reaches a's page through b's own entry.
    async with aiohttp.ClientSession() as s, s.post(b.admin_url + "/admin/drain",
                                                    json={"deadline": 5}, headers=BEARER) as r:
        assert r.status == 202
    rows = await until_rows(a, lambda r: r[b_id]["stats"]["draining"])
    assert "draining" in rows[b_id]["stats"]["not_ready_reasons"]
    assert trap.requests == []


async def admin_url_in_registry(redis: Redis, server: LiveServer) -> str:
    raw = await redis.hget(f"wsops:node:{server.node.broker.node_id}", "admin_url")
    assert isinstance(raw, bytes)
    return raw.decode()


async def test_the_registry_never_advertises_a_wildcard_admin_address(
    redis_proc: RedisProc, redis: Redis, server_factory: ServerFactory,
) -> None:
    broker = f"{redis_proc.url}?heartbeat=0.2&timeout=1"
    wild = await server_factory(broker=broker, admin_host="0.0.0.0")
    named = await server_factory(broker=broker, admin_host="0.0.0.0",
                                 admin_advertise_url="https://admin-1.example:9765/")
    for server in (wild, named):
        assert server.node.broker.node_id is not None
    wild_url = await admin_url_in_registry(redis, wild)
    assert await admin_url_in_registry(redis, named) == "https://admin-1.example:9765"
    host = wild_url.removeprefix("http://").rsplit(":", 1)[0]
    assert host not in ("0.0.0.0", "[::]"), wild_url
    if routable_address((socket.AF_INET,)) is not None:  # the machine has a network address
        assert not ipaddress.ip_address(host).is_loopback, wild_url
    # The advertised address answers (it is this machine's).
    async with aiohttp.ClientSession() as s, s.get(wild_url + "/healthz") as r:
        assert r.status == 200
