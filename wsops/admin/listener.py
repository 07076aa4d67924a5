"""An HTTP listener on its own host and port, started and stopped with the main app.

Operational endpoints live on the admin listener and never on the public WebSocket port. Other
layers add routes (``/metrics``, ``/admin/*``) and readiness checks before the main app starts.
The server API for backends (``wsops.api``) is a ``Listener`` of its own with the same bounds.

Like the WebSocket port, the listener cuts a connection that has not sent a whole request within
its handshake timeout (``bounded_runner``, the one place both ports get that bound from), and it
holds at most ``max_connections`` connections: past the cap a new connection gets a bare HTTP
503 and is closed at once, before anything is parsed. Idle keep-alive connections count too, and
are closed after the same timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from aiohttp import web

from wsops.admin.access import admin_auth, token_from_env
from wsops.admin.advertise import advertised_url

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], str | None]
"""Returns a reason when the node must not receive traffic, else None."""

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
"""Seconds a connection may take to send a whole request (``--handshake-timeout``)."""
DEFAULT_MAX_CONNECTIONS = 64
"""Connections the admin listener holds at once (``--admin-max-connections``)."""


def full_response(name: str) -> bytes:
    """What a connection past the cap gets before it is closed (what it sends is never
    parsed)."""
    text = f"{name} is at its connection cap: retry shortly\n".encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
            % (len(text), text))


REFUSAL_LOG_EVERY = 10.0
REFUSAL_LINGER = 1.0
MAX_LINGERING = 256
"""Refused connections reading their 503 at once (a few KiB each); past it they are closed."""
"""Seconds a refused connection may take to read its 503 and hang up."""


def bounded_runner(app: web.Application, handshake_timeout: float, **kw: Any) -> web.AppRunner:
    """An AppRunner whose connections must send a whole request within ``handshake_timeout``.

    aiohttp's keep-alive timer starts when the TCP connection does and is not reset by partial
    data: it bounds how long a client may take to send its request (slowloris). Timeouts are
    not rounded up to the next second (aiohttp rounds those over 5 s): rounded, every
    connection opened within one second would ping at the same instant, and at 10K
    connections that burst stalled deliveries for ~0.6 s every heartbeat.
    """
    return web.AppRunner(app, keepalive_timeout=handshake_timeout,
                         timeout_ceil_threshold=1e9, **kw)


class _Slot(asyncio.Protocol):
    """One accepted connection: served by aiohttp's handler if a slot is free when it arrives,
    else answered 503 and closed. Counting here, in ``connection_made``, holds the cap exactly
    even when a burst of connections is accepted in one loop iteration.

    A refused connection is half-closed after the 503 and what it sends is read and dropped
    until it hangs up (at most ``REFUSAL_LINGER`` seconds): closing a socket with unread data
    sends a reset, which can destroy the 503 before the client reads it. At most
    ``MAX_LINGERING`` refusals linger at once; past that they are closed outright.
    """

    __slots__ = ("inner", "linger", "listener")

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.inner: asyncio.Protocol | None = None
        self.linger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        inner = self.listener._take_slot()
        if inner is not None:
            self.inner = inner
            inner.connection_made(transport)
            return
        stream = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport subclass
        listener = self.listener
        stream.write(listener.full_response)
        if listener.lingering < MAX_LINGERING and stream.can_write_eof():
            listener.lingering += 1
            stream.write_eof()
            self.linger = asyncio.get_running_loop().call_later(REFUSAL_LINGER, stream.close)
        else:
            stream.close()

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None  # None: close

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.linger is not None:
            self.linger.cancel()
            self.linger = None
            self.listener.lingering -= 1
        inner, self.inner = self.inner, None
        if inner is not None:
            try:
                inner.connection_lost(exc)
            finally:
                self.listener.open_connections -= 1


class Listener:
    """An aiohttp app served on ``host:port`` (port 0 picks a free one), within a handshake
    timeout and a connection cap.

    ``advertise_url`` is the URL other hosts reach it at (the fleet registry shows it); unset, it
    is ``http://host:port`` with a routable address of this host in place of a wildcard host.
    """

    def __init__(self, name: str, app: web.Application, host: str = "127.0.0.1", port: int = 0,
                 *, handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 advertise_url: str | None = None) -> None:
        if handshake_timeout <= 0 or max_connections < 1:
            raise ValueError(f"{name}: handshake_timeout must be > 0 and max_connections >= 1")
        self.name = name
        self.full_response = full_response(name)
        self.app = app
        self.host = host
        self.requested_port = port
        self.handshake_timeout = handshake_timeout
        self.max_connections = max_connections
        self.configured_advertise_url = advertise_url
        self.advertise_url = advertise_url or ""
        self.started_at = time.time()
        self.open_connections = 0
        self.refused_connections = 0
        self.lingering = 0  # refused connections reading their 503
        self._last_refusal_log = 0.0
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self.port: int | None = None

    def _take_slot(self) -> asyncio.Protocol | None:
        """aiohttp's handler for a new connection, or None at the cap."""
        server = self._runner.server if self._runner is not None else None
        if server is None or self.open_connections >= self.max_connections:
            self.refused_connections += 1
            now = time.monotonic()
            if now - self._last_refusal_log >= REFUSAL_LOG_EVERY:
                self._last_refusal_log = now
                log.warning("%s %s at its cap of %d connections: refusing new ones "
                            "(%d so far)", self.name, self.url, self.max_connections,
                            self.refused_connections)
            return None
        self.open_connections += 1
        return server()

    async def start(self) -> None:
        self._runner = bounded_runner(self.app, self.handshake_timeout, access_log=None)
        await self._runner.setup()
        loop = asyncio.get_running_loop()
        # Our own server rather than a TCPSite: each connection goes through _Slot first.
        self._server = await loop.create_server(lambda: _Slot(self), self.host,
                                                self.requested_port)
        sockets = self._server.sockets or ()
        self.port = sockets[0].getsockname()[1] if sockets else self.requested_port
        self.advertise_url = await advertised_url(self.host, self.port,
                                                  self.configured_advertise_url)
        if self.advertise_url != self.url:
            log.info("%s %s advertised as %s", self.name, self.url, self.advertise_url)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()  # no new connections; the runner closes the open ones
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    @property
    def url(self) -> str:
        """Where this listener is bound (a wildcard host stays as it is)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class AdminListener(Listener):
    """The admin listener: ``/healthz``, ``/readyz`` (its readiness checks) and what other
    layers add, behind the admin token (``admin_auth``: none given, loopback callers only)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None, *,
                 handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 advertise_url: str | None = None) -> None:
        super().__init__("admin listener", web.Application(middlewares=[admin_auth(token)]),
                         host, port, handshake_timeout=handshake_timeout,
                         max_connections=max_connections, advertise_url=advertise_url)
        self.token = token  # checked against callers; never sent to another node
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.checks: list[ReadinessCheck] = []

    def add_readiness_check(self, check: ReadinessCheck) -> None:
        self.checks.append(check)

    def not_ready_reasons(self) -> list[str]:
        return [reason for check in self.checks if (reason := check()) is not None]

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "uptime_seconds": time.time() - self.started_at})

    async def _readyz(self, request: web.Request) -> web.Response:
        reasons = self.not_ready_reasons()
        if reasons:
            return web.json_response({"ready": False, "reasons": reasons}, status=503)
        return web.json_response({"ready": True})


ADMIN_KEY = web.AppKey("wsops_admin", AdminListener)


def attach_admin(
    app: web.Application, host: str, port: int, token: str | None = None, *,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS, advertise_url: str | None = None,
) -> AdminListener:
    """Serve an AdminListener for as long as ``app`` runs; reuses one already attached.

    ``token`` protects ``/admin/*`` (default: ``WSOPS_ADMIN_TOKEN``; none: loopback only).
    """
    existing = app.get(ADMIN_KEY)
    if existing is not None:
        return existing
    listener = AdminListener(host, port, token if token is not None else token_from_env(),
                             handshake_timeout=handshake_timeout,
                             max_connections=max_connections, advertise_url=advertise_url)
    app[ADMIN_KEY] = listener

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await listener.start()
        yield
        await listener.stop()

    app.cleanup_ctx.append(lifecycle)
    return listener
