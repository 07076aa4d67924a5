"""The bundled realtime server: ``create_app(settings)`` builds it, ``Node`` runs it.

The WebSocket endpoint is ``/ws`` (``Node`` admits a request, ``wsops.server.endpoint`` serves
the connection); everything operational is on the admin listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

from wsops import __version__
from wsops.admin.listener import AdminListener, attach_admin, bounded_runner
from wsops.admin.nodesummary import summary_fields
from wsops.config import Settings
from wsops.instrumentation.drain import Drainer, DrainStatus
from wsops.instrumentation.middleware import (
    REFUSAL_KEY,
    Instrumentation,
    InstrumentConfig,
    instrument,
)
from wsops.server.auth import AuthConfig, Authenticator, AuthError, Identity, token_from_request
from wsops.server.broker.base import Broker
from wsops.server.broker.memory import MemoryBroker
from wsops.server.endpoint import CLOSE_TIMEOUT, close_ws_task, serve_connection
from wsops.server.hub import Conn, Hub
from wsops.server.limits import PerAddressLimit
from wsops.server.protocol import Close
from wsops.server.session import SessionObs
from wsops.server.static import add_client_routes

log = logging.getLogger(__name__)
WS_PATH = "/ws"


def make_broker(settings: Settings) -> Broker:
    """``memory`` (the embedded default) or ``redis://HOST:PORT/DB`` (a fleet)."""
    if settings.broker in ("memory", "", None):
        return MemoryBroker(settings.history_size, settings.history_ttl,
                            room_bytes=settings.history_room_bytes,
                            max_bytes=settings.history_memory)
    if settings.broker.startswith(("redis://", "rediss://")):
        from wsops.server.broker.redis import RedisBroker  # redis-py only when used

        return RedisBroker(settings.broker, settings.history_size, settings.history_ttl,
                           island_bytes=settings.history_memory)
    raise ValueError(f"unknown broker {settings.broker!r}: use 'memory' or redis://HOST:PORT/DB")


class Node:
    """One server node: hub, broker, auth, limits and drain, behind a WebSocket handler."""

    def __init__(self, settings: Settings, broker: Broker | None = None) -> None:
        self.settings = settings
        self.hub = Hub()
        self.broker = broker or make_broker(settings)
        self.broker.listener = self.hub
        self.auth = Authenticator(
            AuthConfig(
                secret=settings.jwt_secret,
                public_key=settings.jwt_public_key,
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                rooms_claim=settings.jwt_rooms_claim,
                allow_anonymous=settings.allow_anonymous,
                leeway=settings.jwt_leeway,
            )
        )
        self.drainer = Drainer(self.hub.conns.values)
        self.started_at = time.time()
        self.admin: AdminListener | None = None
        self._upgrading = 0
        self.per_ip = PerAddressLimit(settings.max_connections_per_ip)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closers: dict[int, asyncio.Task[None]] = {}
        self.handshake_failures: dict[str, int] = {}
        self.obs: SessionObs | None = None
        self.instrumentation: Instrumentation | None = None

    def attach_instrumentation(self, inst: Instrumentation) -> None:
        """Report to ``inst``: per-publish and per-flush figures, never per delivery."""
        self.instrumentation = inst
        m = inst.metrics
        stats = m.route(WS_PATH)
        tracing = inst.tracing if inst.tracing.enabled else None
        self.obs = SessionObs(stats, m, tracing)
        self.hub.delivery_latency = m.delivery_latency
        self.hub.size_out = stats.size_out
        self.hub.tracing = tracing
        m.broker_up = lambda: self.broker.healthy
        m.draining = lambda: self.drainer.draining
        hub_stats = self.hub.stats

        def sync() -> None:
            # The hub writes frames itself (not through ws.send_str): copy its counters.
            stats.messages_out["text"] = hub_stats.frames
            stats.bytes_out = hub_stats.delivered_bytes
            stats.slow_consumers = hub_stats.slow_consumers

        m.before_collect.append(sync)
        limit = self.settings.max_connections

        def node_families() -> Any:
            yield GaugeMetricFamily(
                "wsops_connections_max", "Connections this node accepts (--max-connections).",
                value=limit,
            )
            events = CounterMetricFamily(
                "wsops_broker_events",
                "Broker events: reconnects, resyncs (subscribers closed with 4001), messages "
                "filled from history after a gap, refused publishes, island messages published "
                "while Redis was down and stored once it was back, dead nodes reaped.",
                labels=["event"],
            )
            for name, n in self.broker.counters().items():
                events.add_metric([name], n)
            yield events

        m.add_source(node_families)
        # The admin API drains, counts rooms and reports through this node.
        inst.drainer = self.drainer
        s = self.settings
        inst.drain_defaults = {"batch": s.drain_batch, "interval": s.drain_interval,
                               "deadline": s.drain_deadline}
        inst.top_rooms = self.hub.room_sizes
        if self.broker.node_id is not None:  # a fleet: the fleet page lists its other nodes
            inst.node_id, inst.peers = self.broker.node_id, self.broker.fleet_nodes
        inst.extra_stats.append(lambda: {
            "rooms": len(self.hub.rooms),
            "connections_max": s.max_connections,
            "broker": self.broker.stats(),
            "hub": dict(self.hub.stats.__dict__),
        })
        inst.leak_checks.append(self.room_leaks)

    def room_leaks(self) -> dict[str, float]:
        """Per-room state kept for rooms no local connection is in: 0 on a healthy node.

        History is left out on purpose: it outlives subscribers by design (resume, TTL).
        """
        rooms = self.hub.rooms
        out = {"hub_rooms_without_subscribers":
               float(sum(1 for r in rooms.values() if not r.conns and not r.syncing))}
        for name in ("presence", "watched"):  # the memory broker's per-room structures
            held = getattr(self.broker, f"_{name}", None)
            if held is not None:
                out[f"broker_{name}_rooms_without_subscribers"] = float(
                    sum(1 for room in held if room not in rooms))
        return out

    # -- lifecycle ---------------------------------------------------------------------------

    def registry_info(self) -> dict[str, object]:
        """What a fleet broker's registry says about this node (read at every heartbeat)."""
        admin = self.admin.advertise_url if self.admin is not None and self.admin.port else ""
        info: dict[str, object] = {
            "admin_url": admin, "version": __version__, "started_at": self.started_at,
            "draining": self.drainer.draining, "connections": len(self.hub.conns)}
        if self.instrumentation is not None:  # what other nodes' fleet pages show of this one
            info.update(summary_fields(self.instrumentation.stats))
        return info

    async def start(self) -> None:
        # The admin listener starts first (its cleanup context comes first): its URL is known.
        self.broker.set_node_info(self.registry_info)
        await self.broker.start()
        self._spawn(self._sweeper())

    async def close_all(
        self, code: int = Close.GOING_AWAY, reason: str = "server shutdown"
    ) -> None:
        """Close every open connection with ``code`` and wait (bounded) for the handshakes."""
        for conn in list(self.hub.conns.values()):
            conn.close(code, reason)
        closers = list(self._closers.values())
        if closers:
            await asyncio.wait(closers, timeout=CLOSE_TIMEOUT + 1)

    async def stop(self) -> None:
        await self.close_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.broker.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, self.settings.history_ttl))
            self.broker.sweep()

    def not_ready_reason(self) -> str | None:
        """Why the node must not get traffic (draining is reported by the admin layer)."""
        if self.instrumentation is None and self.drainer.draining:
            return "draining"
        if not self.broker.healthy:
            return "broker down"
        return None

    def drain(
        self,
        batch: int | None = None,
        interval: float | None = None,
        deadline: float | None = None,
        code: int = Close.SERVICE_RESTART,
    ) -> asyncio.Task[DrainStatus]:
        """Start a graceful drain (readiness 503, refuse upgrades, close in batches)."""
        s = self.settings
        return self.drainer.start(
            batch if batch is not None else s.drain_batch,
            interval if interval is not None else s.drain_interval,
            deadline if deadline is not None else s.drain_deadline,
            code,
        )

    def stats(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "started_at": self.started_at,
            "connections": len(self.hub.conns),
            "rooms": len(self.hub.rooms),
            "draining": self.drainer.draining,
            "drain": self.drainer.status.as_dict(len(self.hub.conns)),
            "broker": self.broker.stats(),
            "hub": dict(self.hub.stats.__dict__),
        }

    # -- the WebSocket endpoint --------------------------------------------------------------

    def _refuse(
        self, request: web.Request, reason: str, exc: type[web.HTTPException], text: str
    ) -> web.HTTPException:
        self.handshake_failures[reason] = self.handshake_failures.get(reason, 0) + 1
        request[REFUSAL_KEY] = reason
        retry = exc in (web.HTTPServiceUnavailable, web.HTTPTooManyRequests)
        headers = {"Retry-After": "5"} if retry else None
        return exc(text=text, headers=headers)

    def _admit(self, request: web.Request) -> Identity:
        """Checks before the upgrade; raises an HTTP error response to refuse."""
        s = self.settings
        if self.drainer.draining:
            raise self._refuse(request, "draining", web.HTTPServiceUnavailable, "node is draining")
        if len(self.hub.conns) + self._upgrading >= s.max_connections:
            raise self._refuse(request, "full", web.HTTPServiceUnavailable, "node is full")
        if self.per_ip.full(request.remote):
            raise self._refuse(request, "per_ip", web.HTTPTooManyRequests,
                               "too many connections from this address")
        origin = request.headers.get("Origin")
        if s.allowed_origins and origin is not None and origin not in s.allowed_origins:
            raise self._refuse(request, "origin", web.HTTPForbidden, "origin not allowed")
        try:
            token = token_from_request(
                request.headers.get("Authorization"), request.query.get("token")
            )
            return self.auth.authenticate(token)
        except AuthError as exc:
            raise self._refuse(request, "auth", web.HTTPUnauthorized, str(exc)) from None

    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        identity = self._admit(request)
        with self.per_ip.hold(request.remote):  # counted from admission to the end
            return await serve_connection(self, request, identity)

    def close_ws(self, ws: web.WebSocketResponse, conn: Conn, code: int, reason: str) -> None:
        """Close ``ws`` with ``code`` in the background (awaited by its handler's end)."""
        conn.close_code = code
        self._closers[conn.id] = self._spawn(close_ws_task(ws, code, reason))


NODE_KEY = web.AppKey("wsops_node", Node)


def create_app(
    settings: Settings | None = None,
    broker: Broker | None = None,
    *,
    registry: CollectorRegistry | None = None,
    tracer_provider: Any = None,
) -> web.Application:
    """The server as an aiohttp Application, for ``web.run_app`` or embedding.

    The admin listener (``/healthz``, ``/readyz``, ``/metrics``) starts and stops with the app
    when ``settings.admin_port`` is not None. ``registry`` and ``tracer_provider`` default to a
    new registry and to the ``OTEL_*`` environment (see ``wsops.instrument``).
    """
    settings = settings or Settings()
    node = Node(settings, broker)
    app = web.Application()
    app[NODE_KEY] = node
    app.router.add_get(WS_PATH, node.handle_ws)
    add_client_routes(app)
    if settings.admin_port is not None:
        node.admin = attach_admin(
            app, settings.admin_host, settings.admin_port,
            handshake_timeout=settings.handshake_timeout,
            max_connections=settings.admin_max_connections,
            advertise_url=settings.admin_advertise_url)
        node.admin.add_readiness_check(node.not_ready_reason)
    if settings.instrument:
        # The same layer a user's own app gets; the hub adds its publish-level figures.
        node.attach_instrumentation(instrument(app, registry=registry, config=InstrumentConfig(
            runtime=settings.runtime_metrics,
            tracing=settings.tracing,
            sample_ratio=settings.trace_sample_ratio,
            slo_seconds=settings.slo_seconds,
            admin_host=settings.admin_host,
            admin_port=settings.admin_port,
            message_spans=False,
        ), tracer_provider=tracer_provider))

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await node.start()
        yield
        await node.stop()

    async def on_shutdown(_: web.Application) -> None:
        # Before aiohttp cancels handlers: a clean 1001 instead of a dropped socket.
        await node.close_all()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(on_shutdown)
    return app


def make_runner(app: web.Application, settings: Settings) -> web.AppRunner:
    """The runner the bundled server uses: a client has ``--handshake-timeout`` to send its
    whole upgrade request (slowloris), as on the admin listener (``bounded_runner``)."""
    return bounded_runner(app, settings.handshake_timeout, access_log=None,
                          handle_signals=False, shutdown_timeout=5.0)


@contextlib.asynccontextmanager
async def running(
    settings: Settings, broker: Broker | None = None, **kw: Any
) -> AsyncIterator[tuple[web.Application, web.AppRunner, int]]:
    """Run the server on ``settings.host:port`` (0 = any free port); yields (app, runner, port)."""
    runner = make_runner(create_app(settings, broker, **kw), settings)
    app = runner.app
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=False,
                       backlog=settings.backlog)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    port = sockets[0].getsockname()[1] if sockets else settings.port
    try:
        yield app, runner, port
    finally:
        await runner.cleanup()
