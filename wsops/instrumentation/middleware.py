"""``instrument(app)``: metrics, runtime health and traces for any aiohttp WebSocket app.

Works on handlers that use ``web.WebSocketResponse`` without changing them: a middleware sees
every upgrade request; the ``on_response_prepare`` signal sees the 101 response and gives that
one response a counting class (``counted.py``; aiohttp's class is never changed, so other apps
in the process are untouched). The final close code is read in the middleware's ``finally``,
after the handler ends however it ends.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
from opentelemetry.trace import Span, Status, StatusCode
from prometheus_client import CollectorRegistry

from wsops.admin.listener import AdminListener
from wsops.admin.stats import Sample, StatsWindow
from wsops.instrumentation.counted import count
from wsops.instrumentation.drainer import Drainer
from wsops.instrumentation.live import LiveConn, LiveSet
from wsops.instrumentation.metrics import DEFAULT_SLO_SECONDS, RouteStats, WsMetrics
from wsops.instrumentation.tracing import (
    Tracing,
)
from wsops.version import __version__

_TEXT, _BINARY = WSMsgType.TEXT, WSMsgType.BINARY
_CLOSE, _CLOSED, _ERROR = WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR
_perf = time.perf_counter
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REFUSAL_KEY = web.RequestKey("wsops_refusal", str)
"""A handler may set ``request[REFUSAL_KEY] = "auth"`` before refusing an upgrade: the reason
label of ``wsops_handshake_failures_total`` (else ``http_<status>``)."""
LIVE_KEY = web.RequestKey("wsops_live", LiveConn)
HANDED_OFF_KEY = web.RequestKey("wsops_handed_off", bool)
"""Set by ``Instrumentation.adopt``: the handler served the upgrade without a
``WebSocketResponse`` and reports the connection's end itself (``Instrumentation.finished``)."""
SPAN_KEY = web.RequestKey("wsops_handshake_span", Span)


@dataclass(frozen=True)
class InstrumentConfig:
    """What to instrument. Every part can be switched off; see the README's table."""

    metrics: bool = True
    runtime: bool = True
    tracing: bool = True
    sample_ratio: float | None = None  # None: OTEL_TRACES_SAMPLER[_ARG], else 1%
    slo_seconds: float = DEFAULT_SLO_SECONDS
    max_label_values: int = 64
    lag_interval: float = 0.5
    admin_host: str = "127.0.0.1"
    admin_port: int | None = 9765
    message_spans: bool = True  # a span per received message (the bundled server has its own)
    own_drain: bool = True
    """The instrumentation drains the app's connections (admin API, ``inst.drainer``) and
    refuses upgrades meanwhile; False for an app that drains and reports draining itself."""


class Instrumentation:
    """The instrumentation of one app: its live connections, metrics and tracing."""

    def __init__(self, config: InstrumentConfig, registry: CollectorRegistry,
                 tracing: Tracing) -> None:
        self.config = config
        self.registry = registry
        self.tracing = tracing
        self.live = LiveSet()
        self.metrics = WsMetrics(
            slo_seconds=config.slo_seconds,
            max_label_values=config.max_label_values,
            open_connections=self.live.counts,
            queue_bytes=self.live.queue_bytes,
            draining=(lambda: self.drainer.draining) if config.own_drain else None,
            build_info={"version": __version__,
                        "python": ".".join(map(str, sys.version_info[:3]))},
        )
        if config.metrics:
            registry.register(self.metrics)
        self.runtime: Any = None  # RuntimeCollector when runtime health is on
        self.started_at = time.time()
        # Drain over the live set; the middleware refuses upgrades while it drains. (The
        # bundled server drains its own connections and refuses them itself.)
        self.drainer: Drainer = Drainer(self.live.values)
        self.leak_checks: list[Callable[[], dict[str, float]]] = []
        """Figures that must stay flat on a healthy node (``/admin/profile/sample``, ``wsops
        leaks``): append your own, e.g. ``lambda: {"orphans": len(orphans)}``."""
        self.window = StatsWindow(self.metrics.latency_bounds)
        self._counted: dict[int, RouteStats] = {}  # routes of WebSocketResponse handlers
        self.metrics.before_collect.append(self._derive_totals)
        self.admin: AdminListener | None = None
        """The admin listener ``instrument()`` mounted (``admin_port`` set), else None."""

    # -- what the admin API reads ------------------------------------------------------------

    def message_totals(self) -> tuple[int, int]:
        """Data messages in and out since start, all routes (``wsops_messages_total``)."""
        routes = {id(st): st for st in self.metrics.routes.values()}.values()
        return (sum(sum(st.messages_in.values()) for st in routes),
                sum(sum(st.messages_out.values()) for st in routes))

    def sample(self) -> None:
        """Add one sample of the cumulative counters to the stats window (once a second)."""
        self.window.add(Sample(time.monotonic(), *self.message_totals(),
                               tuple(self.metrics.delivery_latency.counts)))

    async def sampler(self) -> None:
        for hook in self.metrics.before_collect:
            hook()
        while True:
            self.sample()
            await asyncio.sleep(1.0)
            for hook in self.metrics.before_collect:
                hook()

    def figures(self) -> dict[str, Any]:
        """What every node's ``/admin/stats`` holds from the instrumentation: uptime, live
        connections, message rates and totals, delivery p99, runtime health."""
        for hook in self.metrics.before_collect:
            hook()  # the totals exactly as a scrape now would read them
        messages_in, messages_out = self.message_totals()
        out: dict[str, Any] = {
            "version": __version__,
            "started_at": self.started_at,
            "uptime_seconds": time.time() - self.started_at,
            "connections": self.live.total(),
            "connections_by_route": self.live.counts(),
            **self.window.summary(),
            "messages_in_total": messages_in,
            "messages_out_total": messages_out,
        }
        if self.runtime is not None:
            out.update(self.runtime.snapshot())
        return out

    # -- the middleware ----------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return await handler(request)
        route = _route_of(request)
        if self.config.own_drain and self.drainer.draining:
            request[REFUSAL_KEY] = "draining"
            self._refused(request, route, 503, None)
            raise web.HTTPServiceUnavailable(text="node is draining", headers={"Retry-After": "5"})
        span = self.tracing.handshake(route, request.path, request.headers, request.method,
                                      request.scheme)
        if span is not None:
            request[SPAN_KEY] = span
        ended = "1000"
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            self._refused(request, route, exc.status, span)
            raise
        except BaseException as exc:
            ended = "1006" if isinstance(exc, (ConnectionError, asyncio.CancelledError)) else "1011"
            if request.get(LIVE_KEY) is None:
                self._refused(request, route, 500, span)
            raise
        finally:
            live: LiveConn | None = request.get(LIVE_KEY)
            if live is not None:
                self._finish(live, ended)
        if request.get(LIVE_KEY) is None:
            self._refused(request, route, resp.status, span)
        return resp

    def _refused(self, request: web.Request, route: str, status: int, span: Span | None) -> None:
        if request.get(LIVE_KEY) is not None or request.get(HANDED_OFF_KEY):
            return
        reason = request.get(REFUSAL_KEY) or f"http_{status}"
        stats = self.metrics.route(route)
        reason = self.metrics.reason_guard(reason)
        stats.handshake_failures[reason] = stats.handshake_failures.get(reason, 0) + 1
        if span is not None:
            span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
            span.set_status(Status(StatusCode.ERROR, reason))
            span.end()

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        if not isinstance(response, web.WebSocketResponse) or response.status != 101:
            return
        route, stats = self._opened(request)
        self._counted[id(stats)] = stats
        live = LiveConn(response, route, stats, request.transport)
        self.live.add(live)
        request[LIVE_KEY] = live
        self._wrap(live, stats, request.protocol)

    def _derive_totals(self) -> None:
        for stats in self._counted.values():
            stats.derive_in()
            stats.derive_out()

    def _opened(self, request: web.Request) -> tuple[str, RouteStats]:
        """An upgrade succeeded: count it on its route and end its handshake span (101)."""
        route = self.metrics.route_guard(_route_of(request))
        stats = self.metrics.route(route)
        stats.opened += 1
        span: Span | None = request.get(SPAN_KEY)
        if span is not None:
            span.set_attribute(HTTP_RESPONSE_STATUS_CODE, 101)
            span.end()
        return route, stats

    def adopt(self, request: web.Request) -> RouteStats:
        """A handler that upgrades ``request`` without a ``WebSocketResponse`` (the bundled
        server's handoff) reports the connection here: opened now, its figures in the
        returned route stats (kept by the handler), its end through ``finished``. Its live
        connections are counted through ``live.add_group``."""
        request[HANDED_OFF_KEY] = True
        return self._opened(request)[1]

    def finished(self, stats: RouteStats, code: int, opened_at: float) -> None:
        """An adopted connection ended with close ``code`` (the server's when it closed
        first, else the peer's, 1006 when the TCP connection was lost)."""
        key = self.metrics.code_guard(str(code))
        stats.closed[key] = stats.closed.get(key, 0) + 1
        stats.duration.observe(time.monotonic() - opened_at)

    def _finish(self, live: LiveConn, ended: str) -> None:
        self.live.discard(live)
        ws = live.ws
        # The server's own close code when it closed first (ws.close_code then holds the
        # peer's echo); else what aiohttp recorded (the peer's code, 1006 when lost).
        code = live.close_code if live.close_code is not None else ws.close_code
        if code is None and ws.closed:
            code = 1006
        stats = live.stats
        key = self.metrics.code_guard(str(code) if code is not None else ended)
        stats.closed[key] = stats.closed.get(key, 0) + 1
        stats.duration.observe(time.monotonic() - live.opened_at)
        live.end_span()

    # -- per-connection hooks ----------------------------------------------------------------

    def _wrap(self, live: LiveConn, stats: RouteStats, protocol: Any) -> None:
        if self.config.message_spans and self.tracing.enabled:
            live.tracing = self.tracing
        count(live.ws, live)
        if live.ws._heartbeat is not None:
            self._wrap_heartbeat(live, stats, protocol)

    @staticmethod
    def _wrap_heartbeat(live: LiveConn, stats: RouteStats, protocol: Any) -> None:
        """Ping round trip: from a heartbeat ping to the first bytes the peer sends after it.

        aiohttp swallows PONG frames, so this is exact for idle peers and an underestimate for
        busy ones (they prove they are alive sooner). aiohttp looks ``_send_heartbeat`` up on
        the instance each time it schedules a ping, so the wrapper set now is the one it calls.
        The data hook costs nothing per message: it is swapped into the protocol's
        ``data_received`` callback only while a ping is outstanding, and swaps itself out at
        the first bytes that follow.
        """
        ws: Any = live.ws
        orig_ping = ws._send_heartbeat
        rtt = stats.ping_rtt
        orig_cb: list[Callable[[], None]] = []

        def send_heartbeat() -> None:
            orig_ping()
            if ws._pong_response_cb is None or live.ping_at:
                return
            cb = protocol._data_received_cb
            if cb is None or cb is on_data:
                return
            live.ping_at = _perf()
            orig_cb[:] = [cb]
            protocol._data_received_cb = on_data

        def on_data() -> None:
            if live.ping_at:
                rtt.observe(_perf() - live.ping_at)
                live.ping_at = 0.0
            cb = orig_cb[0]
            if protocol._data_received_cb is on_data:
                protocol._data_received_cb = cb
            cb()

        ws._send_heartbeat = send_heartbeat


def _route_of(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.route is not None else None
    return resource.canonical if resource is not None else "unmatched"
