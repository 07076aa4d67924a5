"""The bundled node's observer: the core's reports (``wsops.server.core.observer``) as metrics
and spans of the instrumentation layer.

Per publish, never per delivery: the size of the delivered frame (counted once with the number
of subscribers), publish-to-socket latency measured at the end-of-tick flush, the broker's
publish latency, and, for publishes that carry a sampled traceparent, the publish and fan-out
spans. The hub writes frames itself (not through ``ws.send_str``), so its counters are copied
into the route's figures before each collection (``sync``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric

from wsops.instrumentation.metrics import Histogram, RouteStats, WsMetrics
from wsops.instrumentation.pycounts import compiled_module
from wsops.instrumentation.tracing import Tracing, parse_traceparent
from wsops.server.core.broker import Published
from wsops.server.core.hub import HubStats
from wsops.server.core.observer import Publish
from wsops.server.core.protocol import OPS, Request
from wsops.server.core.session import INVALID

_perf = time.perf_counter
NEVER = 1 << 62  # ``quiet`` when no root publish is ever traced (a count that never runs out)


class NodeObserver:
    """Implements ``HubObserver`` and ``SessionObserver`` for one node's route.

    The hooks called per frame, per publish or per tick, ``served``, ``fanout``,
    ``publish_stored`` and ``flushed``, are attributes: the compiled hooks of ``_hooks.c`` where
    wsops was built with them (a Python method call costs more than their whole work), else
    this class's ``_served``, ``_fanout``, ``_publish_stored`` and ``_flushed``, which they
    follow and hand anything traced to (``compiled=False``: those, whatever was built)."""

    served: Callable[[str, float, str | None], None]
    fanout: Callable[[Published, int], bool]
    publish_stored: Callable[[Any, Published, float, bool], None]
    flushed: Callable[[], None]

    def __init__(self, metrics: WsMetrics, stats: RouteStats, tracing: Tracing | None, *,
                 compiled: bool = True) -> None:
        self.metrics = metrics
        self.stats = stats
        self.tracing = tracing
        self._size_out = stats.size_out
        self._latency = metrics.delivery_latency
        # Publishes handed to sockets since the last flush: accepted_at, and (accepted_at, span)
        # for those that carry a traceparent (the span is None when it was not sampled).
        self._delivered: list[float] = []
        self._delivered_traced: list[tuple[float, Any]] = []
        # Per op (a fixed set: the protocol's ops and "invalid"): duration, and errors by code
        # (the protocol's codes: bounded too).
        self.ops = {op: Histogram(metrics.latency_bounds) for op in (*sorted(OPS), INVALID)}
        self.op_errors: dict[tuple[str, str], int] = {}
        self.resumes = {True: 0, False: 0}
        # Publishes stored: every one is in the broker's latency histogram once; those of the
        # server API (no sender) are counted here, the rest are clients'.
        self.published_api = 0
        self._broker_latency = metrics.broker_publish_latency
        # Root publishes (no traceparent) not traced before the next one that is: a gap drawn
        # from the geometric distribution, which makes each one traced with probability
        # ``ratio``, independently (a Bernoulli process), with one draw per traced publish
        # instead of one per publish. Sessions read it to skip ``publish_started``.
        self.quiet = NEVER
        self._log_untraced = 0.0  # log(1 - ratio), for the draws
        if tracing is not None and tracing.enabled and tracing.ratio > 0.0:
            self._log_untraced = math.log1p(-tracing.ratio) if tracing.ratio < 1.0 else -math.inf
            self.quiet = self._gap()
        # The traced publish in progress: its ``Tracing.open_publish`` handle (whose first
        # item is its envelope's traceparent), and its fan-out's on this node when it had one.
        self._publishing: Any = None
        self._fanned: Any = None
        hooks = compiled_module() if compiled else None
        if hooks is None:
            self.served, self.fanout = self._served, self._fanout
            self.publish_stored, self.flushed = self._publish_stored, self._flushed
        else:
            self.served = hooks.OpTimer(self.ops, self._op_failed)
            self.fanout = hooks.FanoutCounter(
                self._size_out, self._delivered, None if tracing is None else self._fanout_traced)
            self.publish_stored = hooks.StoredTimer(self._broker_latency, self._stored_traced)
            self.flushed = hooks.FlushTimer(self._latency, self._delivered,
                                            self._delivered_traced, self._flushed_traced)

    # -- HubObserver -------------------------------------------------------------------------

    def _fanout(self, msg: Published, subscribers: int) -> bool:
        """``fanout``: the frame's size once per subscriber; the publish's accepted_at kept
        for its latency at the flush."""
        self._size_out.observe_n(len(msg.frame), subscribers)
        accepted_at = msg.accepted_at
        if not accepted_at:
            return False
        if msg.traceparent is None or self.tracing is None:
            self._delivered.append(accepted_at)
            return True
        return self._fanout_traced(msg, subscribers)

    def _fanout_traced(self, msg: Published, subscribers: int) -> bool:
        """The rest of ``fanout`` for a publish that carries a traceparent: its fan-out span
        (a ``Tracing`` handle; None when its traceparent was not sampled)."""
        tracing, traceparent = self.tracing, msg.traceparent
        assert tracing is not None and traceparent is not None
        publishing = self._publishing
        if publishing is not None and traceparent is publishing[0]:
            # Fanned out while its publish span is open (the memory broker): the very string
            # made for that span, so its ids need no parsing.
            handle = self._fanned = tracing.open_fanout(msg.room, subscribers, publishing)
        else:
            handle = tracing.open_fanout_of(msg.room, subscribers, traceparent, msg.tracestate)
        self._delivered_traced.append((msg.accepted_at, handle))
        return True

    def _flushed(self) -> None:
        """``flushed``: publish-to-socket latency, once per publish (not per delivery)."""
        if not self._delivered and not self._delivered_traced:
            return
        now = time.time()
        if self._delivered:
            self._latency.observe_elapsed(now, self._delivered)
            self._delivered.clear()
        if self._delivered_traced:
            self._flushed_traced(now)

    def _flushed_traced(self, now: float) -> None:
        """The rest of ``flushed`` for the tick's publishes that carried a traceparent: their
        fan-out spans ended, their trace ids the latency's exemplars."""
        hist, close = self._latency, Tracing.close_fanout
        for accepted_at, handle in self._delivered_traced:
            if handle is not None:
                hist.observe_traced(now - accepted_at, close(handle), now)
            else:
                hist.observe(now - accepted_at)
        self._delivered_traced.clear()

    def sync(self, hub: HubStats) -> None:
        """Copy the hub's write counters into the route's figures, and derive its handler
        latency from the per-op durations (before a collection): a frame is timed once, by
        ``served``, not once per family. A frame refused by the rate limit is not timed."""
        latency, ops = self.stats.handler_latency, self.ops.values()
        latency.counts = [sum(col) for col in zip(*(h.counts for h in ops), strict=True)]
        latency.sum = sum(h.sum for h in ops)
        self.stats.derive_in()
        self.stats.messages_out["text"] = hub.frames
        self.stats.bytes_out = hub.delivered_bytes
        self.stats.slow_consumers = hub.slow_consumers

    # -- SessionObserver ---------------------------------------------------------------------

    def rate_limited(self) -> None:
        self.stats.rate_limited += 1

    def _served(self, op: str, started: float, code: str | None) -> None:
        """``served``: the op's duration; its error code counted."""
        self.ops[op].observe_since(started)
        if code is not None:
            self._op_failed(op, code)

    def _op_failed(self, op: str, code: str) -> None:
        self.op_errors[op, code] = self.op_errors.get((op, code), 0) + 1

    @property
    def published(self) -> dict[str, int]:
        """Publishes stored, by source: a client's (it has a sender) or the server API's."""
        api = self.published_api
        return {"client": self._broker_latency.count - api, "api": api}

    def resumed(self, recovered: bool) -> None:
        self.resumes[recovered] += 1

    def families(self) -> Iterator[Metric]:
        """Per-op duration and errors, resume outcomes (a source of the node's metrics)."""
        dur = HistogramMetricFamily(
            "wsops_operation_duration_seconds", "Time to serve a client request, by op "
            "(\"invalid\": frames that did not parse), from its frame read to its reply "
            "queued (a subscribe's replay included).", labels=["op"])
        for op, hist in self.ops.items():
            dur.add_metric([op], hist.cumulative(), hist.sum)
        errors = CounterMetricFamily(
            "wsops_operation_errors", "Client requests answered with an error, by op and "
            "error code (PROTOCOL.md); rate-limited frames are wsops_rate_limited_messages.",
            labels=["op", "code"])
        for (op, code), n in sorted(self.op_errors.items()):
            errors.add_metric([op, code], n)
        resumes = CounterMetricFamily(
            "wsops_resumes", "Subscribes that resumed from an offset, by whether every message "
            "since was still there (recovered=\"false\": the client was told of the gap).",
            labels=["recovered"])
        for recovered, n in self.resumes.items():
            resumes.add_metric([str(recovered).lower()], n)
        sources = CounterMetricFamily(
            "wsops_publishes", "Messages this node published (stored by its broker), by "
            "source: a client's publish or the server API's.", labels=["source"])
        for source, n in self.published.items():
            sources.add_metric([source], n)
        yield from (dur, errors, resumes, sources)

    # -- publishes (a session's through the hooks, the server API's and debug's wrapped) ------

    def publish_started(self, req: Request) -> Any:
        """A client's publish of ``req`` goes to the broker next: the sampling decision
        (a parent's flag, else the ratio), made once and before any span exists. Returns the
        publish span's handle, or None when it is not traced. A traced publish's envelope
        carries its span: ``req.traceparent`` is rewritten to it (and ``req.tracestate`` is
        dropped with a malformed parent, whose state means nothing)."""
        tracing = self.tracing
        traceparent = req.traceparent
        if traceparent is None:  # a root: the ratio decides
            if self.quiet > 0:
                self.quiet -= 1
                return None
            assert tracing is not None
            self.quiet = self._gap()
            handle = tracing.open_publish(req.room, None)
        elif tracing is None:
            return None
        else:  # its parent decides
            parent = parse_traceparent(traceparent)
            if parent is None:
                req.tracestate = None
            if not tracing.decide(parent):
                return None
            handle = tracing.open_publish(req.room, parent, req.tracestate)
        req.traceparent = handle[0]  # subscribers' deliveries link to this span
        self._publishing = handle
        return handle

    def _gap(self) -> int:
        """Root publishes to leave untraced before the next traced one: Geometric(ratio)
        failures before a success, ``floor(log(1 - U) / log(1 - ratio))``."""
        assert self.tracing is not None
        if self._log_untraced == -math.inf:  # ratio 1
            return 0
        return min(int(math.log(1.0 - self.tracing.random()) / self._log_untraced), NEVER)

    def publish_forced(self, req: Request) -> Any:
        """``wsops debug``: ``publish_started`` traced whatever the ratio. A sampled parent
        stays the parent; an unsampled or malformed one gives way to a new root (its decision
        was the ratio's)."""
        assert self.tracing is not None
        parent = parse_traceparent(req.traceparent)
        if parent is None or not parent.trace_flags.sampled:
            parent = req.tracestate = None
        handle = self.tracing.open_publish(req.room, parent, req.tracestate)
        req.traceparent = handle[0]
        self._publishing = handle
        return handle

    def _publish_stored(self, handle: Any, msg: Published, started: float, client: bool
                        ) -> None:
        """``publish_stored``: the broker stored the publish ``publish_started`` gave
        ``handle`` for, since ``started`` (``time.perf_counter``); ``client``: a client's, not
        the server API's (which ``wrap_publish`` counts)."""
        if handle is None:
            self._broker_latency.observe_since(started)
        else:
            self._stored_traced(handle, msg, started, client)

    def _stored_traced(self, handle: Any, msg: Published, started: float, client: bool
                       ) -> None:
        """The rest of ``publish_stored`` for a traced publish: its span ended, its trace
        the latency's exemplar."""
        fanned, self._publishing, self._fanned = self._fanned, None, None
        assert self.tracing is not None
        self._broker_latency.observe_traced(_perf() - started, self.tracing.close_publish(
            handle, msg.epoch, msg.offset, fanned))

    def publish_failed(self, handle: Any, error: Exception) -> None:
        """The broker refused or failed the publish ``publish_started`` gave ``handle`` for."""
        self.metrics.broker_errors += 1
        if handle is not None:
            self._publishing = self._fanned = None
            assert self.tracing is not None
            self.tracing.fail_publish(handle, error)

    def wrap_publish(self, publish: Publish, *, forced: bool = False) -> Publish:
        """``publish`` observed as a session's publishes are (the server API's path;
        ``forced``: the debug switch's, traced whatever the ratio)."""
        start = self.publish_forced if forced else self.publish_started

        async def observed(room: str, data: bytes, traceparent: str | None,
                           sender: str | None, tracestate: str | None = None) -> Published:
            req = Request("publish", 0, room, data, traceparent=traceparent,
                          tracestate=tracestate)
            handle = start(req)
            started = _perf()
            try:
                msg = await publish(room, data, req.traceparent, sender, req.tracestate)
            except Exception as exc:
                self.publish_failed(handle, exc)
                raise
            self.publish_stored(handle, msg, started, sender is not None)
            if sender is None:
                self.published_api += 1
            return msg

        return observed
