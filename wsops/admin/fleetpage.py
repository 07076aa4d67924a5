"""The fleet page on the admin listener: ``GET /``, its assets under ``/admin/ui/``, and the one
JSON document it polls, ``GET /admin/fleet``.

``/admin/fleet`` is this node's stats plus, in a fleet (the Redis broker's registry), every other
node's summary as that node last published it in its own registry entry
(``wsops.admin.nodesummary``: readiness, connections, rates, quantiles, memory, drain progress,
refreshed every heartbeat). The page makes no request to other nodes: an admin URL in the
registry is shown, never called, so whoever can write one registry entry cannot collect the
admin token (which never leaves the node) nor make the node call an address of their choosing.
A peer's figures are at most one heartbeat old (``as_of``); a node with no summary in its entry
(an older wsops) is listed with a note. The page reads per-node summaries only, nothing per
connection, and concurrent viewers share one snapshot, so it costs the same at 50K connections
as at 5. Everything the page needs is served from ``wsops/static/fleet`` (no CDN, no external
font).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from wsops.admin.contract import finite
from wsops.admin.listener import AdminListener
from wsops.admin.nodesummary import peer_row
from wsops.admin.surface import PeerLister

DEFAULT_INTERVAL = 2.0
"""Seconds between the page's refreshes (``?interval=`` overrides it, 0.5 at least)."""
SHARED_FOR = 0.5
"""Seconds one snapshot answers every viewer: N open tabs cost one registry read."""
MAX_PEERS = 1000
"""Rows the page lists besides this node (a registry bigger than that is cut, and says so)."""
ASSETS = {"index.html": "text/html", "fleet.js": "text/javascript", "flow.js": "text/javascript",
          "fleet.css": "text/css"}
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

OwnStats = Callable[[], Awaitable[dict[str, Any]]]


def default_node_id() -> str:
    """A node without a fleet registry is named like the Redis broker names its nodes."""
    return f"{socket.gethostname()}-{os.getpid()}"


class FleetView:
    """Builds ``/admin/fleet`` snapshots; ``peers()`` is read per snapshot (set after start)."""

    def __init__(self, own: OwnStats, node_id: Callable[[], str],
                 peers: Callable[[], PeerLister | None],
                 admin_url: Callable[[], str] = str, interval: float = DEFAULT_INTERVAL) -> None:
        self.own = own
        self.node_id = node_id
        self.peers = peers
        self.admin_url = admin_url
        self.interval = interval
        self._pending: asyncio.Task[dict[str, Any]] | None = None
        self._last: tuple[float, dict[str, Any]] | None = None

    async def snapshot(self) -> dict[str, Any]:
        """The latest snapshot if under ``SHARED_FOR`` seconds old, else a new one (concurrent
        callers wait for the same one)."""
        if self._pending is None or self._pending.done():
            if self._last is not None and time.monotonic() - self._last[0] < SHARED_FOR:
                return self._last[1]
            self._pending = asyncio.create_task(self._collect())
        return await asyncio.shield(self._pending)

    async def _collect(self) -> dict[str, Any]:
        me = self.node_id()
        own: dict[str, Any] = {"id": me, "admin_url": self.admin_url(), "self": True,
                               "stats": None, "as_of": None, "error": None}
        lister, registry_error, others = self.peers(), None, []
        own_task = asyncio.ensure_future(self.own())
        if lister is not None:
            try:
                others = [n for n in await lister() if n.get("id") != me]
            except Exception as exc:  # Redis away: this node still shows itself
                registry_error = f"fleet registry unreadable: {type(exc).__name__} {exc}".strip()
        if len(others) > MAX_PEERS:
            registry_error = (f"{len(others) - MAX_PEERS} more nodes in the registry are not "
                              f"shown (the page lists {MAX_PEERS})")
            others = others[:MAX_PEERS]
        now = time.time()
        rows = [peer_row(n, now) for n in others]
        try:
            own["stats"] = await own_task
            own["as_of"] = now
        except Exception as exc:
            own["error"] = f"{type(exc).__name__}: {exc}"
        out: dict[str, Any] = finite({
            "node_id": me, "generated_at": now, "interval": self.interval,
            "fleet": lister is not None, "registry_error": registry_error,
            "nodes": [own, *rows]})
        self._last = (time.monotonic(), out)
        return out

    async def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            await asyncio.gather(self._pending, return_exceptions=True)


def _dumps(data: Any) -> str:
    return json.dumps(data, default=str, allow_nan=False)


def _asset(name: str, cache: dict[str, bytes]) -> web.Response:
    body = cache.get(name)
    if body is None:
        body = cache[name] = resources.files("wsops").joinpath(
            "static", "fleet", name).read_bytes()
    resp = web.Response(body=body, content_type=ASSETS[name], charset="utf-8")
    resp.headers.update({"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                         "Referrer-Policy": "no-referrer"})
    if name == "index.html":
        resp.headers["Content-Security-Policy"] = PAGE_CSP
    return resp


def add_fleet_page(admin: AdminListener, own: OwnStats, *,
                   node_id: Callable[[], str] = default_node_id,
                   peers: Callable[[], PeerLister | None] = lambda: None) -> FleetView | None:
    """Serve the page, its assets and ``/admin/fleet`` on ``admin`` (once per listener).

    ``own`` is this node's ``/admin/stats`` document; ``peers`` returns the registry lister
    when the node is in a fleet (read at every snapshot, so it may be set after this call).
    """
    if any(r.canonical == "/admin/fleet" for r in admin.app.router.resources()):
        return None
    view = FleetView(own, node_id, peers, lambda: admin.advertise_url or admin.url)
    cache: dict[str, bytes] = {}

    async def page(_: web.Request) -> web.Response:
        return _asset("index.html", cache)

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise web.HTTPNotFound()
        return _asset(name, cache)

    async def fleet(_: web.Request) -> web.Response:
        resp = web.json_response(await view.snapshot(), dumps=_dumps)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    async def close(_: web.Application) -> None:
        await view.close()

    r = admin.app.router
    r.add_get("/", page)
    r.add_get("/admin/ui/{name}", asset)
    r.add_get("/admin/fleet", fleet)
    admin.app.on_cleanup.append(close)
    return view
