"""The per-message hooks of ``instrument(app)``: one prepared ``WebSocketResponse``'s own
``receive``, ``send_str``, ``send_bytes`` and ``close`` replaced on that instance (never on
aiohttp's class, so other apps in the process are untouched; ``async for msg in ws`` goes
through ``receive``).

Measured with callgrind on a user's echo app (``bench/plainapp.py``): giving the response a
counting subclass instead (``ws.__class__ = ...``) costs ~3,600 more instructions per message
than these four attributes, because CPython turns the instance's inline attribute values into
a dict on a class change and every attribute access of aiohttp's own methods then goes the
slow way. So: attributes, the common case (an untraced text message) counted by one call of a
``pycounts.Counts`` method per figure (compiled where it could be built; bound once as closure
variables), and a sent message counted synchronously when it is handed to aiohttp (no
coroutine of its own; a send that then fails on a closing connection is still counted).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

from aiohttp import WSMsgType, web

from wsops.instrumentation.live import LiveConn, utf8_len

_TEXT, _BINARY = WSMsgType.TEXT, WSMsgType.BINARY
_BINARY_KEY = "binary"
_perf = time.perf_counter


def count(ws: web.WebSocketResponse, live: LiveConn) -> None:
    """Count ``ws``'s messages into ``live`` and its route's stats from now on: text messages
    only in the size histograms (``RouteStats.derive_in``/``derive_out`` make the message and
    byte totals of them before a collection), binary ones also in ``messages_*["binary"]``."""
    stats = live.stats
    # One call of a ``Counts`` method per update (compiled where it could be built).
    observe_latency = stats.handler_latency.observe_since
    observe_in, observe_out = stats.size_in.observe, stats.size_out.observe
    messages_out = stats.messages_out
    orig_receive, orig_close = ws.receive, ws.close
    orig_send_str, orig_send_bytes = ws.send_str, ws.send_bytes

    async def receive(timeout: float | None = None) -> Any:  # noqa: ASYNC109 (aiohttp's)
        handled = live.handled_at
        if handled:  # the previous message is handled now
            if live.span is None:
                observe_latency(handled)
            else:
                live.before_receive()
        msg = await orig_receive(timeout)
        if msg[0] is _TEXT and live.tracing is None:  # msg.type (a NamedTuple; [0] is cheaper)
            data = msg[1]
            observe_in(len(data) if data.isascii() else utf8_len(data))
            live.handled_at = _perf()
        else:
            live.handled_at = 0.0
            live.after_receive(msg)
        return msg

    def send_str(data: str, compress: int | None = None) -> Awaitable[None]:
        if isinstance(data, str):  # else aiohttp's TypeError when awaited
            observe_out(len(data) if data.isascii() else len(data.encode()))
        return orig_send_str(data, compress)

    def send_bytes(data: bytes, compress: int | None = None) -> Awaitable[None]:
        if isinstance(data, (bytes, bytearray, memoryview)):
            observe_out(len(data))
            messages_out[_BINARY_KEY] += 1
        return orig_send_bytes(data, compress)

    async def close(*, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        if live.close_code is None and ws._close_code is None and not ws._closing:
            # Server-initiated: aiohttp sets its close code before it closes on its own
            # inside receive() (end of stream, a protocol error), and a peer's close frame
            # marks the response closing.
            live.close_code = code
        return await orig_close(code=code, message=message, drain=drain)

    ws.receive = receive  # type: ignore[method-assign]
    ws.send_str = send_str  # type: ignore[method-assign,assignment]
    ws.send_bytes = send_bytes  # type: ignore[method-assign,assignment]
    ws.close = close  # type: ignore[method-assign]
