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

import os
import random
import re
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_DESTINATION_NAME,
    MESSAGING_DESTINATION_TEMPLATE,
    MESSAGING_OPERATION_NAME,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_SYSTEM,
    MessagingOperationTypeValues,
)
from opentelemetry.semconv.attributes.http_attributes import HTTP_REQUEST_METHOD, HTTP_ROUTE
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_NAME
from opentelemetry.semconv.attributes.url_attributes import URL_PATH, URL_SCHEME
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, TraceFlags

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


def format_traceparent(ctx: SpanContext) -> str:
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


SAMPLERS = {"always_on": 1.0, "parentbased_always_on": 1.0, "always_off": 0.0,
            "parentbased_always_off": 0.0, "traceidratio": None, "parentbased_traceidratio": None}
"""``OTEL_TRACES_SAMPLER`` values wsops reads (a ratio, or None: the ratio is in
``OTEL_TRACES_SAMPLER_ARG``). wsops always follows a parent's sampled flag."""


def env_ratio(default: float, env: Mapping[str, str] = os.environ) -> float:
    """The share of root traces to sample from the standard variables: ``OTEL_TRACES_SAMPLER``
    (``always_on``/``always_off``/``[parentbased_]traceidratio``) and
    ``OTEL_TRACES_SAMPLER_ARG`` (a ratio in [0, 1]); ``default`` when neither says."""
    sampler = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler:
        if sampler not in SAMPLERS:
            raise ValueError(f"OTEL_TRACES_SAMPLER {sampler!r} is not one wsops reads: "
                             f"{', '.join(SAMPLERS)}")
        fixed = SAMPLERS[sampler]
        if fixed is not None:
            return fixed
    raw = env.get("OTEL_TRACES_SAMPLER_ARG")
    if raw is None:
        return 1.0 if sampler else default  # the spec's default for traceidratio
    try:
        ratio = float(raw)
    except ValueError:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG must be a number, not {raw!r}") from None
    if not 0.0 <= ratio <= 1.0:
        raise ValueError("OTEL_TRACES_SAMPLER_ARG must be within [0, 1]")
    return ratio


def provider_from_env(env: Mapping[str, str] = os.environ) -> TracerProvider | None:
    """A TracerProvider exporting over OTLP/HTTP when an OTLP endpoint is configured, else None.

    Honours ``OTEL_SDK_DISABLED``, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES`` and the
    ``OTEL_EXPORTER_OTLP_[TRACES_]*`` variables (read by the exporter itself).
    """
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    if not any(env.get(k) for k in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                                     "OTEL_EXPORTER_OTLP_ENDPOINT")):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    created = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", "wsops"),
                               "service.version": __version__})
    # wsops decides before any span exists (``Tracing.decide``); the SDK must keep every span
    # it is given, or a ratio in OTEL_TRACES_SAMPLER would apply a second time.
    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON),
                              resource=HashedResource(created.attributes, created.schema_url))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


KEEPS_ALL = {ALWAYS_ON.get_description(),
             ParentBased(ALWAYS_ON).get_description()}  # type: ignore[no-untyped-call]


def resamples(provider: Any) -> bool:
    """Whether ``provider``'s own sampler may drop spans wsops already decided to sample
    (then a ratio applies twice: 0.5 of 0.5 is 0.25)."""
    sampler: Any = getattr(provider, "sampler", None)
    return sampler is not None and sampler.get_description() not in KEEPS_ALL


class HashedResource(Resource):
    """A Resource whose hash is computed once: the OTLP encoder groups spans by resource and
    ``Resource.__hash__`` runs a ``json.dumps`` per span (5% of a traced node's CPU)."""

    def __init__(self, attributes: Any, schema_url: str | None = None) -> None:
        super().__init__(attributes, schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other)


class Tracing:
    """Creates wsops spans on ``provider``, sampling at ``ratio`` unless a parent decided."""

    def __init__(self, provider: trace.TracerProvider | None, ratio: float = DEFAULT_RATIO,
                 rand: Any = None) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError("the trace sample ratio must be within [0, 1]")
        self.provider = provider
        self.enabled = provider is not None
        self.ratio = ratio
        self._random = rand or random.random
        self.tracer = provider.get_tracer("wsops", __version__) if provider is not None else None

    def decide(self, parent: SpanContext | None) -> bool:
        """Head sampling: follow a parent's flag, else sample ``ratio`` of root traces."""
        if not self.enabled:
            return False
        if parent is not None:
            return parent.trace_flags.sampled
        return self._random() < self.ratio

    def sample_root(self) -> bool:
        """``decide(None)``: the ratio's decision for a message that carries no traceparent.

        One ``random()`` and a compare, for callers that check this before parsing anything;
        they then start the span with ``start_publish`` (not ``publish``, which would decide
        again)."""
        return self.enabled and self._random() < self.ratio

    def _start(self, name: str, kind: SpanKind, parent: SpanContext | None,
               attributes: dict[str, Any], links: list[Link] | None = None) -> Span:
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
        return self._start(f"{method} {route}", SpanKind.SERVER, parent, {
            HTTP_REQUEST_METHOD: method, HTTP_ROUTE: route, URL_PATH: path, URL_SCHEME: scheme,
            NETWORK_PROTOCOL_NAME: "http", "websocket.upgrade": True,
        })

    def receive(self, route: str, parent: SpanContext | None) -> Span | None:
        """A CONSUMER span for one received message of a generic app, when sampled: the app
        processes what a client sent on ``route``."""
        if not self.decide(parent):
            return None
        return self._start(f"{OP_RECEIVE} {route}", SpanKind.CONSUMER, parent, {
            MESSAGING_SYSTEM: SYSTEM, MESSAGING_OPERATION_TYPE: PROCESS,
            MESSAGING_OPERATION_NAME: OP_RECEIVE, MESSAGING_DESTINATION_NAME: route,
            MESSAGING_DESTINATION_TEMPLATE: route,
        })

    def publish(self, room: str, parent: SpanContext | None) -> Span | None:
        """A PRODUCER span for a client's publish to ``room``, when sampled."""
        if not self.decide(parent):
            return None
        return self.start_publish(room, parent)

    def start_publish(self, room: str, parent: SpanContext | None) -> Span:
        """The PRODUCER span of a publish already decided to be sampled."""
        template = room_template(room)
        return self._start(f"{OP_PUBLISH} {template}", SpanKind.PRODUCER, parent, {
            MESSAGING_SYSTEM: SYSTEM, MESSAGING_OPERATION_TYPE: SEND,
            MESSAGING_OPERATION_NAME: OP_PUBLISH, MESSAGING_DESTINATION_NAME: room,
            MESSAGING_DESTINATION_TEMPLATE: template,
        })

    def deliver(self, room: str, publish: SpanContext, subscribers: int) -> Span | None:
        """A CONSUMER span for a node's fan-out of a sampled message to its ``subscribers``
        on this node, linked to its publish (a span of the publish's trace when it was
        sampled; none otherwise: the publish decided)."""
        if not self.enabled or not publish.trace_flags.sampled:
            return None
        template = room_template(room)
        return self._start(f"{OP_DELIVER} {template}", SpanKind.CONSUMER, None, {
            MESSAGING_SYSTEM: SYSTEM, MESSAGING_OPERATION_TYPE: PROCESS,
            MESSAGING_OPERATION_NAME: OP_DELIVER, MESSAGING_DESTINATION_NAME: room,
            MESSAGING_DESTINATION_TEMPLATE: template, "wsops.subscribers": subscribers,
        }, links=[Link(publish)])

    def shutdown(self) -> None:
        if isinstance(self.provider, TracerProvider):
            self.provider.force_flush(5000)
