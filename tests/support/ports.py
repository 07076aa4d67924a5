"""Free loopback ports for tests: one to hand to a process, or an aiohttp app served on one."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web


def free_port() -> int:
    """A loopback port that was free a moment ago (for a process that binds it itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serving(app: web.Application, **runner: Any) -> AsyncIterator[int]:
    """Serve ``app`` on a free loopback port (yielded) for the block's duration."""
    app_runner = web.AppRunner(app, **runner)
    await app_runner.setup()
    await web.TCPSite(app_runner, "127.0.0.1", 0).start()
    try:
        yield app_runner.addresses[0][1]
    finally:
        await app_runner.cleanup()
