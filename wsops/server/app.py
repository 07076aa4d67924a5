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

from wsops.admin.api import mount_admin, node_stats
from wsops.admin.listener import AdminListener, Listener, attach_admin, bounded_runner
from wsops.admin.nodesummary import summary_fields
from wsops.config import Settings
from wsops.instrumentation.drainer import Drainer, DrainStatus
from wsops.instrumentation.instrument import instrument, new_registry
from wsops.instrumentation.middleware import REFUSAL_KEY, Instrumentation, InstrumentConfig
from wsops.server.broker.memory import MemoryBroker
from wsops.server.broker.redis_url import check_broker, is_redis_url
from wsops.server.core.address_limit import PerAddressLimit
from wsops.server.core.broker import Broker
from wsops.server.core.hub import Hub
from wsops.server.core.identity import Identity
from wsops.server.core.protocol import Close
from wsops.server.debug import DebugSwitch
from wsops.server.endpoint import Endpoint
from wsops.server.jwt_auth import AuthConfig, Authenticator, AuthError, token_from_request
from wsops.server.node_surface import BundledSurface, NodeParts
from wsops.server.observe import NodeObserver
from wsops.server.orders import FleetOrders
from wsops.server.static import add_client_routes
from wsops.server.stopping import cancel_all
from wsops.version import __version__

log = logging.getLogger(__name__)
WS_PATH = "/ws"


def make_broker(settings: Settings) -> Broker:
    """``memory`` (the embedded default) or a Redis URL (a fleet: ``redis_url``)."""
    check_broker(settings.broker, settings.broker_ack)
    if not is_redis_url(settings.broker):
        return MemoryBroker(settings.history_size, settings.history_ttl,
                            room_bytes=settings.history_room_bytes,
                            max_bytes=settings.history_memory)
    from wsops.server.broker.redis import RedisBroker  # redis-py only when used

    return RedisBroker(settings.broker, settings.history_size, settings.history_ttl,
                       island_bytes=settings.history_memory, ack=settings.broker_ack)


def auth_config(settings: Settings) -> AuthConfig:
    """How the node checks tokens, from its settings."""
    return AuthConfig(secret=settings.jwt_secret, public_key=settings.jwt_public_key,
                      audience=settings.jwt_audience, issuer=settings.jwt_issuer,
                      rooms_claim=settings.jwt_rooms_claim,
                      allow_anonymous=settings.allow_anonymous, leeway=settings.jwt_leeway)


class Node:
    """One server node: hub, broker, auth, limits and drain, behind a WebSocket handler.

    ``instrumentation``: the app's ``Instrumentation`` when it is instrumented; the node then
    reports through a ``NodeObserver`` (per publish and per flush, never per delivery).
    """

    def __init__(self, settings: Settings, broker: Broker | None = None, *,
                 instrumentation: Instrumentation | None = None) -> None:
        self.settings = settings
        self.instrumentation = instrumentation
        self.observer: NodeObserver | None = None
        if instrumentation is not None:
            m = instrumentation.metrics
            tracing = instrumentation.tracing if instrumentation.tracing.enabled else None
            self.observer = NodeObserver(m, m.route(WS_PATH), tracing)
        self.hub = Hub(observer=self.observer)
        self.broker = broker or make_broker(settings)
        self.broker.listener = self.hub
        self.auth = Authenticator(auth_config(settings))
        self.drainer = Drainer(self.hub.conns.values)
        self.started_at = time.time()
        # Ready once start() is done and, when ``running`` binds the WebSocket port, it is
        # bound (None: the runner is the embedding app's, whose sites start after start()).
        # The admin listener answers first: /readyz says "starting" until then.
        self.started = False
        self.listening: bool | None = None
        self.admin: AdminListener | None = None
        self.api: Listener | None = None  # the server API's listener (--api-port)
        self.per_ip = PerAddressLimit(settings.max_connections_per_ip)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.handshake_failures: dict[str, int] = {}
        observer = self.observer
        # What the server API publishes with (sessions call the observer's hooks themselves),
        # and the debug switch's publish, traced whatever the ratio (None: no tracing).
        self.publish = (observer.wrap_publish(self.broker.publish) if observer is not None
                        else self.broker.publish)
        self.debug = DebugSwitch(self.hub, observer.wrap_publish(self.broker.publish, forced=True)
                                 if observer is not None and observer.tracing is not None
                                 else None)
        self.surface = BundledSurface(NodeParts(settings, self.hub, self.broker, self.drainer,
                                                instrumentation, self.started_at, self.debug,
                                                self.observer, self.starting_reason))
        self.endpoint = Endpoint(
            settings, self.hub, self.broker, observer=self.observer,
            instrumentation=instrumentation, per_ip=self.per_ip,
            stats=self.observer.stats if self.observer is not None else None, debug=self.debug)
        if instrumentation is not None:
            instrumentation.live.add_group(WS_PATH, self.endpoint.sockets.values())
        self.orders = FleetOrders(self.hub, self.broker, self.endpoint)

    def sync_metrics(self) -> None:
        """The hub writes frames itself (not through ``ws.send_str``): copy its counters into
        the route's figures before each collection."""
        if self.observer is not None:
            self.observer.sync(self.hub.stats)

    def metric_families(self) -> Any:
        """The node's own families, beside the instrumentation's (read at scrape time)."""
        yield GaugeMetricFamily(
            "wsops_connections_max", "Connections this node accepts (--max-connections).",
            value=self.settings.max_connections,
        )
        events = CounterMetricFamily(
            "wsops_broker_events",
            "Broker events: reconnects, resyncs (subscribers closed with 4001), messages "
            "filled from history after a gap, refused publishes, publishes no replica confirmed "
            "in time (--broker-ack replica), island messages published "
            "while Redis was down and stored once it was back, dead nodes reaped.",
            labels=["event"],
        )
        for name, n in self.broker.counters().items():
            events.add_metric([name], n)
        yield events
        yield GaugeMetricFamily("wsops_broker_up", "1 when the broker is reachable.",
                                value=int(self.broker.healthy))
        yield GaugeMetricFamily("wsops_draining", "1 while the node drains.",
                                value=int(self.drainer.draining))
        hub = self.hub
        yield GaugeMetricFamily("wsops_rooms", "Rooms with a subscriber on this node.",
                                value=len(hub.rooms))
        yield GaugeMetricFamily("wsops_subscriptions", "Room subscriptions on this node "
                                "(a connection in three rooms counts three).",
                                value=hub.subscriptions)
        yield GaugeMetricFamily("wsops_users", "Distinct users connected to this node "
                                "(anonymous connections each count as their own user).",
                                value=len(hub.users))
        if self.observer is not None:
            yield from self.observer.families()

    # -- lifecycle ---------------------------------------------------------------------------

    def starting_reason(self) -> str | None:
        if not self.started:
            return "starting"
        return "starting: the WebSocket port is not bound yet" if self.listening is False else None

    def registry_info(self) -> dict[str, object]:
        """What a fleet broker's registry says about this node (read at every heartbeat)."""
        listener = self.admin
        url = listener.advertise_url if listener is not None and listener.port else ""
        info: dict[str, object] = {
            "admin_url": url, "version": __version__, "started_at": self.started_at,
            "draining": self.drainer.draining, "connections": len(self.hub.conns),
            # how rooms' logs are kept, for a wsops.Publisher writing into them
            "history_size": self.settings.history_size,
            "history_ttl": self.settings.history_ttl}
        if self.instrumentation is not None and listener is not None:
            # What other nodes' fleet pages show of this one.
            info.update(summary_fields(lambda: node_stats(self.surface, listener)))
        return info

    async def start(self) -> None:
        # The admin listener starts first (its cleanup context comes first): its URL is known.
        self.broker.set_node_info(self.registry_info)
        await self.broker.start()
        await self.orders.start()  # the fleet's orders (the server API's) and revocations
        self._spawn(self._sweeper())
        self._spawn(self.orders.refresh_forever())
        self.started = True

    async def close_all(
        self, code: int = Close.GOING_AWAY, reason: str = "server shutdown"
    ) -> None:
        """Close every open connection with ``code`` and wait (bounded) for the handshakes."""
        await self.endpoint.close_all(code, reason)

    async def stop(self) -> None:
        self.debug.close()
        await self.close_all()
        await cancel_all(list(self._tasks), 5.0, "node task")
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

    def drain(
        self,
        batch: int | None = None,
        interval: float | None = None,
        deadline: float | None = None,
        code: int = Close.SERVICE_RESTART,
        spread: float | None = None,
    ) -> asyncio.Task[DrainStatus]:
        """Start a graceful drain (readiness 503, refuse upgrades, close in batches)."""
        s = self.settings
        return self.drainer.start(
            batch if batch is not None else s.drain_batch,
            interval if interval is not None else s.drain_interval,
            deadline if deadline is not None else s.drain_deadline,
            code,
            spread if spread is not None else s.drain_spread,
        )

    # -- the WebSocket endpoint --------------------------------------------------------------

    def _refuse(
        self, request: web.Request, reason: str, exc: type[web.HTTPException], text: str
    ) -> web.HTTPException:
        self.handshake_failures[reason] = self.handshake_failures.get(reason, 0) + 1
        request[REFUSAL_KEY] = reason
        headers: dict[str, str] = {}
        if exc in (web.HTTPServiceUnavailable, web.HTTPTooManyRequests):
            headers["Retry-After"] = "5"
        if exc is web.HTTPUnauthorized:
            headers["WWW-Authenticate"] = bearer_challenge(text, token_given=bool(
                request.headers.get("Authorization") or request.query.get("token")))
        return exc(text=text, headers=headers or None)

    def _admit(self, request: web.Request) -> Identity:
        """Checks before the upgrade; raises an HTTP error response to refuse."""
        s = self.settings
        if self.drainer.draining:
            raise self._refuse(request, "draining", web.HTTPServiceUnavailable, "node is draining")
        if len(self.hub.conns) >= s.max_connections:
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
            identity = self.auth.authenticate(token)
        except AuthError as exc:
            raise self._refuse(request, "auth", web.HTTPUnauthorized, str(exc)) from None
        until = self.orders.revoked_until(identity)
        if until is not None:
            raise self._refuse(request, "auth", web.HTTPUnauthorized, "token revoked until "
                               + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until)))
        return identity

    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        return self.endpoint.serve(request, self._admit(request))


def bearer_challenge(reason: str, *, token_given: bool) -> str:
    """The ``WWW-Authenticate`` of a refused token (RFC 6750 3): clients that cannot read the
    body of a refused upgrade (aiohttp's ``ws_connect``) read the reason here."""
    text = reason.encode("ascii", "replace").decode()[:200]
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    error = 'error="invalid_token", ' if token_given else ""
    return f'Bearer realm="wsops", {error}error_description="{text}"'


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
    app = web.Application()
    inst: Instrumentation | None = None
    registry = registry if registry is not None else new_registry()
    if settings.instrument:
        # The same layer a user's own app gets; the node reports its publish-level figures
        # through its observer, and serves its own admin surface (below).
        inst = instrument(app, registry=registry, config=InstrumentConfig(
            runtime=settings.runtime_metrics,
            tracing=settings.tracing,
            sample_ratio=settings.trace_sample_ratio,
            slo_seconds=settings.slo_seconds,
            admin_port=None,
            message_spans=False,
            own_drain=False,
        ), tracer_provider=tracer_provider)
    node = Node(settings, broker, instrumentation=inst)
    app[NODE_KEY] = node
    app.router.add_get(WS_PATH, node.handle_ws)
    add_client_routes(app)
    if inst is not None:
        inst.metrics.add_source(node.metric_families)
        inst.metrics.before_collect.append(node.sync_metrics)
    if settings.api_port is not None:  # keys from WSOPS_API_KEYS: ValueError without one
        from wsops.server.api.backend import NodeBackend
        from wsops.server.api.service import serve_api

        service, node.api = serve_api(app, NodeBackend(
            node.hub, node.broker, node.publish, node.registry_info, node.orders), settings)
        if inst is not None:
            inst.metrics.add_source(service.families)
    if settings.admin_port is not None:
        bounds = {"handshake_timeout": settings.handshake_timeout,
                  "max_connections": settings.admin_max_connections,
                  "advertise_url": settings.admin_advertise_url}
        if inst is not None:
            node.admin = inst.admin = mount_admin(
                app, node.surface, registry, host=settings.admin_host,
                port=settings.admin_port, **bounds)  # type: ignore[arg-type]
        else:  # not instrumented: /healthz and /readyz only
            node.admin = attach_admin(app, settings.admin_host, settings.admin_port,
                                      **bounds)  # type: ignore[arg-type]
            for check in node.surface.readiness_checks:
                node.admin.add_readiness_check(check)

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
    app[NODE_KEY].listening = False
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=False,
                       backlog=settings.backlog)
    await site.start()
    app[NODE_KEY].listening = True
    addresses = runner.addresses
    port = int(addresses[0][1]) if addresses else settings.port
    try:
        yield app, runner, port
    finally:
        await runner.cleanup()
