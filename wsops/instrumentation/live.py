"""The set of open, instrumented WebSockets: what the connection gauge, the admin API (drain,
leak checks) and the queue-depth gauges read, counted at the time they ask."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Iterator
from typing import Protocol

from aiohttp import WSMessage, WSMsgType, web
from opentelemetry.trace import Span, SpanContext

from wsops.instrumentation.metrics import RouteStats
from wsops.instrumentation.tracing import Tracing, parse_traceparent, trace_id_of, with_state
from wsops.tracecontext import valid_tracestate

_TEXT, _BINARY = WSMsgType.TEXT, WSMsgType.BINARY
_CLOSE, _CLOSED, _ERROR = WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR
_perf = time.perf_counter


def utf8_len(data: str | bytes) -> int:
    """The size of a text message on the wire (``data`` is bytes with ``decode_text=False``)."""
    return len(data.encode()) if isinstance(data, str) else len(data)


def traceparent_in(text: str) -> SpanContext | None:
    """The traceparent of a JSON text frame (with its tracestate when the frame has a valid
    one), found without parsing the whole frame."""
    i = text.find('"traceparent"')
    if i < 0:
        return None
    j = text.find('"', text.find(":", i) + 1)
    parent = parse_traceparent(text[j + 1 : j + 56]) if j > 0 else None
    if parent is not None and (i := text.find('"tracestate"')) >= 0:
        j = text.find('"', text.find(":", i) + 1)
        k = text.find('"', j + 1) if j > 0 else -1
        if k > 0 and valid_tracestate(state := text[j + 1 : k]):
            parent = with_state(parent, state)
    return parent


class LiveConn:
    """One open WebSocket as the instrumentation sees it."""

    __slots__ = (
        "close_code", "close_requested", "handled_at", "latency", "opened_at",
        "peer_closed", "ping_at", "route", "size_in", "span", "stats", "tracing",
        "transport", "ws",
    )

    def __init__(self, ws: web.WebSocketResponse, route: str, stats: RouteStats,
                 transport: asyncio.BaseTransport | None) -> None:
        self.ws = ws
        self.route = route
        self.stats = stats
        # The stats touched per message, bound once (attribute lookups add up at ~30k msg/s).
        self.latency = stats.handler_latency
        self.size_in = stats.size_in
        self.transport = transport
        self.opened_at = time.monotonic()
        self.handled_at = 0.0
        self.ping_at = 0.0
        self.span: Span | None = None
        self.close_code: int | None = None  # the code the server closed with, if it did
        self.peer_closed = False  # the peer sent a close frame
        self.close_requested = False
        self.tracing: Tracing | None = None  # set for a span per received message

    def before_receive(self) -> None:
        """The handler asks for the next message: the previous one is handled."""
        handled = self.handled_at
        if handled:
            elapsed = _perf() - handled
            self.handled_at = 0.0
            span = self.span
            if span is None:
                self.latency.observe(elapsed)
            else:
                self.latency.observe_traced(elapsed, trace_id_of(span))
                self.end_span()

    def after_receive(self, msg: WSMessage) -> None:
        """Count a received message (in its size histogram, see ``counted.count``), or learn
        how the connection ended."""
        kind = msg.type
        if kind is _TEXT:
            data = msg.data
            n = len(data) if data.isascii() else utf8_len(data)
        elif kind is _BINARY:
            data = msg.data
            n = len(data)
            self.stats.messages_in["binary"] += 1
        else:
            self._not_data(msg)
            return
        self.size_in.observe(n)
        if self.tracing is not None:
            parent = traceparent_in(data) if kind is _TEXT else None
            self.span = self.tracing.receive(self.route, parent)
        self.handled_at = _perf()

    def _not_data(self, msg: WSMessage) -> None:
        """A close, an error or the end of the connection (once per connection)."""
        kind = msg.type
        if kind is _CLOSE:
            self.peer_closed = True
        elif kind is _ERROR and isinstance(msg.data, asyncio.TimeoutError):
            self.stats.heartbeat_timeouts += 1  # aiohttp's "No PONG received"
        elif self.close_code is None and not self.peer_closed:
            if kind is _CLOSED:  # TCP ended without a close frame (aiohttp says 1000)
                self.close_code = 1006
            elif kind is _ERROR:  # a protocol error (1002, 1007, 1009) or a lost peer
                self.close_code = getattr(msg.data, "code", 1006)

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


class Transported(Protocol):
    """A connection of a group: what the queue gauges read."""

    @property
    def transport(self) -> asyncio.BaseTransport | None: ...


class LiveSet:
    """Open connections by identity; cheap to add and remove, iterated only when asked.

    Beside the ``LiveConn``s of ``WebSocketResponse`` handlers, a server that serves its
    sockets itself adds its connections as a group (``add_group``): counted and read for the
    queue gauges, never drained from here (the server drains its own).
    """

    def __init__(self) -> None:
        self._conns: dict[int, LiveConn] = {}
        self._groups: list[tuple[str, Collection[Transported]]] = []

    def add_group(self, route: str, conns: Collection[Transported]) -> None:
        """Count ``conns`` (a live collection, e.g. a dict's values) as open on ``route``."""
        self._groups.append((route, conns))

    def add(self, conn: LiveConn) -> None:
        self._conns[id(conn)] = conn

    def discard(self, conn: LiveConn) -> None:
        self._conns.pop(id(conn), None)

    def __iter__(self) -> Iterator[LiveConn]:
        return iter(list(self._conns.values()))

    def values(self) -> list[LiveConn]:
        return list(self._conns.values())

    def __len__(self) -> int:
        return self.total()

    def total(self) -> int:
        return len(self._conns) + sum(len(conns) for _, conns in self._groups)

    def counts(self) -> dict[str, int]:
        """Open connections by route."""
        out: dict[str, int] = {}
        for conn in self._conns.values():
            out[conn.route] = out.get(conn.route, 0) + 1
        for route, conns in self._groups:
            out[route] = out.get(route, 0) + len(conns)
        return out

    def _transported(self) -> Iterator[Transported]:
        yield from self._conns.values()
        for _, conns in self._groups:
            yield from list(conns)

    def queue_bytes(self) -> tuple[int, int]:
        """(all bytes waiting in send buffers, the most on one connection)."""
        total = biggest = 0
        for conn in self._transported():
            transport = conn.transport
            if transport is None or transport.is_closing():
                continue
            n = transport.get_write_buffer_size()  # type: ignore[attr-defined]
            total += n
            biggest = max(biggest, n)
        return total, biggest
