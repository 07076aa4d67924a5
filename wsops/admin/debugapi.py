"""``/admin/debug``: a node's debug switch (``wsops debug``). For a bounded time, one user's, one
room's or one connection's frames are logged at DEBUG and its publishes traced whatever the
sample ratio; the switch turns itself off. A node without one (a plain instrumented app: no
users or rooms) answers 404.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from wsops.admin.contract import (
    DEBUG_KINDS,
    DEBUG_MAX_SECONDS,
    TAP_MAX_RATE,
    TAP_MAX_SECONDS,
    TAP_STATS_SECONDS,
    DebugStarted,
    DebugState,
    DebugStopped,
)
from wsops.admin.http import json_response, number_field, read_body
from wsops.admin.listener import AdminListener
from wsops.admin.surface import DebugControl, NodeSurface, TapStream

DEFAULT_SECONDS = 600.0
LOGGER = "wsops.debug"


def one_target(data: Mapping[str, Any]) -> tuple[str, str]:
    """``(kind, value)``: the one user, room or connection ``data`` names (a body or a query),
    else HTTP 400 saying why."""
    given = [k for k in DEBUG_KINDS if k in data]
    if len(given) != 1:
        raise web.HTTPBadRequest(text=f"give exactly one of {', '.join(DEBUG_KINDS)}\n")
    kind = given[0]
    value = data[kind]
    if not isinstance(value, str) or not 1 <= len(value) <= 256:
        raise web.HTTPBadRequest(text=f"'{kind}' must be a string of 1 to 256 characters\n")
    return kind, value


def target_id(data: Mapping[str, Any]) -> str | None:
    """The ``id`` of a ``POST /admin/debug/stop`` body (None: every target), else HTTP 400."""
    value = data.get("id")
    if value is not None and not isinstance(value, str):
        raise web.HTTPBadRequest(text="'id' must be a string (kind:value) or null\n")
    return value


def debug_target(data: dict[str, Any]) -> tuple[str, str, float]:
    """``(kind, value, seconds)`` of a ``POST /admin/debug`` body, else HTTP 400 saying why."""
    kind, value = one_target(data)
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
        stopped = control.stop(target_id(await read_body(request)))
        return json_response(DebugStopped(**state(control), stopped=stopped))

    async def tap(request: web.Request) -> web.StreamResponse:
        control = switch()
        kind, value, payloads, rate, seconds = tap_query(request)
        if payloads and not admin.token:
            raise web.HTTPForbidden(text=(
                "payloads=true needs an admin token on the node (WSOPS_ADMIN_TOKEN): without "
                "one, whoever reaches loopback (a proxy's clients too) could read messages\n"))
        try:
            stream = control.open_tap(kind, value, payloads=payloads, rate=rate)
        except ValueError as exc:
            refusal = web.HTTPConflict if getattr(exc, "full", False) else web.HTTPBadRequest
            raise refusal(text=f"{exc}\n") from None
        try:
            resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson",
                                               "Cache-Control": "no-store"})
            await resp.prepare(request)
            await resp.write(_line({"event": "tap", "watching": stream.id, "payloads": payloads,
                                    "rate": rate, "seconds": seconds}))
            await _pump(resp, stream, seconds)
            return resp
        except ConnectionResetError:  # the reader went away (aiohttp's own is a subclass)
            return resp
        finally:
            control.close_tap(stream)

    r = admin.app.router
    r.add_get("/admin/debug", get)
    r.add_post("/admin/debug", start)
    r.add_post("/admin/debug/stop", stop)
    r.add_get("/admin/tap", tap)


def _line(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), default=str).encode() + b"\n"


async def _pump(resp: web.StreamResponse, stream: TapStream, seconds: float) -> None:
    """Events as they come (every waiting one in one write), a ``stats`` line every
    ``TAP_STATS_SECONDS``, until the tap's time is up or the node ends it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    stats_at = loop.time() + TAP_STATS_SECONDS
    while True:
        now = loop.time()
        if now >= deadline:
            await resp.write(_line({"event": "end", "reason": f"{seconds:g} s are up"}))
            return
        if now >= stats_at:
            await resp.write(_line({"event": "stats", "sent": stream.sent,
                                    "dropped": stream.dropped}))
            stats_at = now + TAP_STATS_SECONDS
        try:
            event = await asyncio.wait_for(stream.queue.get(),
                                           max(0.0, min(deadline, stats_at) - now))
        except TimeoutError:
            continue
        batch = [event]
        while not stream.queue.empty() and event.get("event") != "end":
            event = stream.queue.get_nowait()
            batch.append(event)
        ended = batch[-1].get("event") == "end"
        stream.sent += len(batch) - ended
        await resp.write(b"".join(_line(e) for e in batch))
        if ended:
            return


def tap_query(request: web.Request) -> tuple[str, str, bool, float, float]:
    """``(kind, value, payloads, rate, seconds)`` of ``GET /admin/tap``, else HTTP 400."""
    q = request.query
    kind, value = one_target(q)
    flag = q.get("payloads", "false")
    if flag not in ("true", "false"):
        raise web.HTTPBadRequest(text="'payloads' must be true or false\n")
    numbers = {}
    for key, default, hi in (("rate", 20.0, TAP_MAX_RATE), ("seconds", TAP_MAX_SECONDS,
                                                            TAP_MAX_SECONDS)):
        try:
            numbers[key] = float(q.get(key, default))
        except ValueError:
            numbers[key] = -1.0
        if not 1 <= numbers[key] <= hi:
            raise web.HTTPBadRequest(text=f"'{key}' must be a number in [1, {hi:g}]\n")
    return kind, value, flag == "true", numbers["rate"], numbers["seconds"]
