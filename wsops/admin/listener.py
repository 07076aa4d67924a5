"""An HTTP listener on its own host and port, started and stopped with the main app.

Operational endpoints live here and never on the public WebSocket port. Other layers add routes
(``/metrics``, ``/admin/*``) and readiness checks before the main app starts.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from wsops.admin.auth import admin_auth, token_from_env

ReadinessCheck = Callable[[], str | None]
"""Returns a reason when the node must not receive traffic, else None."""


class AdminListener:
    """A small aiohttp app served on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None) -> None:
        self.host = host
        self.requested_port = port
        self.token = token  # for calls to other nodes' admin APIs (the fleet page)
        self.app = web.Application(middlewares=[admin_auth(token)])
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.checks: list[ReadinessCheck] = []
        self.started_at = time.time()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port: int | None = None

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

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.requested_port)
        await self._site.start()
        server = self._site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.requested_port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


ADMIN_KEY = web.AppKey("wsops_admin", AdminListener)


def attach_admin(
    app: web.Application, host: str, port: int, token: str | None = None
) -> AdminListener:
    """Serve an AdminListener for as long as ``app`` runs; reuses one already attached.

    ``token`` protects ``/admin/*`` (default: ``WSOPS_ADMIN_TOKEN``; none: loopback only).
    """
    existing = app.get(ADMIN_KEY)
    if existing is not None:
        return existing
    listener = AdminListener(host, port, token if token is not None else token_from_env())
    app[ADMIN_KEY] = listener

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await listener.start()
        yield
        await listener.stop()

    app.cleanup_ctx.append(lifecycle)
    return listener
