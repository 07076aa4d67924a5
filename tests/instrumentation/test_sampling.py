"""Head sampling is decided once, by wsops: at each ratio the spans a real OTLP receiver gets
are a binomial share of the publishes, whatever ``OTEL_TRACES_SAMPLER`` says to the SDK, and
every sampled publish's delivery span is exported with it (issue #18)."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

import wsops
from tests.conftest import Connect, ServerFactory
from tests.support.otlp import otlp_receiver
from tests.support.waits import until
from wsops.instrumentation import INSTRUMENT_KEY
from wsops.instrumentation.tracesetup import env_ratio, resamples
from wsops.instrumentation.tracing import room_template

PUBLISHES = 2000


def bounds(n: int, p: float, sigmas: float = 4.5) -> tuple[float, float]:
    """Where Binomial(n, p) falls but for ~7 runs in a million (exact at p = 0 and 1)."""
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    return mean - sigmas * sd, mean + sigmas * sd


@pytest.mark.parametrize("ratio", [0.0, 0.01, 0.5, 1.0])
async def test_each_publish_is_sampled_once_at_the_ratio_and_its_delivery_follows(
    ratio: float, server_factory: ServerFactory, connect: Connect,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with otlp_receiver() as rec:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rec.url)
        # The trap: an SDK that reads these would sample a second time (0.5 of 0.5).
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", str(ratio))
        server = await server_factory(rate_limit=100_000, rate_burst=100_000)
        tracing = server.app[INSTRUMENT_KEY].tracing
        assert tracing.ratio == ratio and not resamples(tracing.provider)
        sub = await connect(server.url)
        await sub.call("subscribe", "sampled")
        pub = await connect(server.url)
        for i in range(0, PUBLISHES, 100):
            await asyncio.gather(*(pub.call("publish", "sampled", data=j)
                                   for j in range(i, i + 100)))
        await sub.messages(PUBLISHES, timeout=30.0)
        low, high = bounds(PUBLISHES, ratio)

        async def exported() -> bool:
            provider: Any = tracing.provider  # the SDK's or the lean one: both flush
            await asyncio.to_thread(provider.force_flush, 10_000)
            n = len(rec.named("publish sampled"))
            return n >= low and n == len(rec.named("deliver sampled"))

        await until(exported, 20.0, what="the sampled publishes and their deliveries exported")
        publishes, deliveries = rec.named("publish sampled"), rec.named("deliver sampled")
        assert low <= len(publishes) <= high, (ratio, len(publishes))
        # Each delivery links to one exported publish, and each exported publish has one.
        linked = sorted(d.links[0].span_id for d in deliveries)
        assert linked == sorted(p.span_id for p in publishes)


def test_the_standard_sampler_variables_set_the_ratio() -> None:
    assert env_ratio(0.01, {}) == 0.01
    assert env_ratio(0.01, {"OTEL_TRACES_SAMPLER_ARG": "0.25"}) == 0.25
    assert env_ratio(0.01, {"OTEL_TRACES_SAMPLER": "always_off",
                            "OTEL_TRACES_SAMPLER_ARG": "0.25"}) == 0.0
    assert env_ratio(0.01, {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}) == 1.0
    assert env_ratio(0.01, {"OTEL_TRACES_SAMPLER": "traceidratio"}) == 1.0  # the spec's default
    assert env_ratio(0.01, {"OTEL_TRACES_SAMPLER": "ParentBased_TraceIdRatio",
                            "OTEL_TRACES_SAMPLER_ARG": "0.5"}) == 0.5
    with pytest.raises(ValueError, match="jaeger_remote"):
        env_ratio(0.01, {"OTEL_TRACES_SAMPLER": "jaeger_remote"})
    with pytest.raises(ValueError, match="within"):
        env_ratio(0.01, {"OTEL_TRACES_SAMPLER_ARG": "2"})


def test_a_provider_that_samples_on_its_own_is_named_in_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert not resamples(TracerProvider(sampler=ParentBased(ALWAYS_ON)))
    assert not resamples(TracerProvider(sampler=ALWAYS_ON))
    with caplog.at_level(logging.WARNING, logger="wsops.instrument"):
        wsops.instrument(web.Application(), admin_port=None, runtime=False,
                         tracer_provider=TracerProvider(sampler=TraceIdRatioBased(0.5)))
    assert "samples on its own" in caplog.text and "TraceIdRatioBased" in caplog.text


def test_span_names_use_a_low_cardinality_room_template() -> None:
    assert room_template("lobby") == "lobby"
    assert room_template("chat:42") == "chat:*"
    assert room_template("dm/ann/bob") == "dm/*/*"
    assert room_template("org:7/team:3") == "org:*/*:*"
