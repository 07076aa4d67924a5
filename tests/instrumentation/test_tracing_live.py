"""Spans exported over OTLP/HTTP to a real receiver: names, kinds, attributes, links, and a
client's traceparent continued through the server."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_BATCH_MESSAGE_COUNT,
    MESSAGING_DESTINATION_NAME,
    MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_NAME,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_SYSTEM,
    MessagingOperationTypeValues,
)
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
)
from opentelemetry.semconv.attributes.url_attributes import URL_PATH

from tests.conftest import Connect, ServerFactory
from tests.support.otlp import attrs, otlp_receiver
from tests.support.scrape import scrape
from tests.support.waits import until
from wsops.instrumentation import INSTRUMENT_KEY

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


async def _flush(server: object) -> None:
    provider = server.app[INSTRUMENT_KEY].tracing.provider  # type: ignore[attr-defined]
    await asyncio.to_thread(provider.force_flush, 10_000)


async def test_spans_follow_the_messaging_conventions_and_continue_client_traces(
    server_factory: ServerFactory, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with otlp_receiver() as rec:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rec.url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "wsops-test")
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "1.0")
        server = await server_factory()
        sub = await connect(server.url)
        await sub.call("subscribe", "room1")
        pub = await connect(server.url)
        traceparent = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
        await pub.call("publish", "room1", data="traced", traceparent=traceparent,
                       tracestate="rojo=00f067aa0ba902b7, congo=t61rcWkgMzE")
        [msg] = await sub.messages(1)
        # An unsampled client trace stays unsampled (parent-based), even at ratio 1.0.
        await pub.call("publish", "room1", data="quiet", traceparent=f"00-{'1' * 32}-{'2' * 16}-00")
        await sub.messages(1)

        async def exported() -> bool:
            await _flush(server)
            return bool(len(rec.named("GET /ws")) == 2
                        and rec.named("publish room1") and rec.named("deliver room1"))

        await until(exported, 10.0, what="the handshake, publish and process spans exported")

        assert {r.get("service.name") for r in rec.resources} == {"wsops-test"}
        handshakes = rec.named("GET /ws")
        assert len(handshakes) == 2
        assert all(h.kind == PbSpan.SPAN_KIND_SERVER for h in handshakes)
        h = attrs(handshakes[0].attributes)
        assert (h[HTTP_ROUTE], h[HTTP_REQUEST_METHOD], h[URL_PATH]) == ("/ws", "GET", "/ws")
        assert h[HTTP_RESPONSE_STATUS_CODE] == 101

        [publish] = rec.named("publish room1")
        assert publish.kind == PbSpan.SPAN_KIND_PRODUCER
        assert publish.trace_id.hex() == CLIENT_TRACE
        assert publish.parent_span_id.hex() == CLIENT_SPAN
        # The client's tracestate, and a remote parent (sampled, remoteness known, remote).
        assert publish.trace_state == "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"
        assert publish.flags == 0x01 | 0x100 | 0x200
        a = attrs(publish.attributes)
        assert a[MESSAGING_DESTINATION_NAME] == "room1"
        assert a[MESSAGING_OPERATION_TYPE] == MessagingOperationTypeValues.SEND.value
        assert a[MESSAGING_OPERATION_NAME] == "publish" and a[MESSAGING_SYSTEM] == "websocket"
        assert a[MESSAGING_MESSAGE_ID].endswith(":1")

        [process] = rec.named("deliver room1")
        assert process.kind == PbSpan.SPAN_KIND_CONSUMER
        [link] = process.links
        assert (link.trace_id.hex(), link.span_id.hex()) == (CLIENT_TRACE, publish.span_id.hex())
        assert link.trace_state == publish.trace_state and link.flags == 0x01
        assert process.flags == 0x01 and process.parent_span_id == b""  # a root, linked
        assert process.trace_id != publish.trace_id
        assert process.start_time_unix_nano >= publish.start_time_unix_nano
        assert process.end_time_unix_nano >= publish.end_time_unix_nano
        d = attrs(process.attributes)
        assert d[MESSAGING_OPERATION_TYPE] == MessagingOperationTypeValues.PROCESS.value
        assert d[MESSAGING_OPERATION_NAME] == "deliver" and d[MESSAGING_SYSTEM] == "websocket"
        assert d["wsops.subscribers"] == 1 and MESSAGING_BATCH_MESSAGE_COUNT not in d

        # The envelope carries the publish span's context to subscribers.
        assert msg["traceparent"] == f"00-{CLIENT_TRACE}-{publish.span_id.hex()}-01"
        assert msg["tracestate"] == "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"
        assert not [s for s in rec.spans if s.trace_id.hex() == "1" * 32]

        # Exemplars: the sampled publish's trace id on the latency histograms (OpenMetrics).
        om = await scrape(server.admin_url, openmetrics=True)
        assert f'trace_id="{CLIENT_TRACE}"' in om.text


async def test_a_malformed_client_traceparent_gives_way_to_a_root_without_its_tracestate(
    server_factory: ServerFactory, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with otlp_receiver() as rec:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rec.url)
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "1.0")
        server = await server_factory()
        sub = await connect(server.url)
        await sub.call("subscribe", "room1")
        pub = await connect(server.url)
        await pub.call("publish", "room1", data="x", traceparent="00-not-a-trace-01",
                       tracestate="rojo=00f067aa0ba902b7")
        [msg] = await sub.messages(1)

        async def exported() -> bool:
            await _flush(server)
            return bool(rec.named("publish room1"))

        await until(exported, 10.0, what="the publish span exported")
        [publish] = rec.named("publish room1")
        # W3C: a tracestate beside a traceparent that does not parse means nothing.
        assert publish.parent_span_id == b"" and publish.trace_state == ""
        assert msg["traceparent"] == f"00-{publish.trace_id.hex()}-{publish.span_id.hex()}-01"
        assert "tracestate" not in msg


async def test_no_endpoint_means_no_spans_and_ratio_zero_samples_nothing(
    server_factory: ServerFactory, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    server = await server_factory()
    assert not server.app[INSTRUMENT_KEY].tracing.enabled
    async with otlp_receiver() as rec:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rec.url)
        server = await server_factory(trace_sample_ratio=0.0)
        c = await connect(server.url)
        await c.call("publish", "r", data=1)
        await _flush(server)
        assert rec.spans == []
