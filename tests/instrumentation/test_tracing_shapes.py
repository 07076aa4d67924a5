"""``Tracing`` on both providers: the fan-out span links to its publish whether it starts from
the open publish span (memory broker) or from the envelope's traceparent (Redis), spans of one
room share one shape, and the shape cache is bounded."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.otlp import attrs
from wsops.instrumentation import otlpwire as wire
from wsops.instrumentation.leanspans import LeanTracerProvider, SpanQueue
from wsops.instrumentation.tracing import SHAPES, Tracing, trace_id_of, traceparent_of


def lean() -> tuple[Tracing, list[bytes]]:
    sent: list[bytes] = []
    return Tracing(LeanTracerProvider(SpanQueue(sent.append, wire.resource({}), "")), 1.0), sent


def exported(tracing: Tracing, sent: list[bytes]) -> dict[str, Any]:
    assert tracing.provider is not None
    tracing.provider.force_flush()  # type: ignore[attr-defined]
    spans = {}
    for body in sent:
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                spans.update({s.name: s for s in ss.spans})
    return spans


def test_a_fan_out_links_to_its_publish_from_the_span_or_from_the_traceparent() -> None:
    for via_traceparent in (False, True):
        tracing, sent = lean()
        publish = tracing.start_publish("chat:42", None)
        tp = traceparent_of(publish)
        assert tp == f"00-{trace_id_of(publish):032x}-{publish.get_span_context().span_id:016x}-01"
        deliver = (tracing.open_fanout_of("chat:42", 3, tp) if via_traceparent
                   else tracing.deliver_after("chat:42", publish, 3))
        assert deliver is not None
        Tracing.close_fanout(deliver)
        publish.set_attribute("messaging.message.id", "e:7")
        publish.end()
        spans = exported(tracing, sent)
        pub, dlv = spans["publish chat:*"], spans["deliver chat:*"]
        [link] = dlv.links
        assert (link.trace_id, link.span_id) == (pub.trace_id, pub.span_id)
        assert dlv.trace_id != pub.trace_id  # a new trace, linked
        assert attrs(dlv.attributes)["wsops.subscribers"] == 3
        assert attrs(pub.attributes)["messaging.message.id"] == "e:7"
        assert attrs(pub.attributes)["messaging.destination.name"] == "chat:42"


def test_a_traceparent_that_names_no_sampled_publish_gives_no_fan_out_span() -> None:
    tracing, _ = lean()
    good = f"00-{'a' * 32}-{'b' * 16}-01"
    assert tracing.open_fanout_of("r", 1, good) is not None
    for bad in ("garbage", f"00-{'a' * 32}-{'b' * 16}-00", f"00-{'0' * 32}-{'b' * 16}-01",
                f"00-{'a' * 32}-{'0' * 16}-01", good + "x"):
        assert tracing.open_fanout_of("r", 1, bad) is None, bad
    assert Tracing(None).open_fanout_of("r", 1, good) is None
    sdk = Tracing(TracerProvider(), 1.0)  # the SDK's provider parses them its own way
    assert sdk.open_fanout_of("r", 1, good) is not None
    for bad in ("garbage", f"00-{'a' * 32}-{'b' * 16}-00", f"00-{'0' * 32}-{'b' * 16}-01",
                f"00-{'a' * 32}-{'0' * 16}-01", good + "x"):
        assert sdk.open_fanout_of("r", 1, bad) is None, bad


def test_the_sdk_provider_gets_the_same_spans_and_links() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing = Tracing(provider, 1.0)
    publish = tracing.start_publish("dm/a/b", None)
    for deliver in (tracing.deliver_after("dm/a/b", publish, 2),
                    tracing.open_fanout_of("dm/a/b", 2, traceparent_of(publish))):
        assert deliver is not None
        Tracing.close_fanout(deliver)
    publish.end()
    spans = memory.get_finished_spans()
    assert [s.name for s in spans] == ["deliver dm/*/*", "deliver dm/*/*", "publish dm/*/*"]
    for d in spans[:2]:
        assert d.links[0].context.span_id == publish.get_span_context().span_id
        assert d.attributes is not None and d.attributes["wsops.subscribers"] == 2
    assert trace_id_of(publish) == publish.get_span_context().trace_id


def test_shapes_are_shared_per_room_and_bounded() -> None:
    tracing, _ = lean()
    assert tracing._shape("publish", "r") is tracing._shape("publish", "r")
    for i in range(SHAPES + 5):
        tracing._shape("publish", f"room{i}")
    assert 0 < len(tracing._shapes) <= SHAPES
