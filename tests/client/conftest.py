"""Fixtures for live client tests: clients with fast backoff, closed after each test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from aiohttp import WSMsgType, web

from tests.conftest import LiveServer
from tests.support.ports import serving
from wsops.client import Client, Event, PresenceEvent
from wsops.server.core.hub import Conn

MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """Connected ``Client``s (fast backoff unless overridden); all closed after the test."""
    clients: list[Client] = []

    async def make(url: str, token: str | None = None, **kw: Any) -> Client:
        kw.setdefault("backoff_base", 0.01)
        kw.setdefault("backoff_cap", 0.05)
        kw.setdefault("request_timeout", 5.0)
        client = Client(url, token, **kw)
        clients.append(client)
        await client.connect(timeout=5.0)
        return client

    yield make
    await asyncio.gather(*(c.close() for c in clients))


@dataclass
class Peer:
    """A WebSocket server that answers no request (the ``peer`` fixture): it records the text
    frames and the pings it receives, and answers pings only while ``pong`` is true."""

    url: str = ""
    frames: list[str] = field(default_factory=list)
    pings: int = 0
    pong: bool = True


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    seen = Peer()

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)  # pings reach this handler
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                seen.frames.append(msg.data)
            elif msg.type is WSMsgType.PING:
                seen.pings += 1
                if seen.pong:
                    await ws.pong(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handle)
    async with serving(app, shutdown_timeout=1.0) as port:
        seen.url = f"ws://127.0.0.1:{port}/ws"
        yield seen


def server_conn(server: LiveServer, client: Client) -> Conn:
    """The server's side of the client's current connection (matched by address)."""
    ws = client._ws
    assert ws is not None, "client is not connected"
    local = ws.get_extra_info("sockname")
    for conn in server.node.hub.conns.values():
        transport: Any = conn.transport  # an asyncio transport (the core types it as a Sink)
        if transport.get_extra_info("peername") == local:
            return conn
    raise AssertionError(f"no server connection from {local}")


async def collect(
    stream: AsyncIterator[Event], n: int, timeout: float = 5.0, *, presence: bool = False
) -> list[Event]:
    """The next ``n`` events of a stream, skipping presence events unless asked for."""
    out: list[Event] = []

    async def take() -> None:
        async for event in stream:
            if isinstance(event, PresenceEvent) and not presence:
                continue
            out.append(event)
            if len(out) == n:
                return

    await asyncio.wait_for(take(), timeout)
    return out


def position(client: Client, room: str) -> tuple[int, str] | None:
    """The (offset, epoch) the client would resume ``room`` from."""
    entry = client._rooms.get(room)
    return entry.tracker.since() if entry is not None else None


SECRET = "client-tests-secret-" + "0123456789abcdef" * 4


def token(sub: str, rooms: list[str]) -> str:
    """An HS256 JWT for ``sub`` granting ``rooms`` (servers started with ``SECRET``)."""
    return jwt.encode(
        {"sub": sub, "exp": int(time.time()) + 60, "rooms": rooms}, SECRET, algorithm="HS256"
    )
