"""A TracerProvider that writes OTLP itself: sampled spans at about a tenth of the SDK's cost.

``provider_from_env`` builds this rather than the SDK's ``TracerProvider`` + ``BatchSpanProcessor``
+ ``OTLPSpanExporter``: wsops has decided to sample before it asks for a span, so a span here is
only what an exporter needs: two ids, two clock reads, and bytes. The part a span shares with
others of its operation and room (name, kind, messaging attributes) is encoded once
(``otlpwire.static_part``) and cached; the rest is encoded when the span ends, on the caller's
thread, so the exporting thread only joins bytes and sends them: it holds the GIL briefly, and
the event loop does not wait behind a batch being encoded. Measured (BENCHMARKS.md, callgrind):
a sampled publish and its fan-out span cost ~93-110K instructions here against ~957K with the
SDK's provider, processor and exporter.

It implements the OpenTelemetry API (``start_span``, ``start_as_current_span``, the ``Span``
methods), so code written against the API works with it; it keeps what a parent decided (a
parent that was not sampled gives a non-recording span: ``ParentBased(ALWAYS_ON)``). Spans wait in
a queue bounded like the SDK's (``OTEL_BSP_MAX_QUEUE_SIZE``, default 2048; a full queue drops
and counts, as the SDK does) and leave in batches (``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``,
``OTEL_BSP_SCHEDULE_DELAY``) through ``OtlpHttp`` (``otlphttp.py``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from random import getrandbits
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.semconv._incubating.attributes.messaging_attributes import MESSAGING_MESSAGE_ID
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util._decorator import _agnosticcontextmanager

from wsops.instrumentation import otlpwire as wire

log = logging.getLogger("wsops.tracing")
STATIC_CACHE = 1024  # distinct (name, kind, attributes) encodings kept per tracer
_time_ns = time.time_ns
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class LeanSpan(trace.Span):
    """A recording, sampled span; encoded into the export queue when it ends."""

    __slots__ = ("_context", "_ended", "_extra", "_kind", "_name", "_parent_id", "_parent_remote",
                 "_start", "_static", "_trace_state", "_tracer", "span_id", "trace_id")

    def __init__(self, tracer: LeanTracer, name: str, kind: SpanKind, static: bytes | None,
                 trace_id: int, span_id: int, parent: SpanContext | None, start: int) -> None:
        self._tracer = tracer
        self._name, self._kind, self._static = name, kind, static
        self.trace_id, self.span_id = trace_id, span_id
        self._parent_remote: bool | None = None
        if parent is not None:
            self._parent_id, self._parent_remote = parent.span_id, parent.is_remote
            self._trace_state = parent.trace_state.to_header() if parent.trace_state else ""
        else:
            self._parent_id, self._trace_state = 0, ""
        self._start = start
        self._extra: list[bytes] = []
        self._ended = False
        self._context: SpanContext | None = None

    def traceparent(self) -> str:
        """The W3C traceparent naming this span (sampled)."""
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-01"

    def get_span_context(self) -> SpanContext:
        ctx = self._context
        if ctx is None:
            ctx = self._context = SpanContext(self.trace_id, self.span_id, False, _SAMPLED)
        return ctx

    def is_recording(self) -> bool:
        return not self._ended

    def set_attribute(self, key: str, value: Any) -> None:
        if not self._ended and value is not None:
            self._extra.append(wire.str_attribute(key, value) if type(value) is str else
                               wire.field(wire.ATTRIBUTE, wire.key_value(key, value)))

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        if not self._ended:
            self._extra.append(wire.event(name, timestamp or _time_ns(), attributes or {}))

    def add_link(self, context: SpanContext, attributes: Any = None) -> None:
        if not self._ended and context.is_valid:
            self._extra.append(wire.link(context.trace_id, context.span_id,
                                         int(context.trace_flags)))

    def update_name(self, name: str) -> None:
        if not self._ended:
            self._name, self._static = name, None

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._ended:
            return
        code = status.status_code if isinstance(status, Status) else status
        if isinstance(status, Status) and description is None:
            description = status.description
        if code is StatusCode.ERROR:
            self._extra.append(wire.status_error(description or ""))

    def record_exception(self, exception: BaseException, attributes: Any = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        stack = "".join(traceback.format_exception(type(exception), exception,
                                                   exception.__traceback__))
        self.add_event("exception", {
            "exception.type": type(exception).__qualname__, "exception.message": str(exception),
            "exception.stacktrace": stack, **(attributes or {})}, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        static = self._static
        if static is None:
            static = wire.static_part(self._name, self._kind.value, {})
        ids = wire.span_ids(self.trace_id, self.span_id, self._parent_id, self._trace_state,
                            self._parent_remote)
        tracer = self._tracer
        tracer.queue.put(tracer.scope, wire.span(ids, static, self._start,
                                                 end_time or _time_ns(), b"".join(self._extra)))


class LeanTracer(trace.Tracer):
    """Spans of one instrumentation scope."""

    def __init__(self, queue: SpanQueue, scope: bytes) -> None:
        self.queue = queue
        self.scope = scope
        self._static: dict[Any, bytes] = {}

    def start(self, name: str, kind: SpanKind, parent: SpanContext | None,
              attributes: Mapping[str, Any] | None = None, links: Sequence[Link] | None = None,
              start_time: int | None = None, static: bytes | None = None) -> trace.Span:
        """A span under ``parent`` (a remote or local span context), without a Context: the
        fast path ``Tracing`` uses. A parent that was not sampled gives a non-recording span.
        ``static`` is ``static_part(name, kind, attributes)`` when the caller keeps it."""
        if parent is not None and parent.is_valid:
            if not parent.trace_flags.sampled:
                return trace.NonRecordingSpan(SpanContext(parent.trace_id, getrandbits(64) or 1,
                                                          False, parent.trace_flags))
            trace_id = parent.trace_id
        else:
            parent, trace_id = None, getrandbits(128) or 1
        if static is None:
            static = self._cached_part(name, kind, attributes)
        span = LeanSpan(self, name, kind, static, trace_id, getrandbits(64) or 1, parent,
                        start_time or _time_ns())
        if static is None and attributes:
            span.set_attributes(attributes)
        if links:
            for link in links:
                span.add_link(link.context)
        return span

    def start_linked(self, name: str, kind: SpanKind, static: bytes | None, trace_id: int,
                     span_id: int, flags: int) -> LeanSpan:
        """A new root span linked to span ``span_id`` of trace ``trace_id`` (a fan-out linked
        to its publish), ``static`` from ``static_part``."""
        span = LeanSpan(self, name, kind, static, getrandbits(128) or 1, getrandbits(64) or 1,
                        None, _time_ns())
        span._extra.append(wire.link(trace_id, span_id, flags))
        return span

    @staticmethod
    def static_part(name: str, kind: SpanKind, attributes: Mapping[str, Any]) -> bytes:
        """The encoding of a span's name, kind and attributes, to pass to ``start``."""
        return wire.static_part(name, kind.value, attributes)

    def _cached_part(self, name: str, kind: SpanKind,
                     attributes: Mapping[str, Any] | None) -> bytes | None:
        try:
            key = (name, kind, tuple(attributes.items()) if attributes else ())
            static = self._static.get(key)
        except TypeError:  # an unhashable value (a list): encoded with the span instead
            return None
        if static is None:
            if len(self._static) >= STATIC_CACHE:
                self._static.clear()
            static = self._static[key] = wire.static_part(name, kind.value, attributes or {})
        return static

    def start_span(self, name: str, context: Context | None = None,
                   kind: SpanKind = SpanKind.INTERNAL, attributes: Any = None,
                   links: Any = None, start_time: int | None = None,
                   record_exception: bool = True,
                   set_status_on_exception: bool = True) -> trace.Span:
        parent = trace.get_current_span(context).get_span_context()
        return self.start(name, kind, parent if parent.is_valid else None, attributes, links,
                          start_time)

    @_agnosticcontextmanager  # the API's own decorator, as its Tracer declares the method
    def start_as_current_span(self, name: str, context: Context | None = None,
                              kind: SpanKind = SpanKind.INTERNAL, attributes: Any = None,
                              links: Any = None, start_time: int | None = None,
                              record_exception: bool = True,
                              set_status_on_exception: bool = True,
                              end_on_exit: bool = True) -> Iterator[trace.Span]:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        with trace.use_span(span, end_on_exit=end_on_exit, record_exception=record_exception,
                            set_status_on_exception=set_status_on_exception) as current:
            yield current


PUBLISHED, FANNED_OUT, PUBLISHED_AND_FANNED_OUT = 0, 1, 2
"""Kinds of span records (``SpanQueue.put`` takes these tuples as well as encoded spans):
``(PUBLISHED, ids, start_ns, end_ns, static, parent_id, trace_state, epoch, offset)``: a publish
span (``parent_id``: its remote parent's 8-byte id, empty for a root) whose message id is
``epoch:offset``; ``(FANNED_OUT, ids, start_ns, end_ns, static, link_ids,
link_trace_state)``: a fan-out span linked to the span ``link_ids`` names;
``(PUBLISHED_AND_FANNED_OUT, published, ids, start_ns, end_ns, static, link_ids,
link_trace_state)``: a publish (``published``: its record) and its fan-out on this node, the two
spans in one record. Ids as in
``otlpwire.message_span``. The bundled node's spans leave as records: the export thread
encodes them, a batch at a time."""


_MESSAGE_ID_KEY, _MAX_PACKED_ID = wire.MESSAGE_ID_KEY, wire.MAX_PACKED_ID
_MESSAGE_ID_KEY_SIZE = len(_MESSAGE_ID_KEY)


def encode_record(record: tuple[Any, ...]) -> bytes:
    """The ``ScopeSpans.spans`` field of a span record."""
    if record[0] == PUBLISHED:
        _, ids, start, end, static, parent_id, state, epoch, offset = record
        raw = b"%s:%d" % (epoch.encode(), offset)
        n = len(raw)
        message_id = (b"%s%c%s\x12%c\x0a%c%s" % (wire.ATTRIBUTE, _MESSAGE_ID_KEY_SIZE + n + 4,
                                                 _MESSAGE_ID_KEY, n + 2, n, raw)
                      if n < _MAX_PACKED_ID else  # lengths of one byte each
                      wire.str_attribute(MESSAGING_MESSAGE_ID, raw.decode()))
        return wire.message_span(ids, start, end, static, wire.parentage(parent_id, state)
                                 if parent_id else wire.ROOT_FLAGS, message_id)
    if record[0] == FANNED_OUT:
        _, ids, start, end, static, link_ids, link_state = record
        return wire.linked_root_span(ids, start, end, static, link_ids, link_state)
    _, published, ids, start, end, static, link_ids, link_state = record
    if not published[5] and not link_state and link_ids is published[1]:  # a root publish's
        _, pub_ids, pub_start, pub_end, pub_static, _, _, epoch, offset = published
        raw = b"%s:%d" % (epoch.encode(), offset)
        if len(raw) < _MAX_PACKED_ID:
            return wire.root_publish_and_fanout(pub_ids, pub_start, pub_end, pub_static, raw,
                                                ids, start, end, static)
    return encode_record(published) + wire.linked_root_span(ids, start, end, static, link_ids,
                                                            link_state)


class SpanQueue:
    """Encoded spans waiting for export, bounded; a daemon thread sends them in batches.

    ``send(body)`` posts one encoded request (raising on failure); ``request(scopes)`` builds
    it. The thread starts with the first span (and again in a forked child)."""

    def __init__(self, send: Any, resource: bytes, schema_url: str, max_queue: int = 2048,
                 batch: int = 512, delay: float = 5.0) -> None:
        if max_queue < 1 or batch < 1 or delay <= 0:
            raise ValueError("span queue size, batch size and delay must be positive")
        self._send = send
        self._resource, self._schema_url = resource, schema_url
        self.max_queue, self.batch, self.delay = max_queue, min(batch, max_queue), delay
        self._spans: deque[tuple[bytes, bytes | tuple[Any, ...]]] = deque()
        self.dropped = 0  # spans dropped on a full queue
        self.failed = 0  # spans whose export failed
        self.exported = 0
        self._wake = threading.Event()
        self._exporting = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forked)

    def put(self, scope: bytes, span: bytes | tuple[Any, ...]) -> None:
        """Queue an encoded span, or a span record (``PUBLISHED``, ``FANNED_OUT``)."""
        spans = self._spans
        if len(spans) >= self.max_queue or self._closed:
            self.dropped += 1
            return
        spans.append((scope, span))
        if self._thread is None:
            self._start()
        elif len(spans) == self.batch:
            self._wake.set()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="wsops-span-export", daemon=True)
        self._thread.start()

    def _forked(self) -> None:
        self._thread, self._exporting = None, threading.Lock()
        self._wake = threading.Event()
        self._spans.clear()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.delay)
            self._wake.clear()
            self.export()

    def export(self) -> bool:
        """Send everything queued now, a batch per request; False if a request failed."""
        ok = True
        with self._exporting:
            spans = self._spans
            popleft = spans.popleft
            while spans:
                batch = [popleft() for _ in range(min(self.batch, len(spans)))]
                n = len(batch)
                first = batch[0][0]
                encoded = [span if isinstance(span, bytes) else encode_record(span)
                           for _, span in batch]
                if all(scope is first for scope, _ in batch):  # one tracer: the usual case
                    groups: Any = [(first, encoded)]
                else:
                    grouped: dict[bytes, list[bytes]] = {}
                    for (scope, _), span in zip(batch, encoded, strict=True):
                        grouped.setdefault(scope, []).append(span)
                    groups = grouped.items()
                body = wire.request(self._resource, self._schema_url, groups)
                try:
                    self._send(body)
                except Exception as exc:  # an unreachable collector must not hurt the node
                    self.failed += n
                    ok = False
                    log.warning("exporting %d spans failed: %s (%d failed so far)", n, exc,
                                self.failed)
                else:
                    self.exported += n
        if self.dropped:
            log.debug("%d spans dropped on a full export queue", self.dropped)
        return ok

    def close(self, timeout: float = 5.0) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.export()


class LeanTracerProvider(trace.TracerProvider):
    """Tracers whose spans go to one ``SpanQueue``; ``force_flush`` and ``shutdown`` as the
    SDK's provider has them."""

    sampler = None  # wsops decides; a parent's decision is kept (see ``LeanTracer.start``)

    def __init__(self, queue: SpanQueue) -> None:
        self.queue = queue
        self._tracers: dict[tuple[str, str | None], LeanTracer] = {}

    def get_tracer(self, instrumenting_module_name: str,
                   instrumenting_library_version: str | None = None,
                   schema_url: str | None = None, attributes: Any = None) -> LeanTracer:
        key = (instrumenting_module_name, instrumenting_library_version)
        tracer = self._tracers.get(key)
        if tracer is None:
            tracer = self._tracers[key] = LeanTracer(
                self.queue, wire.scope(instrumenting_module_name, instrumenting_library_version))
        return tracer

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.queue.export()

    def shutdown(self) -> None:
        self.queue.close()
