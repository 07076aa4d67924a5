"""A minimal RESP2 connection for Redis pub/sub: (S)SUBSCRIBE, (S)UNSUBSCRIBE, PING and pushes.

redis-py's ``PubSub`` costs about 30 us of CPU per received message (retry and observability
layers on every read) against about 7 us here, and reconnects and resubscribes by itself, which
would hide exactly the outage the broker must notice. This connection does neither: the caller
owns reconnection. Every frame is parsed in ``data_received`` and handed on synchronously.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl as ssl_module
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit


class RespError(Exception):
    """An error reply (``-ERR ...``)."""


Item = bytes | int | None
Push = list[Item] | bytes | RespError


def encode_command(*args: bytes | str) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def parse(buf: bytes, pos: int, out: list[Push]) -> int:
    """Parse every complete reply in ``buf[pos:]`` into ``out``; returns where parsing stopped.

    Arrays hold bulk strings, integers or nulls (all pub/sub replies do); a simple string is
    returned as bytes and an error as ``RespError``. Raises ValueError on anything else.
    """
    n = len(buf)
    while pos < n:
        kind = buf[pos]
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return pos
        if kind == 42:  # '*'
            count = int(buf[pos + 1:end])
            p = end + 2
            items: list[Item] = []
            for _ in range(count):
                if p >= n:
                    return pos
                e = buf.find(b"\r\n", p)
                if e < 0:
                    return pos
                t = buf[p]
                if t == 36:  # '$'
                    size = int(buf[p + 1:e])
                    if size < 0:
                        items.append(None)
                        p = e + 2
                        continue
                    start = e + 2
                    if start + size + 2 > n:
                        return pos
                    items.append(buf[start:start + size])
                    p = start + size + 2
                elif t == 58:  # ':'
                    items.append(int(buf[p + 1:e]))
                    p = e + 2
                else:
                    raise ValueError(f"unexpected RESP item type {chr(t)!r}")
            out.append(items)
            pos = p
        elif kind == 43:  # '+'
            out.append(buf[pos + 1:end])
            pos = end + 2
        elif kind == 45:  # '-'
            out.append(RespError(buf[pos + 1:end].decode(errors="replace")))
            pos = end + 2
        else:
            raise ValueError(f"unexpected RESP reply type {chr(kind)!r}")
    return pos


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to connect, from a ``redis://`` / ``rediss://`` URL."""

    host: str = "127.0.0.1"
    port: int = 6379
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError("the broker URL must be redis://HOST:PORT/DB or rediss://...")
        return cls(
            parts.hostname or "127.0.0.1", parts.port or 6379,
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
            parts.scheme == "rediss",
        )


class _Protocol(asyncio.Protocol):
    def __init__(self, conn: PubSubConnection) -> None:
        self.conn = conn

    def data_received(self, data: bytes) -> None:
        self.conn._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn._lost(exc)


class PubSubConnection:
    """One subscriber connection. ``on_push`` gets each reply; ``closed`` resolves on loss."""

    def __init__(self, on_push: Callable[[Push], None]) -> None:
        self.on_push = on_push
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[Exception | None] = (
            asyncio.get_running_loop().create_future())
        self.last_rx = 0.0
        self._buf = b""
        self._out: list[Push] = []

    @classmethod
    async def open(
        cls, endpoint: Endpoint, on_push: Callable[[Push], None], within: float,
        name: str | None = None,
    ) -> PubSubConnection:
        """Connect (AUTH, then CLIENT SETNAME ``name``) within ``within`` seconds; raises
        OSError or RespError."""
        conn = cls(on_push)
        loop = asyncio.get_running_loop()
        ctx = ssl_module.create_default_context() if endpoint.tls else None
        transport, _ = await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(conn), endpoint.host, endpoint.port,
                                   ssl=ctx), within)
        conn.transport = transport  # (under uvloop, not an asyncio.Transport subclass)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.last_rx = loop.time()
        if endpoint.password is not None:
            await conn._auth(endpoint, within)
        if name:
            conn.write("CLIENT", "SETNAME", name)
        return conn

    async def _auth(self, endpoint: Endpoint, within: float) -> None:
        reply: asyncio.Future[Push] = asyncio.get_running_loop().create_future()
        self.on_push, forward = reply.set_result, self.on_push
        args = ["AUTH", endpoint.password or ""]
        if endpoint.username:
            args.insert(1, endpoint.username)
        self.write(*args)
        try:
            result = await asyncio.wait_for(asyncio.shield(reply), within)
        except BaseException:
            self.close()
            raise
        finally:
            self.on_push = forward
        if isinstance(result, RespError):
            self.close()
            raise result

    def write(self, *args: bytes | str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_command(*args))

    def subscribe(self, channels: Iterable[bytes], sharded: bool = False) -> None:
        """``SUBSCRIBE`` them, or ``SSUBSCRIBE`` each (a cluster's shard channels: one
        command per channel, which may each be in another slot), in one write."""
        self._each(b"SSUBSCRIBE" if sharded else b"SUBSCRIBE", list(channels), sharded)

    def unsubscribe(self, channels: Iterable[bytes], sharded: bool = False) -> None:
        self._each(b"SUNSUBSCRIBE" if sharded else b"UNSUBSCRIBE", list(channels), sharded)

    def _each(self, command: bytes, chans: list[bytes], each: bool) -> None:
        if not chans or self.transport is None or self.transport.is_closing():
            return
        if each:
            self.transport.write(b"".join(encode_command(command, c) for c in chans))
        else:
            self.transport.write(encode_command(command, *chans))

    def ping(self) -> None:
        self.write(b"PING")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _received(self, data: bytes) -> None:
        self.last_rx = asyncio.get_running_loop().time()
        buf = self._buf + data if self._buf else data
        out = self._out
        try:
            pos = parse(buf, 0, out)
        except ValueError as exc:
            self._lost(exc)
            self.close()
            return
        self._buf = buf[pos:] if pos < len(buf) else b""
        if out:
            self._out = []
            on_push = self.on_push
            for item in out:
                on_push(item)

    def _lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)

    @property
    def is_open(self) -> bool:
        return not self.closed.done()


def describe(url: str) -> dict[str, Any]:
    """The URL without its password, for stats and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return {"url": f"{parts.scheme}://{netloc}{parts.path}"}
