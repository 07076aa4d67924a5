"""``/admin/debug``: a node's debug switch (``wsops debug``). For a bounded time, one user's, one
room's or one connection's frames are logged at DEBUG and its publishes traced whatever the
sample ratio; the switch turns itself off. A node without one (a plain instrumented app: no
users or rooms) answers 404.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from wsops.admin.contract import (
    DEBUG_KINDS,
    DEBUG_MAX_SECONDS,
    DebugStarted,
    DebugState,
    DebugStopped,
)
from wsops.admin.http import json_response, number_field, read_body
from wsops.admin.listener import AdminListener
from wsops.admin.surface import DebugControl, NodeSurface

DEFAULT_SECONDS = 600.0
LOGGER = "wsops.debug"


def debug_target(data: dict[str, Any]) -> tuple[str, str, float]:
    """``(kind, value, seconds)`` of a ``POST /admin/debug`` body, else HTTP 400 saying why."""
    given = [k for k in DEBUG_KINDS if k in data]
    if len(given) != 1:
        raise web.HTTPBadRequest(text=f"give exactly one of {', '.join(DEBUG_KINDS)}\n")
    kind = given[0]
    value = data[kind]
    if not isinstance(value, str) or not 1 <= len(value) <= 256:
        raise web.HTTPBadRequest(text=f"'{kind}' must be a string of 1 to 256 characters\n")
    seconds = number_field(data, "seconds", DEFAULT_SECONDS, 0.001, DEBUG_MAX_SECONDS)
    return kind, value, seconds


def add_debug_routes(admin: AdminListener, surface: NodeSurface) -> None:
    """Register ``/admin/debug`` (state), ``POST /admin/debug`` and ``.../stop``."""

    def switch() -> DebugControl:
        control = surface.debug_switch
        if control is None:
            raise web.HTTPNotFound(text="this node has no debug switch: it is a plain "
                                        "instrumented app, with no users or rooms to watch\n")
        return control

    def state(control: DebugControl) -> DebugState:
        return DebugState(traced=control.traced, logger=LOGGER, targets=control.listing())

    async def get(_: web.Request) -> web.Response:
        return json_response(state(switch()))

    async def start(request: web.Request) -> web.Response:
        control = switch()
        kind, value, seconds = debug_target(await read_body(request))
        try:
            target = control.start(kind, value, seconds)
        except ValueError as exc:
            refusal = web.HTTPConflict if getattr(exc, "full", False) else web.HTTPBadRequest
            raise refusal(text=f"{exc}\n") from None
        return json_response(DebugStarted(**state(control), target=target))

    async def stop(request: web.Request) -> web.Response:
        control = switch()
        target_id = (await read_body(request)).get("id")
        if target_id is not None and not isinstance(target_id, str):
            raise web.HTTPBadRequest(text="'id' must be a string (kind:value) or null\n")
        stopped = control.stop(target_id)
        return json_response(DebugStopped(**state(control), stopped=stopped))

    r = admin.app.router
    r.add_get("/admin/debug", get)
    r.add_post("/admin/debug", start)
    r.add_post("/admin/debug/stop", stop)
