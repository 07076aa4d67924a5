"""``examples/instrument_existing_app.py``: an app that knows nothing of wsops, instrumented."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

import wsops
from tests.support.examples import INSTRUMENT_EXAMPLE, load_example
from tests.support.ports import free_port, serving
from tests.support.scrape import scrape
from tests.support.waits import until, until_sync

EXAMPLE = INSTRUMENT_EXAMPLE


async def test_example_app_gets_metrics_per_route_and_close_codes() -> None:
    example = load_example()
    app: web.Application = example.make_app()
    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    inst = wsops.instrument(app, registry=registry, tracer_provider=provider, admin_port=0,
                            sample_ratio=0.0)
    async with serving(app) as port:
        base = f"ws://127.0.0.1:{port}"
        assert inst.admin is not None
        async with aiohttp.ClientSession() as s:
            echo = await s.ws_connect(base + "/echo")
            for word in ("a", "bb", "ccc"):
                await echo.send_str(word)
                assert await echo.receive_str() == word.upper()
            traced = json.dumps({"text": "x", "traceparent": f"00-{'a' * 32}-{'b' * 16}-01"})
            await echo.send_str(traced)
            await echo.receive_str()
            await echo.send_str("bye")
            assert (await echo.receive()).type is aiohttp.WSMsgType.CLOSE
            assert echo.close_code == 4001
            chatters = [await s.ws_connect(base + "/chat") for _ in range(3)]
            await chatters[0].send_str("hello all")
            for c in chatters:
                assert await c.receive_str() == "hello all"
            await chatters[1].close()
            chatters[2]._response.connection.transport.abort()  # type: ignore[union-attr]
            m = await scrape(inst.admin.url)
            assert m.get("wsops_connections_open", route="/chat") >= 1
            await chatters[0].close()
            await until(lambda: inst.live.total() == 0, what="every connection closed on the app")
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await s.ws_connect(base + "/nowhere")
        m = await scrape(inst.admin.url)
        assert m.get("wsops_messages_total", route="/echo", direction="in", type="text") == 5
        assert m.get("wsops_messages_total", route="/echo", direction="out", type="text") == 4
        assert m.get("wsops_messages_total", route="/chat", direction="in", type="text") == 1
        assert m.get("wsops_messages_total", route="/chat", direction="out", type="text") == 3
        assert m.get("wsops_connections_closed_total", route="/echo", code="4001") == 1
        assert m.get("wsops_connections_closed_total", route="/chat", code="1000") == 2
        assert m.get("wsops_connections_closed_total", route="/chat", code="1006") == 1
        assert m.get("wsops_connections_open", route="/chat") == 0
        assert m.get("wsops_connections_open", route="/echo") == 0
        assert m.get("wsops_handshake_failures_total", route="unmatched", reason="http_404") == 1
        assert m.get("wsops_handler_latency_seconds_count", route="/echo") == 4
        spans = exporter.get_finished_spans()
        # ratio 0: only the message whose traceparent was sampled got a span, continuing it.
        [span] = [s for s in spans if s.name == "receive /echo"]
        assert span.kind is SpanKind.CONSUMER
        assert span.parent is not None and span.parent.span_id == int("b" * 16, 16)
        assert f"{span.context.trace_id:032x}" == "a" * 32


def test_example_script_runs_and_serves_metrics() -> None:
    port, admin = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, str(EXAMPLE), "--port", str(port),
                             "--admin-port", str(admin)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def metrics() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=1) as r:
                    return str(r.read().decode())
            except OSError:
                return ""

        text = until_sync(metrics, 20, what=f"the example's /metrics on port {admin}", step=0.1)
        assert "wsops_event_loop_lag_seconds" in text and "wsops_build_info" in text
    finally:
        proc.terminate()
        proc.wait(10)
