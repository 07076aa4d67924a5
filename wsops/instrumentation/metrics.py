"""What wsops measures: metric families kept in plain counters and histograms, exposed by one
prometheus-client Collector on an injected registry.

Hot paths (every message, every flush) make one call of a ``Counts`` method per histogram
(``pycounts``: compiled where it could be built), a fraction of a ``prometheus_client``
``.labels().observe()``; values become metric families only when ``/metrics`` is scraped.
Everything is updated from the event loop's thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.samples import Exemplar

from wsops.instrumentation.pycounts import Fast

DEFAULT_SLO_SECONDS = 0.010
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Integers: sizes are ints, and bisecting ints among ints is ~40% cheaper than among floats
# (the exposition formats every bound as a float either way).
SIZE_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
DURATION_BUCKETS = (1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0)
OTHER = "other"


def latency_buckets(slo: float, base: Sequence[float] = LATENCY_BUCKETS) -> tuple[float, ...]:
    """``base`` with a boundary exactly at the SLO threshold."""
    if slo <= 0:
        raise ValueError("the latency SLO must be > 0 seconds")
    return tuple(sorted({*base, slo}))


class LabelGuard:
    """Caps the distinct values of a label a user can influence; the rest become ``other``."""

    __slots__ = ("cap", "seen")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if len(self.seen) >= self.cap:
            return OTHER
        self.seen.add(value)
        return value


def _hex_id(trace_id: int | str | bytes) -> str:
    """A trace id as an exemplar shows it: 32 hex digits."""
    if isinstance(trace_id, str):
        return trace_id
    return trace_id.hex() if isinstance(trace_id, bytes) else f"{trace_id:032x}"


class Histogram(Fast):
    """Bucket counts kept by ``pycounts.Counts`` (compiled where it could be built): hot paths
    call ``observe``, ``observe_n``, ``observe_since`` or ``observe_elapsed`` once per message,
    publish or flush; exemplars are kept per bucket. Families are made from it when scraped."""

    __slots__ = ()

    def cumulative(self) -> list[tuple[str, float] | tuple[str, float, Exemplar]]:
        out: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
        total = 0
        les = [*(_le(b) for b in self.bounds), "+Inf"]
        exemplars = self.exemplars
        for i, (le, n) in enumerate(zip(les, self.counts, strict=True)):
            total += n
            kept = exemplars.get(i)
            if kept is None:
                out.append((le, float(total)))
                continue
            tid, value, at = kept
            ex = Exemplar({"trace_id": _hex_id(tid)}, value, at)
            out.append((le, float(total), ex))
        return out

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding quantile ``q`` (0 when empty)."""
        counts = self.counts
        total = sum(counts)
        if not total:
            return 0.0
        rank, acc, bounds = q * total, 0, self.bounds
        for i, n in enumerate(counts):
            acc += n
            if acc >= rank:
                return bounds[i] if i < len(bounds) else float("inf")
        return float("inf")


class SizeHistogram(Histogram):
    """Sizes in bytes, with power-of-two bounds (``SIZE_BUCKETS``)."""

    __slots__ = ()

    def __init__(self, bounds: Sequence[int] = SIZE_BUCKETS) -> None:
        if any(b < 2 or b & (b - 1) for b in bounds):
            raise ValueError(f"size bounds must be powers of two >= 2, not {list(bounds)}")
        super().__init__(bounds)


def _le(bound: float) -> str:
    return repr(float(bound))


@dataclass
class RouteStats:
    """Counters of the WebSockets served by one route."""

    latency_bounds: Sequence[float]
    opened: int = 0
    closed: dict[str, int] = field(default_factory=dict)
    handshake_failures: dict[str, int] = field(default_factory=dict)
    messages_in: dict[str, int] = field(default_factory=lambda: {"text": 0, "binary": 0})
    messages_out: dict[str, int] = field(default_factory=lambda: {"text": 0, "binary": 0})
    bytes_in: int = 0
    bytes_out: int = 0
    rate_limited: int = 0
    slow_consumers: int = 0
    heartbeat_timeouts: int = 0
    size_in: SizeHistogram = field(default_factory=SizeHistogram)
    size_out: SizeHistogram = field(default_factory=SizeHistogram)
    duration: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    handler_latency: Histogram = field(init=False)
    ping_rtt: Histogram = field(init=False)

    def __post_init__(self) -> None:
        self.handler_latency = Histogram(self.latency_bounds)
        self.ping_rtt = Histogram(self.latency_bounds)

    def derive_in(self) -> None:
        """Received text messages and bytes from the size histogram, for a route that counts
        them only there (one update per message, not three); before a collection."""
        self.messages_in["text"] = self.size_in.count - self.messages_in["binary"]
        self.bytes_in = int(self.size_in.sum)

    def derive_out(self) -> None:
        """The same for sent messages."""
        self.messages_out["text"] = self.size_out.count - self.messages_out["binary"]
        self.bytes_out = int(self.size_out.sum)


Source = Callable[[], Iterable[Metric]]


class WsMetrics:
    """All wsops metric families; register with ``registry.register(metrics)``."""

    def __init__(
        self,
        *,
        slo_seconds: float = DEFAULT_SLO_SECONDS,
        max_label_values: int = 64,
        open_connections: Callable[[], dict[str, int]] | None = None,
        queue_bytes: Callable[[], tuple[int, int]] | None = None,
        draining: Callable[[], bool] | None = None,
        build_info: dict[str, str] | None = None,
    ) -> None:
        """``draining``: whether the app drains now (``wsops_draining``); None when the app
        reports it itself (the bundled server, with ``wsops_broker_up``)."""
        self.slo_seconds = slo_seconds
        self.latency_bounds = latency_buckets(slo_seconds)
        self.routes: dict[str, RouteStats] = {}
        self.route_guard = LabelGuard(max_label_values)
        self.reason_guard = LabelGuard(max_label_values)
        self.code_guard = LabelGuard(max_label_values)
        self.delivery_latency = Histogram(self.latency_bounds)
        self.broker_publish_latency = Histogram(self.latency_bounds)
        self.broker_errors = 0
        self._draining = draining
        self._open = open_connections or dict
        self._queue_bytes = queue_bytes
        self._build = build_info or {}
        self._sources: list[Source] = []
        self.before_collect: list[Callable[[], None]] = []

    def route(self, route: str) -> RouteStats:
        """The stats of ``route`` (created on first use; capped by the label guard)."""
        stats = self.routes.get(route)
        if stats is None:
            name = self.route_guard(route)
            stats = self.routes.get(name)
            if stats is None:
                stats = self.routes[name] = RouteStats(self.latency_bounds)
            self.routes[route] = stats
        return stats

    def add_source(self, source: Source) -> None:
        """More families for the same scrape (runtime health, the bundled server)."""
        self._sources.append(source)

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        for hook in self.before_collect:
            hook()
        routes = {name: st for name, st in self.routes.items() if self.route_guard(name) == name}
        open_now = self._open()
        g = GaugeMetricFamily(
            "wsops_connections_open", "WebSocket connections open now, counted at scrape time.",
            labels=["route"],
        )
        for name in sorted(set(routes) | set(open_now)):
            g.add_metric([name], open_now.get(name, 0))
        yield g
        yield from self._counters(routes)
        yield from self._histograms(routes)
        yield from self._node()
        for source in self._sources:
            yield from source()

    def _counters(self, routes: dict[str, RouteStats]) -> Iterable[Metric]:
        opened = CounterMetricFamily(
            "wsops_connections_opened", "WebSocket connections accepted.", labels=["route"]
        )
        closed = CounterMetricFamily(
            "wsops_connections_closed",
            "WebSocket connections ended, by final close code (1006: lost without a close "
            "frame, also heartbeat timeouts).",
            labels=["route", "code"],
        )
        failed = CounterMetricFamily(
            "wsops_handshake_failures", "Upgrade requests refused, by reason.",
            labels=["route", "reason"],
        )
        msgs = CounterMetricFamily(
            "wsops_messages", "WebSocket data messages.", labels=["route", "direction", "type"]
        )
        nbytes = CounterMetricFamily(
            "wsops_message_bytes", "Payload bytes of WebSocket data messages.",
            labels=["route", "direction"],
        )
        limited = CounterMetricFamily(
            "wsops_rate_limited_messages", "Messages refused by a rate limit.", labels=["route"]
        )
        slow = CounterMetricFamily(
            "wsops_slow_consumer_disconnects",
            "Connections closed because their send queue overflowed.", labels=["route"],
        )
        heartbeat = CounterMetricFamily(
            "wsops_heartbeat_timeouts",
            "Connections closed because the peer did not answer a heartbeat ping in time.",
            labels=["route"],
        )
        for name, st in routes.items():
            opened.add_metric([name], st.opened)
            for code, n in st.closed.items():
                closed.add_metric([name, code], n)
            for reason, n in st.handshake_failures.items():
                failed.add_metric([name, reason], n)
            for kind, n in st.messages_in.items():
                msgs.add_metric([name, "in", kind], n)
            for kind, n in st.messages_out.items():
                msgs.add_metric([name, "out", kind], n)
            nbytes.add_metric([name, "in"], st.bytes_in)
            nbytes.add_metric([name, "out"], st.bytes_out)
            limited.add_metric([name], st.rate_limited)
            slow.add_metric([name], st.slow_consumers)
            heartbeat.add_metric([name], st.heartbeat_timeouts)
        yield from (opened, closed, failed, msgs, nbytes, limited, slow, heartbeat)

    def _histograms(self, routes: dict[str, RouteStats]) -> Iterable[Metric]:
        def fam(name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
            return HistogramMetricFamily(name, doc, labels=labels)

        size = fam("wsops_message_size_bytes", "Size of WebSocket data messages.",
                   ["route", "direction"])
        dur = fam("wsops_connection_duration_seconds", "Lifetime of ended connections.",
                  ["route"])
        lat = fam("wsops_handler_latency_seconds",
                  "Time from a message being received to its handler asking for the next one.",
                  ["route"])
        rtt = fam("wsops_ping_rtt_seconds", "Round trip of server pings (heartbeats).",
                  ["route"])
        for name, st in routes.items():
            size.add_metric([name, "in"], st.size_in.cumulative(), st.size_in.sum)
            size.add_metric([name, "out"], st.size_out.cumulative(), st.size_out.sum)
            dur.add_metric([name], st.duration.cumulative(), st.duration.sum)
            lat.add_metric([name], st.handler_latency.cumulative(), st.handler_latency.sum)
            rtt.add_metric([name], st.ping_rtt.cumulative(), st.ping_rtt.sum)
        yield from (size, dur, lat, rtt)

    def _node(self) -> Iterable[Metric]:
        delivery = HistogramMetricFamily(
            "wsops_delivery_latency_seconds",
            "Publish accepted to frame written to the subscriber's socket (bundled server).",
        )
        delivery.add_metric([], self.delivery_latency.cumulative(), self.delivery_latency.sum)
        yield delivery
        pub = HistogramMetricFamily(
            "wsops_broker_publish_latency_seconds", "Time the broker took to accept a publish."
        )
        pub.add_metric([], self.broker_publish_latency.cumulative(),
                       self.broker_publish_latency.sum)
        yield pub
        yield CounterMetricFamily(
            "wsops_broker_errors", "Broker operations that failed.", value=self.broker_errors
        )
        if self._draining is not None:
            yield GaugeMetricFamily(
                "wsops_draining", "1 while the node drains.", value=int(self._draining()))
        if self._queue_bytes is not None:
            total, biggest = self._queue_bytes()
            yield GaugeMetricFamily(
                "wsops_send_queue_bytes", "Bytes waiting to be sent, all connections.",
                value=total,
            )
            yield GaugeMetricFamily(
                "wsops_send_queue_max_bytes", "Bytes waiting to be sent on the fullest connection.",
                value=biggest,
            )
        if self._build:
            info = InfoMetricFamily("wsops_build", "wsops build information.")
            info.add_metric([], self._build)
            yield info
