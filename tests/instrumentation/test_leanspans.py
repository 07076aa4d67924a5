"""wsops' own TracerProvider and OTLP/HTTP export against a real receiver: the API's parent
and exception semantics, a bounded queue, batches sent by the thread, retries and refusals."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from tests.support.otlp import Receiver, attrs, otlp_receiver
from tests.support.ports import free_port, serving
from tests.support.waits import until
from wsops.instrumentation import otlpwire as wire
from wsops.instrumentation.leanspans import (
    FANNED_OUT,
    PUBLISHED,
    PUBLISHED_AND_FANNED_OUT,
    STATIC_CACHE,
    LeanTracerProvider,
    SpanQueue,
    encode_record,
)
from wsops.instrumentation.otlphttp import ExportError, OtlpConfig, OtlpHttp, parse_headers


def provider_for(url: str, **queue: float) -> LeanTracerProvider:
    config = OtlpConfig.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": url,
                                  "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"})
    assert config is not None
    return LeanTracerProvider(SpanQueue(OtlpHttp(config), wire.resource({"service.name": "t"}),
                                        "", **queue))  # type: ignore[arg-type]


@pytest.fixture
async def rec() -> AsyncIterator[Receiver]:
    async with otlp_receiver() as r:
        yield r


async def test_api_spans_nest_and_record_exceptions(rec: Receiver) -> None:
    provider = provider_for(rec.url)
    tracer = provider.get_tracer("app", "0.1")
    with pytest.raises(ValueError), tracer.start_as_current_span(
            "outer", kind=SpanKind.SERVER, attributes={"a": 1}):
        inner = tracer.start_span("inner")
        inner.set_attribute("b", "two")
        inner.end()
        raise ValueError("boom")
    await asyncio.to_thread(provider.shutdown)
    outer, inner_pb = rec.named("outer")[0], rec.named("inner")[0]
    assert inner_pb.parent_span_id == outer.span_id and inner_pb.trace_id == outer.trace_id
    assert outer.parent_span_id == b"" and attrs(outer.attributes) == {"a": 1}
    assert attrs(inner_pb.attributes) == {"b": "two"}
    [event] = outer.events
    assert event.name == "exception"
    assert attrs(event.attributes)["exception.message"] == "boom"
    assert outer.status.code == PbStatus.STATUS_CODE_ERROR
    assert rec.resources == [{"service.name": "t"}] and rec.encodings == ["gzip"]


async def test_a_parent_that_was_not_sampled_gives_no_span(rec: Receiver) -> None:
    provider = provider_for(rec.url)
    tracer = provider.get_tracer("app")
    parent = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(0))
    span = tracer.start("child", SpanKind.CONSUMER, parent)
    assert not span.is_recording()
    assert span.get_span_context().trace_id == 0xABC
    span.end()
    sampled = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    tracer.start("kept", SpanKind.CONSUMER, sampled).end()
    await asyncio.to_thread(provider.force_flush)
    [kept] = rec.spans
    assert kept.name == "kept" and kept.parent_span_id == (0xDEF).to_bytes(8, "big")
    assert kept.flags & 0x200  # its parent is remote


async def test_the_thread_sends_batches_without_being_asked(rec: Receiver) -> None:
    provider = provider_for(rec.url, batch=10, delay=0.05)
    tracer = provider.get_tracer("app")
    for i in range(25):
        tracer.start_span(f"s{i}").end()
    await until(lambda: len(rec.spans) == 25, 10.0, what="25 spans sent by the thread")
    assert provider.queue.exported == 25 and provider.queue.dropped == 0
    await asyncio.to_thread(provider.shutdown)


def test_a_full_queue_drops_and_counts_and_a_failed_export_is_counted() -> None:
    sent: list[bytes] = []
    fail = threading.Event()

    def send(body: bytes) -> None:
        if fail.is_set():
            raise ExportError("collector down")
        sent.append(body)

    queue = SpanQueue(send, wire.resource({}), "", max_queue=3, batch=2, delay=3600)
    tracer = LeanTracerProvider(queue).get_tracer("app")
    for i in range(5):
        tracer.start_span(f"s{i}").end()
    assert queue.dropped == 2
    assert queue.export() and queue.exported == 3 and len(sent) == 2  # batches of 2 and 1
    fail.set()
    tracer.start_span("lost").end()
    assert not queue.export() and queue.failed == 1
    queue.close()
    tracer.start_span("after close").end()
    assert queue.dropped == 3


def test_the_encoding_cache_is_bounded() -> None:
    tracer = LeanTracerProvider(SpanQueue(lambda body: None, b"", "")).get_tracer("app")
    for i in range(STATIC_CACHE + 10):
        tracer.start("op", SpanKind.INTERNAL, None, {"room": f"r{i}"})
    assert 0 < len(tracer._static) <= STATIC_CACHE
    # An unhashable value is encoded with its span instead of cached.
    span = tracer.start("op", SpanKind.INTERNAL, None, {"rooms": ["a", "b"]})
    assert span.is_recording()


def test_the_standard_variables_configure_the_export() -> None:
    assert OtlpConfig.from_env({}) is None
    base = OtlpConfig.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"})
    assert base is not None and base.endpoint == "http://c:4318/v1/traces"
    assert base.timeout == 10.0 and base.compression == ""
    own = OtlpConfig.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                               "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://t:1/x",
                               "OTEL_EXPORTER_OTLP_HEADERS": "api-key=a%20b, X-Team=ops",
                               "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2.5",
                               "OTEL_EXPORTER_OTLP_COMPRESSION": "none"})
    assert own == OtlpConfig("https://t:1/x", {"api-key": "a b", "x-team": "ops"}, "", 2.5)
    for env, message in [({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "http/protobuf"),
                         ({"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, "gzip"),
                         ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, "seconds"),
                         ({"OTEL_EXPORTER_OTLP_TIMEOUT": "0"}, "positive"),
                         ({"OTEL_EXPORTER_OTLP_ENDPOINT": "c:4318"}, "http"),
                         ({"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, "key=value")]:
        with pytest.raises(ValueError, match=message):
            OtlpConfig.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", **env})
    assert parse_headers("") == {}


async def test_retryable_answers_are_retried_and_others_raise() -> None:
    answers = [503, 429, 200, 400]
    seen: list[str] = []

    async def traces(request: web.Request) -> web.Response:
        seen.append(request.headers.get("api-key", ""))
        return web.Response(status=answers.pop(0), text="no")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    slept: list[float] = []
    async with serving(app) as port:
        config = OtlpConfig.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                                      "OTEL_EXPORTER_OTLP_HEADERS": "api-key=k1"})
        assert config is not None
        send = OtlpHttp(config, sleep=slept.append)
        await asyncio.to_thread(send, b"")  # 503, 429, then 200
        assert slept == [0.5, 1.0] and seen == ["k1"] * 3
        with pytest.raises(ExportError, match="HTTP 400"):
            await asyncio.to_thread(send, b"")
        assert slept == [0.5, 1.0]  # a refusal is not retried


def test_an_unreachable_collector_raises_within_the_timeout() -> None:
    config = OtlpConfig.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
                                  "OTEL_EXPORTER_OTLP_TIMEOUT": "2"})
    assert config is not None
    slept: list[float] = []
    with pytest.raises(ExportError, match=r"127\.0\.0\.1"):
        OtlpHttp(config, sleep=slept.append)(b"")
    assert slept == [0.5, 1.0]  # 0.5 + 1 + 2 would pass the 2 s deadline


def test_a_fork_starts_over_with_an_empty_queue() -> None:
    queue = SpanQueue(lambda body: None, b"", "", delay=3600)
    trace_api_span = LeanTracerProvider(queue).get_tracer("app").start_span("x")
    trace_api_span.end()
    assert queue._thread is not None
    queue._forked()
    assert queue._thread is None and not queue._spans
    assert isinstance(trace_api_span, trace.Span)


def test_closing_stops_the_thread_and_sends_what_was_left() -> None:
    sent: list[bytes] = []
    queue = SpanQueue(sent.append, b"", "", delay=3600)
    LeanTracerProvider(queue).get_tracer("app").start_span("last").end()
    thread = queue._thread
    assert thread is not None and thread.is_alive()
    queue.close()
    assert not thread.is_alive() and len(sent) == 1 and queue.exported == 1


async def test_spans_of_two_tracers_leave_under_their_own_scopes(rec: Receiver) -> None:
    provider = provider_for(rec.url)
    first, second = provider.get_tracer("one", "1"), provider.get_tracer("two")
    for tracer, name in [(first, "a"), (second, "b"), (first, "c")]:
        tracer.start_span(name).end()
    await asyncio.to_thread(provider.force_flush)
    assert sorted((s.name, scope) for s, scope in zip(rec.spans, rec.scopes, strict=True)) == [
        ("a", "one"), ("b", "two"), ("c", "one")]
    assert provider.get_tracer("one", "1") is first


async def test_message_path_spans_leave_as_records_with_their_context(rec: Receiver) -> None:
    """``Tracing``'s publish and fan-out handles on the lean provider: records encoded by the
    export thread, with the client's parent and tracestate, the fan-out linked to its publish
    (on this node, or named by a traceparent from another), and a failed publish's exception."""
    from wsops.instrumentation.tracing import Tracing, parse_traceparent

    provider = provider_for(rec.url)
    tracing = Tracing(provider, 1.0)
    client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    handle = tracing.open_publish("chat:1", parse_traceparent(client), "rojo=1")
    traceparent = handle[0]
    assert traceparent.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    fanout = tracing.open_fanout("chat:1", 3, handle)
    assert tracing.close_publish(handle, "ep", 7) == bytes.fromhex(client[3:35])
    fanout_trace = Tracing.close_fanout(fanout)
    remote = tracing.open_fanout_of("chat:1", 2, traceparent, "rojo=1")
    Tracing.close_fanout(remote)
    assert tracing.open_fanout_of("chat:1", 2, traceparent[:-2] + "00") is None  # unsampled
    assert tracing.open_fanout_of("chat:1", 2, "00-" + "0" * 32 + "-" + "1" * 16 + "-01") is None
    assert tracing.open_fanout_of("chat:1", 2, "nonsense") is None
    failing = tracing.open_publish("chat:2", None)
    tracing.fail_publish(failing, ValueError("broker down"))
    await asyncio.to_thread(provider.force_flush)
    await until(lambda: len(rec.spans) == 4, 5.0, what="four spans")
    publish, failed = sorted(rec.named("publish chat:*"), key=lambda s: len(s.events))
    assert traceparent == f"00-{publish.trace_id.hex()}-{publish.span_id.hex()}-01"
    assert publish.parent_span_id.hex() == "00f067aa0ba902b7" and publish.trace_state == "rojo=1"
    assert attrs(publish.attributes)["messaging.message.id"] == "ep:7"
    local, other = rec.named("deliver chat:*")
    assert local.trace_id == fanout_trace and attrs(local.attributes)["wsops.subscribers"] == 3
    assert attrs(other.attributes)["wsops.subscribers"] == 2
    for span in (local, other):
        [link] = span.links
        assert (link.trace_id, link.span_id) == (publish.trace_id, publish.span_id)
        assert link.trace_state == "rojo=1" and span.parent_span_id == b""
    assert failed.parent_span_id == b"" and failed.kind == publish.kind
    [event] = failed.events
    assert attrs(event.attributes)["exception.message"] == "broker down"
    await asyncio.to_thread(provider.shutdown)


async def test_a_publish_and_its_fanout_leave_together_or_apart_and_none_is_lost(
        rec: Receiver) -> None:
    """A publish closed while its fan-out on this node is open rides with it (one record);
    a fan-out closed first, or one of another publish, leaves the publish's span on its own."""
    from wsops.instrumentation.tracing import Tracing

    provider = provider_for(rec.url)
    tracing = Tracing(provider, 1.0)
    together = tracing.open_publish("a", None)
    fan = tracing.open_fanout("a", 1, together)
    tracing.close_publish(together, "e", 1, fan)
    assert len(provider.queue._spans) == 0  # waits for its fan-out
    Tracing.close_fanout(fan)
    assert len(provider.queue._spans) == 1  # one record, two spans
    early = tracing.open_publish("b", None)
    fan = tracing.open_fanout("b", 1, early)
    Tracing.close_fanout(fan)  # the fan-out ends first
    tracing.close_publish(early, "e", 2, fan)
    other = tracing.open_publish("c", None)
    tracing.close_publish(other, "e", 3, tracing.open_fanout("c", 1, early))  # not its own
    assert len(provider.queue._spans) == 4
    await asyncio.to_thread(provider.force_flush)
    await until(lambda: len(rec.spans) == 5, 5.0, what="five spans (c's fan-out never ended)")
    published = {attrs(s.attributes)["messaging.message.id"]: s for s in rec.spans
                 if s.name.startswith("publish")}
    assert sorted(published) == ["e:1", "e:2", "e:3"]
    fanouts = [s for s in rec.spans if s.name.startswith("deliver")]
    assert sorted((s.name, s.links[0].span_id) for s in fanouts) == [
        ("deliver a", published["e:1"].span_id), ("deliver b", published["e:2"].span_id)]
    await asyncio.to_thread(provider.shutdown)


def test_a_record_of_a_publish_and_its_fanout_encodes_as_its_two_records_would() -> None:
    """The packed path (a root publish, its fan-out linked to it without a tracestate) and the
    general one give the same bytes; a child publish or a link with a tracestate takes the
    general one."""
    ids, fan = bytes(range(24)), bytes(range(24, 48))
    pub_static = wire.static_part("publish r", SpanKind.PRODUCER.value, {})
    fan_static = wire.static_part("deliver r", SpanKind.CONSUMER.value, {"wsops.subscribers": 2})
    for parent, state, offset in ((b"", "", 7), (b"", "", 10**40), (bytes(8), "a=1", 7)):
        published = (PUBLISHED, ids, 10, 30, pub_static, parent, state, "ep", offset)
        record = (PUBLISHED_AND_FANNED_OUT, published, fan, 20, 40, fan_static, ids, state)
        assert encode_record(record) == encode_record(published) + encode_record(
            (FANNED_OUT, fan, 20, 40, fan_static, ids, state))
