"""The ping round-trip hook is in the receive path only while a ping is outstanding."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.conftest import Connect, ServerFactory
from tests.support.waits import until


def _data_callbacks(server: Any) -> list[Any]:
    """The ``data_received`` callback of every instrumented connection's protocol."""
    live = server.node.instrumentation.live
    return [conn.ws._req.protocol._data_received_cb for conn in live.values()]


def _all_plain(server: Any) -> bool:
    """Every connection's callback is aiohttp's own bound method (no wrapper in between)."""
    callbacks = _data_callbacks(server)
    return bool(callbacks) and all(
        getattr(cb, "__func__", None) is web.WebSocketResponse._on_data_received
        for cb in callbacks
    )


async def test_each_ping_is_timed_and_the_hook_swaps_itself_out(
    server_factory: ServerFactory, connect: Connect
) -> None:
    server = await server_factory(heartbeat=0.2)
    await connect(server.url)
    await connect(server.url)
    rtt = server.node.instrumentation.metrics.route("/ws").ping_rtt
    await until(lambda: rtt.count >= 4, 5.0, what="two pings per connection at least")
    # A ping may be in flight at any moment (its answer comes within milliseconds): the
    # callbacks must all be aiohttp's own again soon, and not stay wrapped.
    await until(lambda: _all_plain(server), 2.0, step=0.005,
                what=lambda: f"aiohttp's own callbacks, not {_data_callbacks(server)}")
