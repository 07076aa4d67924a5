"""Tracing configured from the standard ``OTEL_*`` environment: the sample ratio wsops applies
itself (``env_ratio``), the lean OTLP/HTTP provider (``provider_from_env``), and whether a
provider of the user's would sample a second time (``resamples``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

from wsops.instrumentation import otlpwire
from wsops.instrumentation.leanspans import LeanTracerProvider, SpanQueue
from wsops.instrumentation.otlphttp import OtlpConfig, OtlpHttp
from wsops.version import __version__

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


def provider_from_env(env: Mapping[str, str] = os.environ) -> LeanTracerProvider | None:
    """A TracerProvider exporting over OTLP/HTTP when an OTLP endpoint is configured, else None.

    Honours ``OTEL_SDK_DISABLED``, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, the
    ``OTEL_EXPORTER_OTLP_[TRACES_]*`` variables (``otlphttp.OtlpConfig``) and the batch
    processor's ``OTEL_BSP_*``. The provider is wsops' own (``leanspans.py``): the SDK's costs
    ~10x more per sampled span.
    """
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    config = OtlpConfig.from_env(env)
    if config is None:
        return None
    created = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", "wsops"),
                               "service.version": __version__})
    # wsops decides before any span exists (``Tracing.decide``) and the lean provider keeps
    # every span it is given (a ratio in OTEL_TRACES_SAMPLER must not apply a second time).
    queue = SpanQueue(OtlpHttp(config), otlpwire.resource(created.attributes),
                      created.schema_url, max_queue=_env_int(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048),
                      batch=_env_int(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
                      delay=_env_int(env, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000)
    return LeanTracerProvider(queue)


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive")
    return value


KEEPS_ALL = {ALWAYS_ON.get_description(),
             ParentBased(ALWAYS_ON).get_description()}  # type: ignore[no-untyped-call]


def resamples(provider: Any) -> bool:
    """Whether ``provider``'s own sampler may drop spans wsops already decided to sample
    (then a ratio applies twice: 0.5 of 0.5 is 0.25)."""
    sampler: Any = getattr(provider, "sampler", None)
    return sampler is not None and sampler.get_description() not in KEEPS_ALL
