"""One WebSocket connection of the bundled server: upgrade, frame loop, close.

``Node`` (``wsops.server.app``) admits a request (drain, limits, origin, token) and hands it
here; the loop feeds text frames to the connection's ``Session`` and, in ``finally``, settles
how the connection ended for the hub and the metrics.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from wsops.instrumentation.middleware import LIVE_KEY, SELF_REPORTING_KEY
from wsops.server.auth import Identity
from wsops.server.hub import Conn
from wsops.server.protocol import Close
from wsops.server.session import Session

if TYPE_CHECKING:
    from wsops.server.app import Node

CLOSE_TIMEOUT = 5.0


async def serve_connection(
    node: Node, request: web.Request, identity: Identity
) -> web.StreamResponse:
    """Upgrade an admitted request and serve its frames until the connection ends."""
    s = node.settings
    ws = web.WebSocketResponse(
        heartbeat=s.heartbeat,
        max_msg_size=s.max_message_size,
        compress=False,
        timeout=CLOSE_TIMEOUT,
    )
    if node.instrumentation is not None:
        request[SELF_REPORTING_KEY] = True  # this loop reports its messages itself
    node._upgrading += 1
    try:
        await ws.prepare(request)
    finally:
        node._upgrading -= 1
    transport = request.transport
    assert transport is not None
    hub = node.hub
    conn = Conn(
        hub, hub.new_id(), identity.user, transport,
        lambda code, reason: node.close_ws(ws, conn, code, reason),
        s.send_queue_bytes,
    )
    session = Session(
        conn, identity, hub, node.broker,
        max_rooms=s.max_rooms_per_connection, rate=s.rate_limit, burst=s.rate_burst,
        strikes=s.rate_limit_strikes, obs=node.obs,
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
        closer = node._closers.pop(conn.id, None)
        if closer is not None:
            # Let the close we started finish (before aiohttp would close with 1000); the
            # connection counts as open until then, for the drainer as for the metrics.
            await asyncio.shield(closer)
        await session.close()
        hub.remove(conn)
        code = conn.close_code or ws.close_code or Close.INTERNAL
        hub.stats.close_codes[code] = hub.stats.close_codes.get(code, 0) + 1
    return ws


async def close_ws_task(ws: web.WebSocketResponse, code: int, reason: str) -> None:
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
        transport = ws._req.transport if ws._req is not None else None
        if transport is not None and not transport.is_closing():
            transport.abort()
