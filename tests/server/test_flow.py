"""``/admin/flow`` on a live node: the busiest rooms' traffic in and out, publishers and
subscribers, busiest first; a plain instrumented app has none."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

import wsops
from tests.conftest import Connect, LiveServer
from tests.support.ports import serving


async def get(url: str, status: int = 200) -> Any:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == status, await r.text()
        return await r.json() if status == 200 else await r.text()


async def test_the_busiest_rooms_come_first_with_their_traffic_both_ways(
    server: LiveServer, connect: Connect,
) -> None:
    subs = [await connect(server.url) for _ in range(3)]
    for s in subs:
        await s.call("subscribe", "busy")
    await subs[0].call("subscribe", "quiet")
    a, b = await connect(server.url), await connect(server.url)
    for _ in range(5):
        await a.call("publish", "busy", data="x" * 10)
    await b.call("publish", "busy", data=1)
    await b.call("publish", "quiet", data=1)
    await b.call("publish", "nobody-listens", data=1)
    for s in subs:
        await s.messages(6)
    flow = await get(server.admin_url + "/admin/flow")
    rooms = {r["room"]: r for r in flow["rooms"]}
    assert [r["room"] for r in flow["rooms"]][:2] == ["busy", "quiet"]
    busy = rooms["busy"]
    assert (busy["msgs_in"], busy["msgs_out"], busy["publishers"], busy["subscribers"]) == (
        6, 18, 2, 3)
    assert busy["bytes_in"] == 5 * 12 + 1 and busy["bytes_out"] > busy["bytes_in"] * 3
    assert not busy["publishers_capped"] and busy["since"] <= flow["generated_at"]
    assert (rooms["nobody-listens"]["msgs_in"], rooms["nobody-listens"]["msgs_out"]) == (1, 0)
    assert flow["tracked"] == 3 and flow["forgotten"] == 0
    top = await get(server.admin_url + "/admin/flow?top=1")
    assert [r["room"] for r in top["rooms"]] == ["busy"]
    assert "'top' must be an integer" in await get(server.admin_url + "/admin/flow?top=0", 400)


async def test_a_plain_instrumented_app_has_no_flow() -> None:
    app = web.Application()
    inst = wsops.instrument(app, admin_port=0, runtime=False, tracing=False)
    async with serving(app):
        assert inst.admin is not None
        assert "no rooms" in await get(inst.admin.url + "/admin/flow", 404)
