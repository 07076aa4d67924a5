"""Cheap raw WebSocket clients for load generation (the load generator's wire).

A load generator must cost far less per message than the server it measures, so these clients
are plain ``asyncio.Protocol`` objects: a hand-written HTTP upgrade (no permessage-deflate
offered) and a frame scanner that reads only frame headers, skipping payloads without copying
them, and counts complete text messages. Frames split across TCP reads are handled. Pings are
answered and a close is echoed, so the clients also work against servers with heartbeats.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Callable
from typing import cast

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

    def __init__(self, host: str, port: int, path: str, tally: Tally | None = None,
                 headers: bytes = b"") -> None:
        self._request_key = base64.b64encode(os.urandom(16))
        self._headers = headers  # extra header lines, each ending with CRLF
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
        self.close_reason = ""

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        transport = self.transport
        transport.write(
            b"GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
            % (self._path.encode(), self._host.encode(), self._request_key, self._headers)
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
                self.close_reason = payload[2:].decode(errors="replace")
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


async def connect(
    host: str, port: int, path: str = "/ws", *, tally: Tally | None = None,
    factory: Callable[[], RawWebSocket] | None = None, local_addr: str | None = None,
) -> RawWebSocket:
    """Open one upgraded connection (bound it with ``asyncio.timeout`` at the call site);
    ``factory`` makes the protocol object (default: a ``RawWebSocket`` counting into ``tally``),
    ``local_addr`` picks the source address (any port)."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(
        factory or (lambda: RawWebSocket(host, port, path, tally)), host, port,
        local_addr=(local_addr, 0) if local_addr else None,
    )
    try:
        await proto.upgraded
    except BaseException:
        transport.abort()
        raise
    return proto
