"""The set of open, instrumented WebSockets: what the connection gauge, the admin API (drain,
leak checks) and the queue-depth gauges read, counted at the time they ask."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

from aiohttp import web
from opentelemetry.trace import Span

from wsops.instrumentation.metrics import RouteStats


class LiveConn:
    """One open WebSocket as the instrumentation sees it."""

    __slots__ = (
        "close_code", "close_requested", "handled_at", "in_receive", "opened_at",
        "peer_closed", "ping_at", "route", "span", "stats", "transport", "ws",
    )

    def __init__(self, ws: web.WebSocketResponse, route: str, stats: RouteStats,
                 transport: asyncio.BaseTransport | None) -> None:
        self.ws = ws
        self.route = route
        self.stats = stats
        self.transport = transport
        self.opened_at = time.monotonic()
        self.handled_at = 0.0
        self.ping_at = 0.0
        self.span: Span | None = None
        self.close_code: int | None = None  # the code the server closed with, if it did
        self.peer_closed = False  # the peer sent a close frame
        self.close_requested = False
        self.in_receive: asyncio.Task[object] | None = None  # the task inside receive()

    @property
    def closing(self) -> bool:
        return self.close_requested or self.ws.closed or self.close_code is not None

    def close(self, code: int, reason: str = "") -> None:
        """Close from outside the handler (a drain); the handler's receive() then ends."""
        if self.closing:
            return
        self.close_requested = True
        task = asyncio.get_running_loop().create_task(self._close(code, reason))
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)

    async def _close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()), 5.0)
        except (TimeoutError, ConnectionError, RuntimeError):
            self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # type: ignore[attr-defined]

    def end_span(self) -> None:
        if self.span is not None:
            self.span.end()
            self.span = None


_CLOSING: set[asyncio.Task[None]] = set()  # keeps close tasks alive until they finish


class LiveSet:
    """Open connections by identity; cheap to add and remove, iterated only when asked."""

    def __init__(self) -> None:
        self._conns: dict[int, LiveConn] = {}

    def add(self, conn: LiveConn) -> None:
        self._conns[id(conn)] = conn

    def discard(self, conn: LiveConn) -> None:
        self._conns.pop(id(conn), None)

    def __iter__(self) -> Iterator[LiveConn]:
        return iter(list(self._conns.values()))

    def values(self) -> list[LiveConn]:
        return list(self._conns.values())

    def __len__(self) -> int:
        return len(self._conns)

    def total(self) -> int:
        return len(self._conns)

    def counts(self) -> dict[str, int]:
        """Open connections by route."""
        out: dict[str, int] = {}
        for conn in self._conns.values():
            out[conn.route] = out.get(conn.route, 0) + 1
        return out

    def queue_bytes(self) -> tuple[int, int]:
        """(all bytes waiting in send buffers, the most on one connection)."""
        total = biggest = 0
        for conn in self._conns.values():
            transport = conn.transport
            if transport is None or transport.is_closing():
                continue
            n = transport.get_write_buffer_size()  # type: ignore[attr-defined]
            total += n
            biggest = max(biggest, n)
        return total, biggest
