"""One WebSocket connection of the bundled server: upgrade, frame loop, close.

``Node`` (``wsops.server.app``) admits a request (drain, limits, origin, token) and hands it to
its ``Endpoint``, which upgrades it and feeds its text frames to the connection's ``Session``;
in ``finally`` it settles how the connection ended for the hub and the metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import WSMsgType, web

from wsops.config import Settings
from wsops.instrumentation.middleware import LIVE_KEY, SELF_REPORTING_KEY
from wsops.server.core.broker import Broker
from wsops.server.core.hub import Conn, Hub
from wsops.server.core.identity import Identity
from wsops.server.core.observer import Publish, SessionObserver, Sink
from wsops.server.core.protocol import Close
from wsops.server.core.session import Session

CLOSE_TIMEOUT = 5.0
Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[Any]"]
"""Runs a background task the node waits for when it stops."""


class Endpoint:
    """Serves admitted upgrade requests: one ``Conn`` and ``Session`` per connection.

    ``upgrading`` counts handshakes under way (they count against ``--max-connections``);
    ``closers`` are the close handshakes started by the server, awaited before a connection's
    handler ends. ``self_reporting``: the app is instrumented and this loop reports its
    received messages itself.
    """

    def __init__(self, settings: Settings, hub: Hub, broker: Broker, spawn: Spawn, *,
                 observer: SessionObserver | None = None, publish: Publish | None = None,
                 self_reporting: bool = False) -> None:
        self.settings = settings
        self.hub = hub
        self.broker = broker
        self.spawn = spawn
        self.observer = observer
        self.publish = publish
        self.self_reporting = self_reporting
        self.upgrading = 0
        self.sockets: dict[int, web.WebSocketResponse] = {}  # by connection id, while open
        self.closers: dict[int, asyncio.Task[None]] = {}

    async def serve(self, request: web.Request, identity: Identity) -> web.StreamResponse:
        return await serve_connection(self, request, identity)

    def close_ws(self, conn: Conn, code: int, reason: str) -> None:
        """Close ``conn``'s WebSocket with ``code`` in the background (awaited by its handler's
        end). Every connection's ``Closer``."""
        conn.close_code = code
        ws = self.sockets.get(conn.id)
        if ws is not None:
            self.closers[conn.id] = self.spawn(close_ws_task(ws, conn.transport, code, reason))

    async def close_all(self, code: int, reason: str) -> None:
        """Close every open connection with ``code`` and wait (bounded) for the handshakes."""
        for conn in list(self.hub.conns.values()):
            conn.close(code, reason)
        closers = list(self.closers.values())
        if closers:
            await asyncio.wait(closers, timeout=CLOSE_TIMEOUT + 1)


async def serve_connection(
    endpoint: Endpoint, request: web.Request, identity: Identity
) -> web.StreamResponse:
    """Upgrade an admitted request and serve its frames until the connection ends."""
    s = endpoint.settings
    ws = web.WebSocketResponse(
        heartbeat=s.heartbeat,
        max_msg_size=s.max_message_size,
        compress=False,
        timeout=CLOSE_TIMEOUT,
    )
    if endpoint.self_reporting:
        request[SELF_REPORTING_KEY] = True  # this loop reports its messages itself
    endpoint.upgrading += 1
    try:
        await ws.prepare(request)
    finally:
        endpoint.upgrading -= 1
    transport = request.transport
    assert transport is not None
    hub = endpoint.hub
    conn = Conn(hub, hub.new_id(), identity.user, transport, endpoint.close_ws,
                s.send_queue_bytes)
    endpoint.sockets[conn.id] = ws
    session = Session(
        conn, identity, hub, endpoint.broker,
        max_rooms=s.max_rooms_per_connection, rate=s.rate_limit, burst=s.rate_burst,
        strikes=s.rate_limit_strikes, observer=endpoint.observer, publish=endpoint.publish,
    )
    hub.add(conn)
    expiry = None
    if identity.expires_at is not None:
        delay = max(0.0, identity.expires_at - time.time())
        expiry = asyncio.get_running_loop().call_later(
            delay, conn.close, Close.POLICY, "token expired"
        )
    try:
        live = request.get(LIVE_KEY)
        while True:
            if live is not None:
                live.before_receive()
            msg = await ws.receive()
            if live is not None:
                live.after_receive(msg)
            if conn.closing:
                # Frames read after a close began are not served: their senders get no
                # reply and resend after reconnecting, so nothing is done twice.
                break
            if msg.type is WSMsgType.TEXT:
                conn.busy = True
                try:
                    await session.handle(msg.data)
                finally:
                    conn.busy = False
                if conn.deferred_close is not None:
                    conn.close(*conn.deferred_close)
            elif msg.type is WSMsgType.BINARY:
                conn.close(Close.UNSUPPORTED_DATA, "binary frames are not supported")
                break
            else:  # CLOSE, CLOSING, CLOSED, ERROR
                break
    finally:
        if expiry is not None:
            expiry.cancel()
        conn.flush()
        conn.closing = True
        closer = endpoint.closers.pop(conn.id, None)
        if closer is not None:
            # Let the close we started finish (before aiohttp would close with 1000); the
            # connection counts as open until then, for the drainer as for the metrics.
            await asyncio.shield(closer)
        endpoint.sockets.pop(conn.id, None)
        await session.close()
        hub.remove(conn)
        code = conn.close_code or ws.close_code or Close.INTERNAL
        hub.stats.close_codes[code] = hub.stats.close_codes.get(code, 0) + 1
    return ws


async def close_ws_task(ws: web.WebSocketResponse, transport: Sink, code: int,
                        reason: str) -> None:
    """Send the close frame (bounded by CLOSE_TIMEOUT), then make sure the socket is gone."""
    # A slow consumer is not reading: do not wait for its socket to drain.
    drain = code != Close.SLOW_CONSUMER
    try:
        await asyncio.wait_for(
            ws.close(code=code, message=reason.encode(), drain=drain), CLOSE_TIMEOUT
        )
    except (TimeoutError, ConnectionError, RuntimeError):
        pass
    finally:
        if not transport.is_closing():
            transport.abort()
