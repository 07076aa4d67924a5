"""Raw TCP WebSocket helpers for tests that need frames (or a handshake) no client library
would send."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import time


async def open_raw(
    port: int, path: str = "/ws", headers: dict[str, str] | None = None, rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    """Connect and send an upgrade request; returns the HTTP status of the answer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**16)
    key = base64.b64encode(os.urandom(16)).decode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"{extra}\r\n"
        ).encode()
    )
    # Bounded: a server that never answers the upgrade fails the test instead of hanging it
    # (a fresh-clone CI run once sat 20 minutes in a chaos test with the loop idle).
    async with asyncio.timeout(10):
        status_line = await reader.readline()
        status = int(status_line.split()[1])
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
    return reader, writer, status


def client_frame(payload: bytes, opcode: int = 0x1, fin: bool = True) -> bytes:
    """A masked client frame with any payload (valid or not)."""
    mask = os.urandom(4)
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        header = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked server frame: (opcode, payload)."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    return b0 & 0x0F, await reader.readexactly(n)


async def read_close_code(reader: asyncio.StreamReader, timeout: float = 5.0) -> int | None:
    """Skip frames until a close frame; its code, or None if the socket just ended."""
    async def _read() -> int | None:
        while True:
            try:
                op, payload = await read_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            if op == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005

    return await asyncio.wait_for(_read(), timeout)


UPGRADE = ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


async def slowloris(port: int, byte_every: float) -> tuple[float, int]:
    """Send the upgrade one byte at a time; (seconds until the server hung up, bytes sent).

    The clock starts before the connection does, so the time can only be longer than the
    server's, never shorter, however late this coroutine runs on a loaded machine."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    closed = asyncio.create_task(reader.read())  # b"" at EOF: no answer is ever sent
    try:
        for ch in UPGRADE.encode():
            writer.write(bytes([ch]))
            sent += 1
            try:
                await asyncio.wait_for(asyncio.shield(closed), byte_every)
                break
            except TimeoutError:
                continue
        assert await asyncio.wait_for(closed, 15) == b""
    finally:
        writer.close()
    return time.monotonic() - started, sent
