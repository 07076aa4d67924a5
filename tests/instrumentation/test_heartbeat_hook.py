"""The ping round-trip hook is in the receive path only while a ping is outstanding."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

import wsops
from tests.conftest import Connect, ServerFactory
from tests.support.ports import serving
from tests.support.waits import until


def _data_callbacks(inst: Any) -> list[Any]:
    """The ``data_received`` callback of every instrumented connection's protocol."""
    return [conn.ws._req.protocol._data_received_cb for conn in inst.live.values()]


def _all_plain(inst: Any) -> bool:
    """Every connection's callback is aiohttp's own bound method (no wrapper in between)."""
    callbacks = _data_callbacks(inst)
    return bool(callbacks) and all(
        getattr(cb, "__func__", None) is web.WebSocketResponse._on_data_received
        for cb in callbacks
    )


async def _idle(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=0.2)
    await ws.prepare(request)
    async for _ in ws:
        pass
    return ws


async def test_each_ping_is_timed_and_the_hook_swaps_itself_out() -> None:
    app = web.Application()
    app.router.add_get("/idle", _idle)
    inst = wsops.instrument(app, registry=CollectorRegistry(), admin_port=None, runtime=False,
                            tracing=False)
    async with serving(app) as port, aiohttp.ClientSession() as s:
        conns = [await s.ws_connect(f"ws://127.0.0.1:{port}/idle") for _ in range(2)]
        # aiohttp's client answers pings while something reads.
        readers = [asyncio.create_task(c.receive()) for c in conns]
        rtt = inst.metrics.route("/idle").ping_rtt
        await until(lambda: rtt.count >= 4, 5.0, what="two pings per connection at least")
        # A ping may be in flight at any moment (its answer comes within milliseconds): the
        # callbacks must all be aiohttp's own again soon, and not stay wrapped.
        await until(lambda: _all_plain(inst), 2.0, step=0.005,
                    what=lambda: f"aiohttp's own callbacks, not {_data_callbacks(inst)}")
        for c in conns:
            await c.close()
        await asyncio.gather(*readers, return_exceptions=True)


async def test_the_bundled_server_times_each_ping(
    server_factory: ServerFactory, connect: Connect
) -> None:
    """The bundled server's connections answer its heartbeat wheel's pings: each round trip is
    in the route's ping histogram, and an answering peer is never closed."""
    server = await server_factory(heartbeat=0.2)
    await connect(server.url)
    await connect(server.url)
    assert server.node.instrumentation is not None
    rtt = server.node.instrumentation.metrics.route("/ws").ping_rtt
    await until(lambda: rtt.count >= 4, 5.0, what="two pings per connection at least")
    assert len(server.node.hub.conns) == 2
    assert 0 < rtt.sum / rtt.count < 0.2
