"""Shared fixtures: a real wsops server on free loopback ports, in the test's event loop."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.support.ports import serving
from tests.support.redisproc import RedisProc, redis_server_binary
from tests.support.wsclient import RawClient
from wsops.admin.listener import ADMIN_KEY, AdminListener
from wsops.config import Settings
from wsops.server.app import NODE_KEY, Node, running


@dataclass
class LiveServer:
    """A running server: its URLs, app and node."""

    app: web.Application
    port: int
    settings: Settings

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def node(self) -> Node:
        return self.app[NODE_KEY]

    @property
    def admin_url(self) -> str:
        return self.app[ADMIN_KEY].url


ServerFactory = Callable[..., Awaitable[LiveServer]]


@pytest.fixture
async def server_factory() -> AsyncIterator[ServerFactory]:
    """Start servers with ``Settings`` overrides; all are stopped after the test."""
    stack = contextlib.AsyncExitStack()

    async def start(**overrides: Any) -> LiveServer:
        base: dict[str, Any] = {
            "host": "127.0.0.1", "port": 0, "admin_port": 0, "allow_anonymous": True,
        }
        settings = Settings(**{**base, **overrides})
        app, _runner, port = await stack.enter_async_context(running(settings))
        return LiveServer(app, port, settings)

    async with stack:
        yield start


@pytest.fixture
async def server(server_factory: ServerFactory) -> LiveServer:
    """A server with default settings and anonymous access."""
    return await server_factory()


Connect = Callable[..., Awaitable[RawClient]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Open RawClients to a URL; all are closed after the test."""
    clients: list[RawClient] = []

    async def make(url: str, **kw: Any) -> RawClient:
        c = await RawClient.connect(url, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.close()


@pytest.fixture
def redis_proc() -> Iterator[RedisProc]:
    """A private redis-server on a free port (skips when the binary is missing)."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed")
    proc = RedisProc()
    proc.start()
    try:
        yield proc
    finally:
        proc.close()


@dataclass
class Trap:
    """An HTTP listener that records every request it gets (the ``trap`` fixture): where a
    rogue registry entry points, to prove nothing (least of all a token) is sent there."""

    url: str = ""
    requests: list[str] = field(default_factory=list)


@pytest.fixture
async def trap() -> AsyncIterator[Trap]:
    seen = Trap()

    async def record(request: web.Request) -> web.Response:
        seen.requests.append(f"{request.method} {request.path_qs} "
                             f"Authorization={request.headers.get('Authorization')!r}")
        return web.json_response({"connections": 999, "ready": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    async with serving(app) as port:
        seen.url = f"http://127.0.0.1:{port}"
        yield seen


@pytest.fixture
async def listeners() -> AsyncIterator[list[AdminListener]]:
    """Admin listeners a test starts (append them); all are stopped after it."""
    started: list[AdminListener] = []
    yield started
    for listener in started:
        await listener.stop()
