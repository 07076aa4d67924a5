"""``/admin/*`` on the admin listener: node stats, drain start/status/cancel, connection counts,
the fleet page (``wsops.admin.fleetpage``), leak profiling (``wsops.admin.profiling``) and
``/metrics``, all served from one ``NodeSurface``.

``mount_admin`` is the one way a node gets its admin API: the bundled server calls it with its
node's surface, ``wsops.instrument(app)`` with the surface of any instrumented app. May import:
the rest of ``wsops.admin``; never the server, the instrumentation or the CLI.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from wsops.admin.contract import (
    DRAIN_LIMITS,
    MAX_TOP_ROOMS,
    SENDABLE_CLOSE_CODES,
    DrainOptions,
    Stats,
)
from wsops.admin.debugapi import add_debug_routes
from wsops.admin.fleetpage import add_fleet_page
from wsops.admin.http import int_query, json_response, number_field, read_body
from wsops.admin.listener import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    AdminListener,
    attach_admin,
)
from wsops.admin.metrics_endpoint import add_metrics_route
from wsops.admin.openapi import document_json
from wsops.admin.profiling import add_profiling_routes
from wsops.admin.surface import NodeSurface


def drain_options(data: dict[str, Any], defaults: DrainOptions) -> DrainOptions:
    """A ``POST /admin/drain`` body as checked options (HTTP 400 naming a bad field)."""
    batch, interval, deadline, code, spread = (
        number_field(data, key, defaults[key], *DRAIN_LIMITS[key])
        for key in ("batch", "interval", "deadline", "code", "spread"))
    for key, value in (("batch", batch), ("code", code)):
        if not value.is_integer():  # 1.5 was taken as 1
            raise web.HTTPBadRequest(text=f"'{key}' must be an integer\n")
    if code not in SENDABLE_CLOSE_CODES and not 3000 <= code <= 4999:
        raise web.HTTPBadRequest(
            text=f"'code' {int(code)} cannot be sent in a close frame (RFC 6455 7.4)\n")
    return DrainOptions(batch=int(batch), interval=interval, deadline=deadline, code=int(code),
                        spread=spread)


def node_stats(surface: NodeSurface, listener: AdminListener) -> Stats:
    """``/admin/stats``: the surface's figures with the listener's readiness (every check)."""
    stats = surface.stats()
    reasons = listener.not_ready_reasons()
    stats["ready"] = not reasons
    stats["not_ready_reasons"] = reasons
    stats["drain_defaults"] = surface.drain_defaults
    return stats


def add_admin_api(admin: AdminListener, surface: NodeSurface) -> None:
    """Register the admin endpoints of ``surface`` (once per listener)."""
    if any(r.canonical == "/admin/stats" for r in admin.app.router.resources()):
        return

    async def stats(_: web.Request) -> web.Response:
        return json_response(node_stats(surface, admin))

    async def drain_status(_: web.Request) -> web.Response:
        return json_response({**surface.drain_status(), "closes": surface.drain_closes(),
                              "now": time.time()})

    async def drain_start(request: web.Request) -> web.Response:
        options = drain_options(await read_body(request), surface.drain_defaults)
        # A drain already under way keeps its own options: say so, and which ones apply.
        started = surface.start_drain(options)
        return json_response({**surface.drain_status(), "started": started,
                              "options": options if started else None}, status=202)

    async def drain_cancel(_: web.Request) -> web.Response:
        cancelled = surface.cancel_drain()
        return json_response({**surface.drain_status(), "cancelled": cancelled})

    async def connections(request: web.Request) -> web.Response:
        return json_response(surface.connections(
            int_query(request, "top", 20, 1, MAX_TOP_ROOMS)))

    async def flow(request: web.Request) -> web.Response:
        snapshot = surface.flow(int_query(request, "top", 20, 1, MAX_TOP_ROOMS))
        if snapshot is None:
            raise web.HTTPNotFound(text="this node has no rooms: it is a plain instrumented "
                                        "app (the flow view is the bundled server's)\n")
        return json_response(snapshot)

    r = admin.app.router
    r.add_get("/admin/flow", flow)
    r.add_get("/admin/stats", stats)
    r.add_get("/admin/drain", drain_status)
    r.add_post("/admin/drain", drain_start)
    r.add_post("/admin/drain/cancel", drain_cancel)
    r.add_get("/admin/connections", connections)

    async def openapi(_: web.Request) -> web.Response:
        return web.Response(text=document_json(), content_type="application/json")

    r.add_get("/admin/openapi.json", openapi)

    async def own_stats() -> dict[str, Any]:
        return dict(node_stats(surface, admin))

    add_fleet_page(admin, own_stats, node_id=lambda: surface.node_id,
                   peers=lambda: surface.peers)


def mount_admin(
    app: web.Application, surface: NodeSurface, registry: CollectorRegistry, *,
    host: str = "127.0.0.1", port: int = 9765, token: str | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS, advertise_url: str | None = None,
) -> AdminListener:
    """Serve ``surface`` on an admin listener that runs as long as ``app``: ``/healthz``,
    ``/readyz`` (the surface's readiness checks), ``/metrics`` (``registry``), ``/admin/*`` and
    the fleet page. ``token`` defaults to ``WSOPS_ADMIN_TOKEN`` (none: loopback only)."""
    listener = attach_admin(app, host, port, token, handshake_timeout=handshake_timeout,
                            max_connections=max_connections, advertise_url=advertise_url)
    for check in surface.readiness_checks:
        listener.add_readiness_check(check)
    add_metrics_route(listener, registry)
    add_admin_api(listener, surface)
    add_profiling_routes(listener, surface)
    add_debug_routes(listener, surface)
    return listener

