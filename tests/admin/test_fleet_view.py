"""``/admin/fleet``: this node's stats plus every registered peer's, asked with this node's token;
a peer that fails is a row with its error, never a failed request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.procs import free_port
from wsops.admin import fleetpage
from wsops.admin.fleetpage import add_fleet_page
from wsops.admin.listener import AdminListener

TOKEN = "fleet-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def listeners() -> AsyncIterator[list[AdminListener]]:
    started: list[AdminListener] = []
    yield started
    for listener in started:
        await listener.stop()


async def peer(listeners: list[AdminListener], stats: dict[str, Any] | None,
               delay: float = 0.0) -> AdminListener:
    """A listener whose ``/admin/stats`` answers ``stats`` after ``delay`` (None: HTTP 500)."""
    listener = AdminListener(token=TOKEN)

    async def handler(_: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        if stats is None:
            raise web.HTTPInternalServerError()
        return web.json_response(stats)

    listener.app.router.add_get("/admin/stats", handler)
    await listener.start()
    listeners.append(listener)
    return listener


async def get_fleet(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(url + "/admin/fleet", headers=BEARER) as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def test_own_stats_first_then_each_peer_with_its_stats_or_its_error(
    listeners: list[AdminListener], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fleetpage, "PEER_TIMEOUT", 0.3)
    good = await peer(listeners, {"connections": 7, "max_fds": float("inf")})
    broken = await peer(listeners, None)
    slow = await peer(listeners, {"connections": 1}, delay=0.8)
    registry = [
        {"id": "me", "admin_url": "http://ignored"},  # this node's own entry: not asked
        {"id": "b-good", "admin_url": good.url},
        {"id": "c-broken", "admin_url": broken.url},
        {"id": "d-slow", "admin_url": slow.url},
        {"id": "e-gone", "admin_url": f"http://127.0.0.1:{free_port()}"},
        {"id": "f-no-admin", "admin_url": ""},
    ]

    async def own() -> dict[str, Any]:
        return {"connections": 3, "rss_bytes": float("nan")}

    async def lister() -> list[dict[str, Any]]:
        return registry

    me = AdminListener(token=TOKEN)
    add_fleet_page(me, own, node_id=lambda: "me", peers=lambda: lister)
    await me.start()
    listeners.append(me)

    started = time.monotonic()
    body = await get_fleet(me.url)
    assert time.monotonic() - started < 2.0  # peers in parallel, each bounded
    assert body["interval"] == fleetpage.DEFAULT_INTERVAL and body["fleet"] is True
    assert body["node_id"] == "me" and body["registry_error"] is None
    rows = {n["id"]: n for n in body["nodes"]}
    assert [n["id"] for n in body["nodes"]] == ["me", "b-good", "c-broken", "d-slow", "e-gone",
                                                "f-no-admin"]
    assert rows["me"] == {"id": "me", "admin_url": me.url, "self": True, "error": None,
                          "stats": {"connections": 3, "rss_bytes": None}}  # NaN is no JSON
    assert rows["b-good"]["stats"] == {"connections": 7, "max_fds": None}
    assert rows["b-good"]["self"] is False and rows["b-good"]["error"] is None
    assert rows["c-broken"]["stats"] is None and "HTTP 500" in rows["c-broken"]["error"]
    assert rows["d-slow"]["error"] == "no answer within 0.3 s"
    assert rows["e-gone"]["error"].startswith("unreachable")
    assert rows["f-no-admin"]["error"] == "no admin listener"


async def test_peers_refusing_the_token_and_an_unreadable_registry_are_reported(
    listeners: list[AdminListener],
) -> None:
    other = AdminListener(token="another-token")  # a node with another token: 401
    await other.start()
    listeners.append(other)
    calls = 0

    async def lister() -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise ConnectionError("redis went away")
        return [{"id": "x", "admin_url": other.url}]

    async def own() -> dict[str, Any]:
        return {"connections": 0}

    me = AdminListener(token=TOKEN)
    add_fleet_page(me, own, node_id=lambda: "me", peers=lambda: lister)
    await me.start()
    listeners.append(me)
    first = await get_fleet(me.url)
    assert first["nodes"][1]["error"] == "HTTP 401 from /admin/stats"
    await asyncio.sleep(fleetpage.SHARED_FOR + 0.05)
    second = await get_fleet(me.url)
    assert second["registry_error"] == "fleet registry unreadable: ConnectionError redis went away"
    assert [n["id"] for n in second["nodes"]] == ["me"]


async def test_concurrent_viewers_share_one_snapshot(listeners: list[AdminListener]) -> None:
    asked = 0

    async def own() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        await asyncio.sleep(0.1)
        return {"connections": asked}

    me = AdminListener(token=TOKEN)
    add_fleet_page(me, own)  # no fleet: the node alone
    await me.start()
    listeners.append(me)
    bodies = await asyncio.gather(*(get_fleet(me.url) for _ in range(5)))
    assert asked == 1 and all(b == bodies[0] for b in bodies)
    assert bodies[0]["fleet"] is False and len(bodies[0]["nodes"]) == 1
    await asyncio.sleep(fleetpage.SHARED_FOR + 0.05)
    assert (await get_fleet(me.url))["nodes"][0]["stats"]["connections"] == 2
