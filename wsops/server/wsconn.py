"""One upgraded connection of the bundled server, as a lean ``asyncio.Protocol``.

After the handoff (``wsops.server.handoff``) the transport calls this object directly: frames
are parsed by its ``FrameReader`` slots, text messages go to the connection's ``Session`` in
order, heartbeats come from the endpoint's wheel, and the instrumentation's per-connection
figures are fields here. An idle connection is this object, the hub's ``Conn``, its
``Session`` and the transport: no task, no coroutine, no timer.

Messages are served one at a time in arrival order: a message that arrives while the previous
one is still being served (a publish waiting on Redis) waits in ``pending``; past
``MAX_PENDING`` reading pauses, so a client cannot queue work faster than it is served.

Every reference this object holds is dropped when the connection ends (``connection_lost``),
so a closed connection is freed by reference counting, never left to the cyclic collector.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from wsops.server.core.frames import (
    NO_STATUS,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    PING,
    FrameError,
    FrameReader,
    close_frame,
    control_frame,
    parse_close,
)
from wsops.server.core.protocol import Close

if TYPE_CHECKING:
    from wsops.instrumentation.metrics import RouteStats
    from wsops.server.core.heartbeat import HeartbeatWheel
    from wsops.server.core.hub import Conn
    from wsops.server.core.session import Session


class Host(Protocol):
    """What a connection uses of the endpoint that serves it (``wsops.server.endpoint``)."""

    max_message_size: int
    stats: RouteStats | None
    wheel: HeartbeatWheel

    def run(self, coro: Coroutine[Any, Any, None]) -> None: ...

    def pong(self, ws: WsConn) -> None: ...

    async def finished(self, ws: WsConn, conn: Conn, session: Session) -> None: ...

CLOSE_TIMEOUT = 5.0
"""Seconds the peer has to answer the server's close frame before the socket is dropped."""
MAX_PENDING = 16


class WsConn(FrameReader, asyncio.Protocol):
    """The protocol object of one WebSocket after the upgrade."""

    wsops_connection = True
    """Counted as a WebSocket by the heap profile (``wsops leaks``), like aiohttp's."""

    __slots__ = (
        "__weakref__", "addr", "beat", "broken", "close_sent", "conn", "deadline", "ended",
        "ep", "expiry", "opened_at", "peer_code", "pending", "ping_at", "rx", "serving",
        "session", "transport",
    )

    def __init__(self, ep: Host, transport: asyncio.Transport, conn: Conn,
                 session: Session, addr: str | None) -> None:
        FrameReader.__init__(self)
        self.ep = ep
        self.transport: asyncio.Transport | None = transport
        self.conn: Conn | None = conn
        self.session: Session | None = session
        self.addr = addr  # the per-address limit's key, when that limit is on
        self.rx = False  # bytes arrived since the heartbeat's last visit
        self.ping_at = 0.0  # loop time of the outstanding ping, 0 when none
        self.beat: dict[Any, None] | None = None  # the wheel's bucket
        self.opened_at = time.monotonic()
        self.pending: list[str] | None = None
        self.serving = False
        self.peer_code = 0  # the code of the peer's close frame, 0 before it
        self.close_sent = False
        self.broken = False  # a protocol error: nothing more is read
        self.ended = False
        self.deadline: asyncio.TimerHandle | None = None
        self.expiry: asyncio.TimerHandle | None = None

    @property
    def closed(self) -> bool:
        return self.ended

    # -- from aiohttp's handler (``set_parser``) ---------------------------------------------

    def feed_data(self, data: bytes) -> None:
        """Bytes that arrived right after the upgrade request."""
        self.data_received(data)

    def feed_eof(self) -> None:
        """aiohttp's handler lets go of the connection: nothing to do."""

    # -- from the transport ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.rx = True
        if self.ping_at:
            self.ep.pong(self)
        if self.broken:
            return
        try:
            frames = self.feed(data, self.ep.max_message_size)
        except FrameError as exc:
            self.broken = True
            self._fail(exc.code, exc.reason)
            return
        for opcode, payload in frames:
            if opcode == OP_TEXT:
                self._text(payload)
            elif opcode == OP_PING:
                if self.transport is not None and not self.close_sent:
                    self.transport.write(control_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                self._peer_close(payload)
                return
            elif opcode != OP_PONG:  # binary
                self.broken = True
                self._fail(Close.UNSUPPORTED_DATA, "binary frames are not supported")
                return

    def _text(self, payload: bytes) -> None:
        conn = self.conn
        if conn is None or conn.closing or self.close_sent:
            # Frames read after a close began are not served: their senders get no reply
            # and resend after reconnecting, so nothing is done twice.
            return
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            self.broken = True
            self._fail(Close.INVALID_DATA, "text frame is not UTF-8")
            return
        stats = self.ep.stats
        if stats is not None:  # counted in the size histogram only (RouteStats.derive_in)
            stats.size_in.observe(len(payload))
        if not self.serving:
            self.serving = True
            self.ep.run(self._serve(text))
            return
        pending = self.pending
        if pending is None:
            pending = self.pending = []
        pending.append(text)
        if len(pending) >= MAX_PENDING and self.transport is not None:
            self.transport.pause_reading()

    async def _serve(self, text: str) -> None:
        """Serve ``text`` and then whatever arrived meanwhile, in order."""
        conn, session = self.conn, self.session
        assert conn is not None and session is not None
        try:
            while True:
                if conn.closing or self.close_sent:
                    # A close began after ``text`` was read but before its turn came (as a
                    # task, this starts on the next loop turn: the drainer may run first): not
                    # served, like a frame read after the close (``_text``). Served now, its
                    # reply would be dropped by the closing Conn and its sender, answered
                    # nothing, would send it again after reconnecting: stored twice.
                    break
                conn.busy = True
                try:
                    await session.handle(text)  # timed by the session's observer, per op
                finally:
                    conn.busy = False
                if conn.deferred_close is not None:
                    conn.close(*conn.deferred_close)
                pending = self.pending
                if not pending or conn.closing:
                    break
                text = pending.pop(0)
                if len(pending) == MAX_PENDING - 1 and self.transport is not None:
                    self.transport.resume_reading()
        finally:
            self.serving = False
            if self.pending is not None and len(self.pending) >= MAX_PENDING - 1 \
                    and self.transport is not None:
                self.transport.resume_reading()  # paused and left (a close): read its answer
            self.pending = None
            if self.peer_code and not self.close_sent:
                self._answer_close()
            if self.ended:
                await self._finish()

    # -- closing -----------------------------------------------------------------------------

    def _fail(self, code: int, reason: str) -> None:
        """A frame the server refuses: close with ``code`` (after a request being served)."""
        if self.conn is not None:
            self.conn.close(code, reason)

    def _peer_close(self, payload: bytes) -> None:
        try:
            code, _ = parse_close(payload)
        except FrameError as exc:
            self.broken = True
            self._fail(exc.code, exc.reason)
            return
        self.peer_code = code
        self.broken = True  # nothing may follow a close frame
        if self.close_sent:  # the answer to ours: the handshake is complete
            if self.transport is not None:
                self.transport.close()
        elif not self.serving:
            self._answer_close()

    def _answer_close(self) -> None:
        """Echo the peer's close (after replying to what it sent before), then hang up."""
        conn, transport = self.conn, self.transport
        if conn is not None:
            conn.flush()
            conn.closing = True
        self.close_sent = True
        if transport is not None:
            code = self.peer_code if self.peer_code != NO_STATUS else 0
            transport.write(close_frame(code) if code else control_frame(OP_CLOSE))
            transport.close()

    def close(self, code: int, reason: str) -> None:
        """Start the server's close handshake (the hub's ``Conn.close`` lands here): the peer
        has ``CLOSE_TIMEOUT`` seconds to answer before the socket is dropped."""
        transport = self.transport
        if self.close_sent or transport is None:
            return
        self.close_sent = True
        if transport.is_closing():
            return
        transport.write(close_frame(code, reason))
        if code == Close.SLOW_CONSUMER:
            transport.abort()  # it is not reading: no close handshake, its buffer freed now
        elif self.peer_code:
            transport.close()
        else:
            self.deadline = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.abort)

    def abort(self) -> None:
        """Drop the TCP connection now (a close past its deadline, a drain past its own)."""
        if self.transport is not None:
            self.transport.abort()

    # -- the heartbeat wheel -----------------------------------------------------------------

    def ping(self, now: float) -> None:
        transport = self.transport
        if transport is not None and not self.close_sent:
            self.ping_at = now
            transport.write(PING)

    def heartbeat_timeout(self) -> None:
        if self.ep.stats is not None:
            self.ep.stats.heartbeat_timeouts += 1
        if self.conn is not None:
            self.conn.close_code = 1006
            self.conn.closing = True
        self.abort()

    # -- the end -----------------------------------------------------------------------------

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ended:
            return
        self.ended = True
        for handle in (self.deadline, self.expiry):
            if handle is not None:
                handle.cancel()
        self.deadline = self.expiry = None
        self.ep.wheel.remove(self)
        if self.conn is not None:
            self.conn.closing = True
        if not self.serving:
            self.ep.run(self._finish())

    async def _finish(self) -> None:
        """Leave the rooms, count how it ended, let go of everything."""
        conn, session = self.conn, self.session
        self.conn = self.session = None
        self.transport = None
        if conn is None or session is None:
            return
        await self.ep.finished(self, conn, session)
