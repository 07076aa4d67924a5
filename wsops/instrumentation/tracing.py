"""OpenTelemetry traces for WebSockets, with head sampling decided before any span exists.

OpenTelemetry has no WebSocket conventions; the messaging ones fit (attribute names from the
``opentelemetry-semantic-conventions`` package): ``publish {room template}`` (PRODUCER, operation
type ``send``) when a client publishes, ``deliver {room template}`` (CONSUMER, ``process``) when
a node fans a message out, linked to the publish span; the upgrade is an HTTP SERVER span
(``GET {route}``); W3C ``traceparent`` travels in the message envelope. The sampling
decision (parent's sampled flag, else a ratio) is a flag check and one ``random()``: unsampled
messages cost no span object, which matters at 1% sampling on a hot path.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_DESTINATION_NAME,
    MESSAGING_DESTINATION_TEMPLATE,
    MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_NAME,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_SYSTEM,
    MessagingOperationTypeValues,
)
from opentelemetry.semconv.attributes.http_attributes import HTTP_REQUEST_METHOD, HTTP_ROUTE
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_NAME
from opentelemetry.semconv.attributes.url_attributes import URL_PATH, URL_SCHEME
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, TraceFlags, TraceState

from wsops.instrumentation.leanspans import (
    FANNED_OUT,
    PUBLISHED,
    PUBLISHED_AND_FANNED_OUT,
    LeanSpan,
    LeanTracer,
    LeanTracerProvider,
)
from wsops.tracecontext import valid_tracestate
from wsops.version import __version__

SYSTEM = "websocket"
"""``messaging.system`` of every wsops span (there is no registered value for WebSockets)."""
OP_PUBLISH, OP_DELIVER, OP_RECEIVE = "publish", "deliver", "receive"
"""``messaging.operation.name``s: a client's publish, a node's fan-out of it, a generic app's
received message."""
SEND, PROCESS = MessagingOperationTypeValues.SEND.value, MessagingOperationTypeValues.PROCESS.value
_SEGMENT = re.compile(r"([:/])[^:/]+")
TRACEPARENT_RE = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
DEFAULT_RATIO = 0.01
_time_ns = time.time_ns
getrandbits = random.getrandbits
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def parse_traceparent(value: str | None) -> SpanContext | None:
    """A remote SpanContext from a W3C traceparent, or None when absent or malformed."""
    if not value:
        return None
    m = TRACEPARENT_RE.fullmatch(value)
    if m is None:
        return None
    trace_id, span_id = int(m.group(1), 16), int(m.group(2), 16)
    if not trace_id or not span_id:
        return None
    flags = TraceFlags(int(m.group(3), 16))
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)


def room_template(room: str) -> str:
    """The low-cardinality form of a room name for span names and
    ``messaging.destination.template``: every segment after the first (``:`` or ``/``
    separated) is ``*`` (``chat:42`` -> ``chat:*``, ``dm/ann/bob`` -> ``dm/*/*``). Rooms named
    ``kind:id`` keep span names few; a name without a separator is its own template."""
    return _SEGMENT.sub(r"\1*", room)


def with_state(ctx: SpanContext | None, tracestate: str | None) -> SpanContext | None:
    """``ctx`` carrying the W3C ``tracestate`` (already checked: ``protocol.valid_tracestate``)."""
    if ctx is None or not tracestate:
        return ctx
    return SpanContext(ctx.trace_id, ctx.span_id, ctx.is_remote, ctx.trace_flags,
                       TraceState.from_header([tracestate]))


def format_traceparent(ctx: SpanContext) -> str:
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


class Tracing:
    """Creates wsops spans on ``provider``, sampling at ``ratio`` unless a parent decided.

    What a span of an operation on a room looks like (name, kind, attributes and, on the lean
    provider, their encoding) is worked out once per (operation, room) and kept, up to
    ``SHAPES`` of them: a sampled publish then costs ids, clock reads and one encoding."""

    def __init__(self, provider: trace.TracerProvider | None, ratio: float = DEFAULT_RATIO,
                 rand: Any = None) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError("the trace sample ratio must be within [0, 1]")
        self.provider = provider
        self.enabled = provider is not None
        self.ratio = ratio
        self.random = rand or random.random
        self.tracer = provider.get_tracer("wsops", __version__) if provider is not None else None
        # The lean provider's spans start without a Context (``LeanTracer.start``).
        self._lean = self.tracer if isinstance(self.tracer, LeanTracer) else None
        self._shapes: dict[tuple[str, str, int], Shape] = {}

    def decide(self, parent: SpanContext | None) -> bool:
        """Head sampling: follow a parent's flag, else sample ``ratio`` of root traces."""
        if not self.enabled:
            return False
        if parent is not None:
            return parent.trace_flags.sampled
        return self.random() < self.ratio

    def _shape(self, op: str, where: str, subscribers: int = -1) -> Shape:
        """The name, kind, attributes (and lean encoding) of ``op`` spans on ``where``."""
        key = (op, where, subscribers)
        shape = self._shapes.get(key)
        if shape is None:
            template = room_template(where) if op != OP_RECEIVE else where
            kind = SpanKind.PRODUCER if op == OP_PUBLISH else SpanKind.CONSUMER
            attrs: dict[str, Any] = {
                MESSAGING_SYSTEM: SYSTEM, MESSAGING_OPERATION_TYPE: SEND if op == OP_PUBLISH
                else PROCESS, MESSAGING_OPERATION_NAME: op, MESSAGING_DESTINATION_NAME: where,
                MESSAGING_DESTINATION_TEMPLATE: template}
            if subscribers >= 0:
                attrs["wsops.subscribers"] = subscribers
            name = f"{op} {template}"
            static = self._lean.static_part(name, kind, attrs) if self._lean is not None \
                else None
            if len(self._shapes) >= SHAPES:
                self._shapes.clear()
            shape = self._shapes[key] = Shape(name, kind, attrs, static)
        return shape

    def _start(self, name: str, kind: SpanKind, parent: SpanContext | None,
               attributes: dict[str, Any], links: list[Link] | None = None,
               static: bytes | None = None) -> Span:
        if self._lean is not None:
            return self._lean.start(name, kind, parent, attributes, links, static=static)
        assert self.tracer is not None
        ctx: Context | None = None
        if parent is not None:
            ctx = trace.set_span_in_context(trace.NonRecordingSpan(parent))
        return self.tracer.start_span(name, context=ctx, kind=kind, attributes=attributes,
                                      links=links)

    def handshake(self, route: str, path: str, headers: Mapping[str, str],
                  method: str = "GET", scheme: str = "http") -> Span | None:
        """A short SERVER span for the upgrade request (HTTP server conventions: named
        ``{method} {route}``), or None when not sampled."""
        parent = parse_traceparent(headers.get("traceparent"))
        if not self.decide(parent):
            return None
        state = headers.get("tracestate")
        if state is not None and valid_tracestate(state):  # else ignored, as W3C says
            parent = with_state(parent, state)
        return self._start(f"{method} {route}", SpanKind.SERVER, parent, {
            HTTP_REQUEST_METHOD: method, HTTP_ROUTE: route, URL_PATH: path, URL_SCHEME: scheme,
            NETWORK_PROTOCOL_NAME: "http", "websocket.upgrade": True,
        })

    def receive(self, route: str, parent: SpanContext | None) -> Span | None:
        """A CONSUMER span for one received message of a generic app, when sampled: the app
        processes what a client sent on ``route``."""
        if not self.decide(parent):
            return None
        shape = self._shape(OP_RECEIVE, route)
        return self._start(shape.name, shape.kind, parent, shape.attrs, static=shape.static)

    def publish(self, room: str, parent: SpanContext | None) -> Span | None:
        """A PRODUCER span for a client's publish to ``room``, when sampled."""
        if not self.decide(parent):
            return None
        return self.start_publish(room, parent)

    def start_publish(self, room: str, parent: SpanContext | None) -> Span:
        """The PRODUCER span of a publish already decided to be sampled."""
        shape = self._shape(OP_PUBLISH, room)
        return self._start(shape.name, shape.kind, parent, shape.attrs, static=shape.static)

    def deliver(self, room: str, publish: SpanContext, subscribers: int) -> Span | None:
        """A CONSUMER span for a node's fan-out of a sampled message to its ``subscribers``
        on this node, linked to its publish (a span of the publish's trace when it was
        sampled; none otherwise: the publish decided)."""
        if not self.enabled or not publish.trace_flags.sampled:
            return None
        return self._linked(room, subscribers, publish.trace_id, publish.span_id,
                            int(publish.trace_flags))

    def deliver_after(self, room: str, publish: Span, subscribers: int) -> Span | None:
        """``deliver`` for the sampled ``publish`` span, still open."""
        if type(publish) is LeanSpan:  # its ids without a SpanContext
            return self._linked(room, subscribers, publish.trace_id, publish.span_id, 0x01)
        return self.deliver(room, publish.get_span_context(), subscribers)

    def _linked(self, room: str, subscribers: int, trace_id: int, span_id: int,
                flags: int) -> Span:
        """The fan-out span, a new root linked to span ``span_id`` of trace ``trace_id``."""
        shape = self._shape(OP_DELIVER, room, subscribers)
        if self._lean is not None:
            return self._lean.start_linked(shape.name, shape.kind, shape.static, trace_id,
                                           span_id, flags)
        publish = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
        return self._start(shape.name, shape.kind, None, shape.attrs, links=[Link(publish)])

    # -- the bundled node's message path ----------------------------------------------------
    #
    # A publish's span and its fan-out's, as handles rather than Span objects: on the lean
    # provider a handle is a tuple and the span leaves as a record that the export thread
    # encodes (``leanspans.PUBLISHED``, ``FANNED_OUT``); a sampled publish then costs a random
    # draw, two clock reads and two tuples here. On another provider a handle holds a Span.

    def open_publish(self, room: str, parent: SpanContext | None,
                     tracestate: str | None = None) -> Any:
        """The span of a publish to ``room`` already decided to be sampled (a root, or the
        child of a sampled ``parent`` carrying ``tracestate``). ``handle[0]`` is the
        traceparent for the message's envelope; end it with ``close_publish``."""
        lean = self._lean
        if lean is None:
            span = self.start_publish(room, with_state(parent, tracestate))
            return (traceparent_of(span), span)
        ids = getrandbits(192).to_bytes(24, "big")  # trace id, span id
        parent_id = b""
        if parent is not None:
            ids = parent.trace_id.to_bytes(16, "big") + ids[16:]
            parent_id = parent.span_id.to_bytes(8, "big")
        shape = self._shapes.get((OP_PUBLISH, room, -1)) or self._shape(OP_PUBLISH, room)
        return (f"00-{ids.hex('-', -16)}-01", ids, _time_ns(), shape.static, parent_id,
                tracestate or "", lean.queue, lean.scope)

    def close_publish(self, handle: Any, epoch: str, offset: int, fanout: Any = None
                      ) -> int | bytes:
        """End a publish's span: its message was stored as ``offset`` of ``epoch``;
        ``fanout``: its fan-out on this node, still open (``open_fanout``), which then takes
        the publish's span along when it ends (one record for the two). Returns its trace id
        (for exemplars)."""
        if len(handle) == 2:
            span: Span = handle[1]
            span.set_attribute(MESSAGING_MESSAGE_ID, f"{epoch}:{offset}")
            span.end()
            return trace_id_of(span)
        _, ids, start, static, parent_id, state, queue, scope = handle
        record = (PUBLISHED, ids, start, _time_ns(), static, parent_id, state, epoch, offset)
        if type(fanout) is list and fanout[7] is None and fanout[3] is ids:  # its own, open
            fanout[7] = record
        else:
            queue.put(scope, record)
        trace_id: bytes = ids[:16]
        return trace_id

    def fail_publish(self, handle: Any, error: BaseException) -> None:
        """End a publish's span with the ``error`` it failed with."""
        if len(handle) == 2:
            span: Span = handle[1]
        else:  # the lean provider's Span, to carry the exception
            _, ids, start, static, parent_id, state, _queue, _scope = handle
            assert self._lean is not None
            trace_id = int.from_bytes(ids[:16], "big")
            parent = None if not parent_id else SpanContext(
                trace_id, int.from_bytes(parent_id, "big"), True, _SAMPLED,
                TraceState.from_header([state]) if state else None)
            span = LeanSpan(self._lean, "", SpanKind.PRODUCER, static, trace_id,
                            int.from_bytes(ids[16:], "big"), parent, start)
        span.record_exception(error)
        span.end()

    def open_fanout(self, room: str, subscribers: int, publishing: Any) -> Any:
        """The span of a fan-out on this node of the publish whose ``open_publish`` handle is
        ``publishing`` (still open). End it with ``close_fanout``."""
        if len(publishing) == 2:
            return self.deliver_after(room, publishing[1], subscribers)
        return self._fanout(room, subscribers, publishing[1], publishing[5])

    def open_fanout_of(self, room: str, subscribers: int, traceparent: str,
                       tracestate: str | None = None) -> Any:
        """``open_fanout`` for the publish ``traceparent`` names (a message from another node,
        or a publish this node did not trace), or None when it was not sampled or malformed."""
        if self._lean is None:
            parent = parse_traceparent(traceparent)
            if parent is None or not parent.trace_flags.sampled or not self.enabled:
                return None
            return self.deliver(room, with_state(parent, tracestate) or parent, subscribers)
        m = TRACEPARENT_RE.fullmatch(traceparent)
        if m is None or not int(m.group(3), 16) & 1:
            return None
        link = bytes.fromhex(m.group(1) + m.group(2))
        if not any(link[:16]) or not any(link[16:]):
            return None
        return self._fanout(room, subscribers, link, tracestate or "")

    def _fanout(self, room: str, subscribers: int, link: bytes, link_state: str) -> list[Any]:
        """A lean fan-out handle: its ids, start, encoding, link, the queue, and a place for
        its publish's record (``close_publish``)."""
        shape = self._shapes.get((OP_DELIVER, room, subscribers)) or \
            self._shape(OP_DELIVER, room, subscribers)
        lean = self._lean
        assert lean is not None
        return [getrandbits(192).to_bytes(24, "big"), _time_ns(), shape.static, link,
                link_state, lean.queue, lean.scope, None]

    @staticmethod
    def close_fanout(handle: Any) -> int | bytes:
        """End a fan-out's span (its messages handed to the sockets); returns its trace id."""
        if type(handle) is list:
            ids, start, static, link, link_state, queue, scope, published = handle
            if not published:  # a remote publish's, or its publish is still open
                handle[7] = False  # the publish's record goes on its own
                queue.put(scope, (FANNED_OUT, ids, start, _time_ns(), static, link,
                                  link_state))
            else:
                queue.put(scope, (PUBLISHED_AND_FANNED_OUT, published, ids, start, _time_ns(),
                                  static, link, link_state))
            trace_id: bytes = ids[:16]
            return trace_id
        handle.end()
        return trace_id_of(handle)

    def shutdown(self) -> None:
        if isinstance(self.provider, (TracerProvider, LeanTracerProvider)):
            self.provider.force_flush(5000)


SHAPES = 4096
"""Span shapes kept per ``Tracing`` (rooms are client input: the cache is bounded)."""


class Shape(NamedTuple):
    name: str
    kind: SpanKind
    attrs: dict[str, Any]
    static: bytes | None  # the lean provider's encoding of the three


def traceparent_of(span: Span) -> str:
    """The W3C traceparent naming ``span`` (for the message envelope)."""
    if type(span) is LeanSpan:
        return span.traceparent()
    return format_traceparent(span.get_span_context())


def trace_id_of(span: Span) -> int:
    """``span``'s trace id (for exemplars)."""
    if type(span) is LeanSpan:
        return span.trace_id
    return span.get_span_context().trace_id
