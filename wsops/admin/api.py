"""``/admin/*`` on the admin listener: node stats, drain start/status/cancel, connection counts,
and the fleet page (``wsops.admin.fleetpage``).

Works for any app wrapped with ``wsops.instrument(app)``: everything comes from the
instrumentation layer (its live set, metrics and drainer); the bundled server adds its rooms and
broker through ``Instrumentation.extra_stats``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from wsops.admin.fleetpage import add_fleet_page, default_node_id
from wsops.instrumentation.drain import SERVICE_RESTART

if TYPE_CHECKING:
    from wsops.admin.listener import AdminListener
    from wsops.instrumentation.middleware import Instrumentation

MAX_TOP_ROOMS = 100
"""``/admin/connections?top=N``: N within [1, this] (outside: 400)."""
SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1008, 1011, 1012, 1013, 1014})


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body must be a JSON object\n") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object\n")
    return data


def _number(data: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise web.HTTPBadRequest(text=f"'{key}' must be a number in [{lo}, {hi}]\n")
    return float(value)


def int_query(request: web.Request, key: str, default: int, lo: int, hi: int) -> int:
    """Query parameter ``key`` as an integer in ``[lo, hi]``, else HTTP 400 saying so."""
    raw = request.query.get(key, str(default))
    try:
        value = int(raw) if len(raw) <= 20 else None
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        raise web.HTTPBadRequest(text=f"'{key}' must be an integer in [{lo}, {hi}]\n")
    return value


def add_admin_api(admin: AdminListener, inst: Instrumentation) -> None:
    """Register the admin endpoints (once per listener)."""
    if any(r.canonical == "/admin/stats" for r in admin.app.router.resources()):
        return

    async def stats(_: web.Request) -> web.Response:
        return _json(inst.stats())

    async def drain_status(_: web.Request) -> web.Response:
        return _json(inst.drain_status())

    async def drain_start(request: web.Request) -> web.Response:
        data = await _body(request)
        d = inst.drain_defaults
        batch = int(_number(data, "batch", d["batch"], 1, 1_000_000))
        interval = _number(data, "interval", d["interval"], 0, 3600)
        deadline = _number(data, "deadline", d["deadline"], 0.001, 86400)
        code = int(_number(data, "code", SERVICE_RESTART, 1000, 4999))
        if code not in SENDABLE_CLOSE_CODES and not 3000 <= code <= 4999:
            raise web.HTTPBadRequest(
                text=f"'code' {code} cannot be sent in a close frame (RFC 6455 7.4)\n")
        # A drain already under way keeps its own options: say so, and which ones apply.
        started = inst.drainer.status.state != "draining"
        inst.drainer.start(batch, interval, deadline, code)
        options = {"batch": batch, "interval": interval, "deadline": deadline, "code": code}
        return _json({**inst.drain_status(), "started": started,
                      "options": options if started else None}, status=202)

    async def drain_cancel(_: web.Request) -> web.Response:
        cancelled = inst.drainer.cancel()
        return _json({**inst.drain_status(), "cancelled": cancelled})

    async def connections(request: web.Request) -> web.Response:
        top = int_query(request, "top", 20, 1, MAX_TOP_ROOMS)
        out: dict[str, Any] = {"total": inst.live.total(), "by_route": inst.live.counts()}
        if inst.top_rooms is not None:
            out["top_rooms"] = [{"room": r, "connections": n} for r, n in inst.top_rooms(top)]
        return _json(out)

    r = admin.app.router
    r.add_get("/admin/stats", stats)
    r.add_get("/admin/drain", drain_status)
    r.add_post("/admin/drain", drain_start)
    r.add_post("/admin/drain/cancel", drain_cancel)
    r.add_get("/admin/connections", connections)

    async def own_stats() -> dict[str, Any]:
        return inst.stats()

    add_fleet_page(admin, own_stats, node_id=lambda: inst.node_id or default_node_id(),
                   peers=lambda: inst.peers)
