"""Cheap raw WebSocket clients for load generation: one connection, or a pool of subscribers.

A load generator must cost far less per message than the server it measures, so these clients
are plain ``asyncio.Protocol`` objects: a hand-written HTTP upgrade (no permessage-deflate
offered) and a frame scanner that reads only frame headers, skipping payloads without copying
them, and counts complete text messages. Frames split across TCP reads are handled. Pings are
answered and a close is echoed, so the clients also work against servers with heartbeats.

Subscribers speak one of two dialects: ``raw`` (plain WebSocket text frames: wsops, the naive
aiohttp and Node ``ws`` peers) or ``socketio`` (Engine.IO v4 / Socket.IO v5 over the WebSocket
transport, see ``SocketIOClient``). Either way only deliveries are counted.

Latency: a publish whose data string starts with ``@`` and 19 digits (``stamp_data``) carries
its send time, ``time.monotonic_ns()`` of the publisher (CLOCK_MONOTONIC: one clock for every
process of the machine). While a pool's ``arm(latency=True)`` holds, each subscriber reads that
stamp from every delivery it gets and adds ``now - stamp`` to the pool's ``Latencies``.

``bench/loadworker.py`` runs a ``SubscriberPool`` in a process of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from wsops.loadtest.latency import Latencies
from wsops.loadtest.rawclient import (  # noqa: F401 (re-exported for the bench scripts)
    OP_TEXT,
    HandshakeError,
    RawWebSocket,
    Tally,
    client_frame,
    connect,
)

DIALECTS = ("raw", "socketio")
SOCKETIO_PATH = "/socket.io/?EIO=4&transport=websocket"
_STAMP = b'"@'


def stamp_data(stamp_ns: int, rest: str, size: int = 64) -> str:
    """A ``size``-character data string carrying ``stamp_ns`` (see the module docstring)."""
    return f"@{stamp_ns:019d}-{rest}".ljust(size, "x")[:size]


def record_latency(latencies: Latencies, payload: bytes) -> None:
    """Add the age of the stamp in ``payload`` (if any) to ``latencies``."""
    i = payload.find(_STAMP)
    if i >= 0:
        with contextlib.suppress(ValueError):
            latencies.add((time.monotonic_ns() - int(payload[i + 2 : i + 21])) / 1e9)


class Subscriber(RawWebSocket):
    """A raw subscriber: every text message is a delivery. Payloads are only looked at while
    ``latencies`` is set (``SubscriberPool.arm`` hands the scanner ``on_text`` then)."""

    latencies: Latencies | None = None

    def on_text(self, payload: bytes) -> None:
        if self.latencies is not None:
            record_latency(self.latencies, payload)


class SocketIOClient(RawWebSocket):
    """A Socket.IO v5 client on Engine.IO v4's WebSocket transport (no HTTP polling first).

    Connect to ``SOCKETIO_PATH``. The server opens with ``0{...}`` (Engine.IO open); the client
    answers ``40`` (Socket.IO connect to the ``/`` namespace), and the server's ``40{"sid":...}``
    resolves ``first_text``. Server pings ``2`` are answered with ``3``. Only event packets
    (``42[...]``) count, as deliveries, in ``texts`` and the tally; ``event_frame`` builds one.
    """

    wants_text = True

    def __init__(self, host: str, port: int, path: str = SOCKETIO_PATH,
                 tally: Tally | None = None) -> None:
        super().__init__(host, port, path, tally)
        self.events = 0
        self.latencies: Latencies | None = None

    @staticmethod
    def event_frame(event: str, data_json: str) -> bytes:
        """A masked client frame of the event ``event`` with one argument (JSON text)."""
        return client_frame(b'42["%s",%s]' % (event.encode(), data_json.encode()))

    def data_received(self, data: bytes) -> None:
        if not self.upgraded.done():
            data = self._handshake(data)
            if not data:
                return
        before = self.events
        self.scanner.feed(data)
        if self.events > before and self.tally is not None:
            self.tally.add(self.events - before)

    def on_text(self, payload: bytes) -> None:
        if payload[:2] == b"42":
            self.events += 1
            if self.latencies is not None:
                record_latency(self.latencies, payload)
        elif payload[:1] == b"2":
            self.send(b"3" + payload[1:])  # Engine.IO ping -> pong
        elif payload[:1] == b"0":
            self.send(b"40")  # Engine.IO open -> Socket.IO connect to "/"
        elif payload[:2] == b"40":
            if not self.first_text.done():
                self.first_text.set_result(None)
        elif payload[:2] == b"44" and not self.first_text.done():
            self.first_text.set_exception(ConnectionError(f"connect_error {payload[2:]!r}"))
            self.first_text.exception()

    @property
    def texts(self) -> int:
        return self.events


class EchoClient(RawWebSocket):
    """Publishes to a room of its own with exactly one publish in flight.

    ``start(frames)`` sends the first publish frame; each time the room's ``message`` frame
    comes back (the delivery of that publish to this subscriber), the next frame goes out from
    ``data_received`` itself, with no task switch. ``done`` resolves once the last frame came
    back, or, after ``stop()``, once the one in flight did. The client must be subscribed to
    ``room`` first (see ``subscribe``).
    """

    wants_text = True

    def __init__(self, host: str, port: int, path: str, room: str) -> None:
        super().__init__(host, port, path)
        self.room = room
        # The server encodes "op" then "room" first; the closing quote keeps echo-1 from
        # matching echo-10.
        self._mine = b'{"op":"message","room":%s,' % json.dumps(room).encode()
        self._frames: list[bytes] = []
        self._stopping = False
        self.echoed = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def subscribe(self, req_id: int = 1, time_limit: float = 10.0) -> None:
        """Subscribe to the room and wait for the first text frame (the reply)."""
        self.send(json.dumps({"op": "subscribe", "room": self.room, "id": req_id},
                             separators=(",", ":")).encode())
        await asyncio.wait_for(asyncio.shield(self.first_text), time_limit)

    def start(self, frames: list[bytes]) -> asyncio.Future[None]:
        """Run through ``frames`` (masked publish frames, see ``client_frame``), one at a time."""
        self._frames = frames
        self._stopping = False
        self.echoed = 0
        self.done = asyncio.get_running_loop().create_future()
        if frames:
            self.write_raw(frames[0])
        else:
            self.done.set_result(None)
        return self.done

    def stop(self) -> None:
        """Send no further publish; ``done`` resolves when the one in flight comes back."""
        self._stopping = True

    def on_text(self, payload: bytes) -> None:
        if not payload.startswith(self._mine):
            return  # the reply to the publish, or anything else
        self.echoed += 1
        if self.echoed < len(self._frames) and not self._stopping:
            self.write_raw(self._frames[self.echoed])
        elif not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.done.done():
            self.done.set_exception(ConnectionError("connection lost"))
            self.done.exception()


class SubscriberPool:
    """Many subscribers sharing one ``Tally``; each may send one subscribe frame and await
    its first text frame (the reply) before it counts as ready. ``dialect="socketio"``
    subscribers instead await their Socket.IO connect (and send nothing else)."""

    def __init__(self, host: str, port: int, path: str = "/ws", dialect: str = "raw") -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}")
        self.host, self.port, self.path, self.dialect = host, port, path, dialect
        self.tally = Tally()
        self.latencies = Latencies()
        self.conns: list[Subscriber | SocketIOClient] = []
        self.failures: list[str] = []
        self._base_total = 0
        self._base_each: list[int] = []

    async def open(
        self,
        n: int,
        subscribe: bytes | Callable[[int], bytes] | None = None,
        *,
        concurrency: int = 100,
        time_limit: float = 30.0,
    ) -> None:
        """Open ``n`` subscribers, ``concurrency`` handshakes at a time, within ``time_limit``.
        ``subscribe`` is the frame each sends first, or a function of the subscriber's index
        (0 to ``n - 1``) returning it."""
        gate = asyncio.Semaphore(concurrency)
        host, port, path, tally = self.host, self.port, self.path, self.tally
        socketio = self.dialect == "socketio"

        def factory() -> RawWebSocket:
            if socketio:
                return SocketIOClient(host, port, path, tally)
            return Subscriber(host, port, path, tally)

        async def one(k: int) -> None:
            async with gate:
                try:
                    async with asyncio.timeout(10.0):
                        ws = await connect(host, port, path, factory=factory)
                except (OSError, TimeoutError, HandshakeError) as exc:
                    self.failures.append(repr(exc))
                    return
                assert isinstance(ws, Subscriber | SocketIOClient)
                self.conns.append(ws)
                if subscribe is not None or socketio:
                    if subscribe is not None:
                        ws.send(subscribe(k) if callable(subscribe) else subscribe)
                    try:
                        await asyncio.wait_for(ws.first_text, 10.0)
                    except (ConnectionError, TimeoutError) as exc:
                        self.failures.append(f"subscribe: {exc!r}")

        tasks = [asyncio.ensure_future(one(k)) for k in range(n)]
        _, pending = await asyncio.wait(tasks, timeout=time_limit)
        for task in pending:
            task.cancel()
        if pending:
            self.failures.append(f"{len(pending)} connects timed out")
            await asyncio.gather(*pending, return_exceptions=True)

    async def settle(self, quiet: float = 0.3, time_limit: float = 30.0) -> int:
        """Wait until no text message arrived for ``quiet`` seconds; returns the total."""
        end = time.monotonic() + time_limit
        last = -1
        while time.monotonic() < end and last != self.tally.total:
            last = self.tally.total
            await asyncio.sleep(quiet)
        return self.tally.total

    def arm(self, latency: bool = False) -> None:
        """Take the current counts as the baseline of the next measurement; with ``latency``,
        record the latency of each delivery from now on (into a fresh ``latencies``)."""
        self._base_total = self.tally.total
        self._base_each = [c.texts for c in self.conns]
        self.latencies = Latencies()
        for c in self.conns:
            c.latencies = self.latencies if latency else None
            if isinstance(c, Subscriber):
                # Raw subscribers skip payloads unseen unless a latency is wanted.
                c.scanner.on_text = c.on_text if latency else None

    async def wait_each(self, each: int, time_limit: float) -> dict[str, Any]:
        """Wait until the pool received ``each`` messages per subscriber since ``arm``."""
        t0 = time.monotonic()
        done = await self.tally.wait_for(self._base_total + each * len(self.conns), time_limit)
        return self.report(done, time.monotonic() - t0)

    def report(self, done: bool = True, waited: float = 0.0) -> dict[str, Any]:
        got = [c.texts - b for c, b in zip(self.conns, self._base_each, strict=False)]
        codes: dict[str, int] = {}
        for c in self.conns:
            if c.closed.done():
                key = str(c.close_code)
                codes[key] = codes.get(key, 0) + 1
        return {
            "done": done,
            "waited": waited,
            "subscribers": len(self.conns),
            "received": self.tally.total - self._base_total,
            "min_each": min(got, default=0),
            "max_each": max(got, default=0),
            "closed": codes,
            "failures": self.failures[:5],
            "failure_count": len(self.failures),
        }

    async def close(self, time_limit: float = 5.0) -> None:
        """Close every subscriber; abort those the server has not closed within the limit."""
        for c in self.conns:
            c.close()
        if self.conns:
            await asyncio.wait([asyncio.ensure_future(c.closed) for c in self.conns],
                               timeout=time_limit)
        for c in self.conns:
            if c.transport is not None:
                c.transport.abort()
