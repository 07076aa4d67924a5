"""The bundled server's WebSocket endpoint: upgrade, hand off, heartbeats, close.

``Node`` (``wsops.server.app``) admits a request (drain, limits, origin, token) and hands it to
its ``Endpoint``, which builds the connection's hub ``Conn`` and ``Session``, answers the
upgrade and hands the socket to a ``WsConn`` (``wsops.server.wsconn``): from then on aiohttp
keeps nothing of the connection. The endpoint holds what all its connections share: the
heartbeat wheel and its one timer, the close path, the instrumentation's route figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from wsops.config import Settings
from wsops.instrumentation.metrics import RouteStats
from wsops.instrumentation.middleware import Instrumentation
from wsops.server.core.address_limit import PerAddressLimit
from wsops.server.core.broker import Broker
from wsops.server.core.heartbeat import HeartbeatWheel
from wsops.server.core.hub import Conn, Hub
from wsops.server.core.identity import Identity
from wsops.server.core.observer import SessionObserver
from wsops.server.core.protocol import Close
from wsops.server.core.session import Session
from wsops.server.debug import DebugSwitch
from wsops.server.eager import start
from wsops.server.handoff import Handoff, check_upgrade, hand_off
from wsops.server.wsconn import CLOSE_TIMEOUT, WsConn

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[Any]"]
"""Runs a background task the node waits for when it stops."""


class Endpoint:
    """Serves admitted upgrade requests: one ``Conn``, ``Session`` and ``WsConn`` each.

    ``stats``: the route's figures when the app is instrumented (``instrumentation``), which
    the connections update themselves (messages in, handler latency, ping round trips).
    """

    def __init__(self, settings: Settings, hub: Hub, broker: Broker, *,
                 observer: SessionObserver | None = None,
                 instrumentation: Instrumentation | None = None, stats: RouteStats | None = None,
                 per_ip: PerAddressLimit | None = None, debug: DebugSwitch | None = None) -> None:
        self.settings = settings
        self.hub = hub
        self.broker = broker
        self.observer = observer
        self.inst = instrumentation
        self.stats = stats
        self.per_ip = per_ip if per_ip is not None else PerAddressLimit(0)
        self.debug = debug
        self.max_message_size = settings.max_message_size
        self.sockets: dict[int, WsConn] = {}  # by connection id, until its rooms are left
        self.tasks: set[asyncio.Task[None]] = set()
        self.wheel = HeartbeatWheel(settings.heartbeat)
        self._ticker: asyncio.TimerHandle | None = None
        self._emptied: asyncio.Event | None = None  # set when the last connection ended

    def serve(self, request: web.Request, identity: Identity) -> web.StreamResponse:
        """Upgrade an admitted request and hand its socket to a new ``WsConn``."""
        key, subprotocol = check_upgrade(request)
        transport: Any = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the peer went away during the upgrade")
        s, hub = self.settings, self.hub
        conn = Conn(hub, hub.new_id(), identity.user, transport, self.close_ws,
                    s.send_queue_bytes)
        session = Session(
            conn, identity, hub, self.broker,
            max_rooms=s.max_rooms_per_connection, rate=s.rate_limit, burst=s.rate_burst,
            strikes=s.rate_limit_strikes, observer=self.observer,
            debug=self.debug,
        )
        ws = WsConn(self, transport, conn, session, self.per_ip.acquire(request.remote))
        if self.inst is not None:
            self.inst.adopt(request)
        hub.add(conn)
        if self.debug is not None and self.debug.targets.active:
            self.debug.opened(conn)
        self.sockets[conn.id] = ws
        self.wheel.add(ws)
        if self._ticker is None:
            loop = asyncio.get_running_loop()
            self._ticker = loop.call_later(self.wheel.tick, self._tick)
        if identity.expires_at is not None:
            delay = max(0.0, identity.expires_at - time.time())
            ws.expiry = asyncio.get_running_loop().call_later(
                delay, conn.close, Close.POLICY, "token expired")
        hand_off(request, key, ws, subprotocol)
        return Handoff()

    def run(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a connection's work (serving its messages, its end) at once; what has to wait
        goes on as a task kept until done."""
        task = start(coro, inline=self.broker.inline)
        if task is not None:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def close_ws(self, conn: Conn, code: int, reason: str) -> None:
        """Every connection's ``Closer``: send the close frame with ``code``."""
        conn.close_code = code
        ws = self.sockets.get(conn.id)
        if ws is not None:
            ws.close(code, reason)

    def pong(self, ws: WsConn) -> None:
        """The first bytes after a heartbeat ping: the round trip."""
        if self.stats is not None:
            self.stats.ping_rtt.observe(asyncio.get_running_loop().time() - ws.ping_at)
        ws.ping_at = 0.0

    async def finished(self, ws: WsConn, conn: Conn, session: Session) -> None:
        """A connection ended: leave its rooms, count how it ended."""
        try:
            await session.close()
        finally:
            self.sockets.pop(conn.id, None)
            hub = self.hub
            hub.remove(conn)
            code = conn.close_code or ws.peer_code or 1006
            if self.debug is not None:
                self.debug.closed(conn, code)
            hub.stats.close_codes[code] = hub.stats.close_codes.get(code, 0) + 1
            if ws.addr is not None:
                self.per_ip.release(ws.addr)
            if self.inst is not None and self.stats is not None:
                self.inst.finished(self.stats, code, ws.opened_at)
            if not self.sockets and self._emptied is not None:
                self._emptied.set()

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        self.wheel.advance(loop.time())
        self._ticker = loop.call_later(self.wheel.tick, self._tick)

    async def close_all(self, code: int, reason: str) -> None:
        """Close every open connection with ``code``; wait (bounded) for the handshakes and
        for the connections to leave their rooms."""
        for conn in list(self.hub.conns.values()):
            conn.close(code, reason)
        if self.sockets:
            self._emptied = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), CLOSE_TIMEOUT + 1)
        for ws in list(self.sockets.values()):
            ws.abort()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=1.0)
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
