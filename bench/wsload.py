"""Cheap raw WebSocket clients for load generation: one connection, or a pool of subscribers.

A load generator must cost far less per message than the server it measures, so these clients
are plain ``asyncio.Protocol`` objects: a hand-written HTTP upgrade (no permessage-deflate
offered) and a frame scanner that reads only frame headers, skipping payloads without copying
them, and counts complete text messages. Frames split across TCP reads are handled. Pings are
answered and a close is echoed, so the clients also work against servers with heartbeats.

``bench/loadworker.py`` runs a ``SubscriberPool`` in a process of its own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any, cast

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HANDSHAKE = 16 * 1024


class HandshakeError(Exception):
    """The server did not answer the upgrade with a valid 101."""


def client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One complete, FIN, masked client frame (RFC 6455 5.2) with a random mask."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    if not n:
        return header + mask
    # XOR as one big integer: much faster in Python than a per-byte loop.
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return header + mask + masked


class FrameScanner:
    """Incremental reader of server frames that looks only at headers.

    Data-frame payloads are skipped (``_skip`` carries a payload that continues in a later
    read); control frames are small and are handed whole to ``on_control``. ``texts`` counts
    complete text messages (a FIN frame of a message that began with a text frame). With
    ``on_text``, unfragmented text frames are also kept whole and their payloads handed to it
    (fragmented ones are still only counted; the wsops server never fragments).
    """

    __slots__ = ("_in_text", "_pending", "_skip", "frames", "on_control", "on_text", "texts")

    def __init__(self, on_control: Callable[[int, bytes], None],
                 on_text: Callable[[bytes], None] | None = None) -> None:
        self._pending = b""
        self._skip = 0
        self._in_text = False
        self.on_control = on_control
        self.on_text = on_text
        self.texts = 0
        self.frames = 0

    def feed(self, data: bytes) -> int:
        """Consume one read; returns how many text messages it completed."""
        if self._pending:
            data = self._pending + data
            self._pending = b""
        end = len(data)
        pos = self._skip
        if pos >= end:
            self._skip = pos - end
            return 0
        texts = 0
        frames = 0
        in_text = self._in_text
        on_text = self.on_text
        while end - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            n = b1 & 0x7F
            hlen = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = (data[pos + 2] << 8) | data[pos + 3]
                hlen = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = int.from_bytes(data[pos + 2 : pos + 10], "big")
                hlen = 10
            if b1 & 0x80:  # servers must not mask; tolerate it rather than desync
                hlen += 4
            opcode = b0 & 0x0F
            frames += 1
            if opcode >= OP_CLOSE:
                if end - pos < hlen + n:
                    frames -= 1
                    break  # keep the whole control frame for the next read
                self.on_control(opcode, data[pos + hlen : pos + hlen + n])
            else:
                if opcode == OP_TEXT:
                    in_text = True
                    if on_text is not None and b0 & 0x80:
                        if end - pos < hlen + n:
                            frames -= 1
                            break  # keep the whole frame for the next read
                        on_text(data[pos + hlen : pos + hlen + n])
                elif opcode == OP_BINARY:
                    in_text = False
                if b0 & 0x80 and in_text:
                    texts += 1
            pos += hlen + n
        self._in_text = in_text
        if pos > end:
            self._skip = pos - end
        else:
            self._skip = 0
            if pos < end:
                self._pending = data[pos:]
        self.texts += texts
        self.frames += frames
        return texts


class Tally:
    """Text messages counted over many connections, with a waiter for a target total."""

    __slots__ = ("_waiter", "target", "total")

    def __init__(self) -> None:
        self.total = 0
        self.target = -1
        self._waiter: asyncio.Future[None] | None = None

    def add(self, k: int) -> None:
        self.total += k
        waiter = self._waiter
        if waiter is not None and self.total >= self.target and not waiter.done():
            waiter.set_result(None)

    async def wait_for(self, target: int, time_limit: float) -> bool:
        """Wait until ``total >= target``; False after ``time_limit`` seconds."""
        if self.total >= target:
            return True
        self.target = target
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._waiter, time_limit)
            return True
        except TimeoutError:
            return False
        finally:
            self._waiter = None
            self.target = -1


class RawWebSocket(asyncio.Protocol):
    """A minimal client connection: upgrade, count text messages, answer pings, echo close.

    A subclass that sets ``wants_text`` gets each unfragmented text payload in ``on_text``.
    """

    wants_text = False

    def __init__(self, host: str, port: int, path: str, tally: Tally | None = None) -> None:
        self._request_key = base64.b64encode(os.urandom(16))
        self._host = f"{host}:{port}"
        self._path = path
        self._head = b""
        self.tally = tally
        self.scanner = FrameScanner(self._on_control, self.on_text if self.wants_text else None)
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.upgraded: asyncio.Future[None] = loop.create_future()
        self.first_text: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.close_code: int | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        transport = self.transport
        transport.write(
            b"GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (self._path.encode(), self._host.encode(), self._request_key)
        )

    def data_received(self, data: bytes) -> None:
        if not self.upgraded.done():
            data = self._handshake(data)
            if not data:
                return
        k = self.scanner.feed(data)
        if k:
            if self.tally is not None:
                self.tally.add(k)
            if not self.first_text.done():
                self.first_text.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in (self.upgraded, self.first_text):
            if not fut.done():
                fut.set_exception(ConnectionError("connection lost"))
                fut.exception()  # mark retrieved: nobody may be waiting any more
        if not self.closed.done():
            self.closed.set_result(None)

    # -- helpers -------------------------------------------------------------------------------

    def _handshake(self, data: bytes) -> bytes:
        """Buffer the HTTP answer; returns the bytes after it once it is complete and valid."""
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _MAX_HANDSHAKE:
                self._fail(HandshakeError("oversized handshake answer"))
            return b""
        head, rest = self._head[:end], self._head[end + 4 :]
        self._head = b""
        lines = head.split(b"\r\n")
        status = lines[0].split(b" ", 2)
        if len(status) < 2 or status[1] != b"101":
            self._fail(HandshakeError(f"upgrade refused: {lines[0].decode(errors='replace')}"))
            return b""
        accept = base64.b64encode(hashlib.sha1(self._request_key + _WS_GUID).digest())
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if headers.get(b"sec-websocket-accept") != accept:
            self._fail(HandshakeError("bad Sec-WebSocket-Accept"))
            return b""
        self.upgraded.set_result(None)
        return rest

    def _fail(self, exc: Exception) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def _on_control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self.send(payload, OP_PONG)
        elif opcode == OP_CLOSE:
            if self.close_code is None:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.send(payload[:2], OP_CLOSE)
            if self.transport is not None:
                self.transport.close()

    def on_text(self, payload: bytes) -> None:
        """One text payload (only called when ``wants_text``)."""

    def send(self, payload: bytes, opcode: int = OP_TEXT) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(payload, opcode))

    def write_raw(self, frames: bytes) -> None:
        """Write pre-built client frames (see ``client_frame``) as they are."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frames)

    def close(self, code: int = 1000) -> None:
        """Send a close frame and drop the connection without waiting for the echo."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(code.to_bytes(2, "big"), OP_CLOSE))
            self.transport.close()

    @property
    def texts(self) -> int:
        return self.scanner.texts


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


async def connect(
    host: str, port: int, path: str = "/ws", *, tally: Tally | None = None,
    factory: Callable[[], RawWebSocket] | None = None,
) -> RawWebSocket:
    """Open one upgraded connection (bound it with ``asyncio.timeout`` at the call site);
    ``factory`` makes the protocol object (default: a ``RawWebSocket`` counting into ``tally``)."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(
        factory or (lambda: RawWebSocket(host, port, path, tally)), host, port
    )
    try:
        await proto.upgraded
    except BaseException:
        transport.abort()
        raise
    return proto


class SubscriberPool:
    """Many subscribers sharing one ``Tally``; each may send one subscribe frame and await
    its first text frame (the reply) before it counts as ready."""

    def __init__(self, host: str, port: int, path: str = "/ws") -> None:
        self.host, self.port, self.path = host, port, path
        self.tally = Tally()
        self.conns: list[RawWebSocket] = []
        self.failures: list[str] = []
        self._base_total = 0
        self._base_each: list[int] = []

    async def open(
        self,
        n: int,
        subscribe: bytes | None = None,
        *,
        concurrency: int = 100,
        time_limit: float = 30.0,
    ) -> None:
        """Open ``n`` subscribers, ``concurrency`` handshakes at a time, within ``time_limit``."""
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                try:
                    async with asyncio.timeout(10.0):
                        ws = await connect(self.host, self.port, self.path, tally=self.tally)
                except (OSError, TimeoutError, HandshakeError) as exc:
                    self.failures.append(repr(exc))
                    return
                self.conns.append(ws)
                if subscribe is not None:
                    ws.send(subscribe)
                    try:
                        await asyncio.wait_for(ws.first_text, 10.0)
                    except (ConnectionError, TimeoutError) as exc:
                        self.failures.append(f"subscribe: {exc!r}")

        tasks = [asyncio.ensure_future(one()) for _ in range(n)]
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

    def arm(self) -> None:
        """Take the current counts as the baseline of the next measurement."""
        self._base_total = self.tally.total
        self._base_each = [c.texts for c in self.conns]

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
