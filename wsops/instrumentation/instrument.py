"""``instrument(app)``: wrap any aiohttp WebSocket app with the instrumentation, and (for
convenience, when an admin port is given) mount the admin listener serving it.

May import the instrumentation's own modules and ``wsops.admin``; never the server.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from wsops.instrumentation.leanspans import LeanTracerProvider
from wsops.instrumentation.middleware import Instrumentation, InstrumentConfig
from wsops.instrumentation.tracesetup import env_ratio, provider_from_env, resamples
from wsops.instrumentation.tracing import DEFAULT_RATIO, Tracing

log = logging.getLogger("wsops.instrument")
INSTRUMENT_KEY = web.AppKey("wsops_instrument", Instrumentation)


def new_registry() -> CollectorRegistry:
    """A registry whose ``name[]`` filter (``/metrics?name[]=...``) also finds the families
    of collectors that cannot name them ahead (the wsops metrics: routes and sources come and
    go); pass one like it to ``instrument(app, registry=...)`` for the same."""
    return CollectorRegistry(support_collectors_without_names=True)


def instrument(
    app: web.Application,
    *,
    registry: CollectorRegistry | None = None,
    tracer_provider: Any = None,
    config: InstrumentConfig | None = None,
    **overrides: Any,
) -> Instrumentation:
    """Instrument every WebSocket handler of ``app``; serve ``/metrics`` on the admin listener.

    ``registry`` defaults to a new registry (``new_registry()``, never the global one);
    ``tracer_provider`` defaults to one built from the ``OTEL_*`` environment, exporting over
    OTLP/HTTP when an endpoint is set (no endpoint and no provider: no spans are made).
    Keyword ``overrides`` set fields of ``InstrumentConfig``. Call before the app starts.
    """
    existing = app.get(INSTRUMENT_KEY)
    if existing is not None:
        return existing
    cfg = config or InstrumentConfig()
    if overrides:
        cfg = InstrumentConfig(**{**cfg.__dict__, **overrides})
    given = registry is not None
    registry = registry if registry is not None else new_registry()
    provider = tracer_provider if tracer_provider is not None else (
        provider_from_env() if cfg.tracing else None)
    if tracer_provider is not None and cfg.tracing and resamples(tracer_provider):
        log.warning("the tracer provider given to instrument() samples on its own (%s): wsops "
                    "already decides which messages are traced, so its ratio applies twice; "
                    "build it with sampler=ParentBased(ALWAYS_ON)",
                    tracer_provider.sampler.get_description())
    ratio = cfg.sample_ratio if cfg.sample_ratio is not None else env_ratio(DEFAULT_RATIO)
    inst = Instrumentation(cfg, registry, Tracing(provider if cfg.tracing else None, ratio))
    app[INSTRUMENT_KEY] = inst
    app.middlewares.append(inst.middleware)
    app.on_response_prepare.append(inst.on_prepare)
    if cfg.runtime:
        from wsops.instrumentation.runtime import RuntimeCollector

        runtime = RuntimeCollector(live_connections=inst.live.total,
                                   lag_interval=cfg.lag_interval)
        inst.runtime = runtime
        if cfg.metrics:
            registry.register(runtime)
            # A registry given to us may have process_* already (the global REGISTRY has
            # prometheus-client's ProcessCollector, which does not describe itself, so
            # registering ours would not be refused: the scrape would repeat every series).
            if given and registry.get_sample_value("process_start_time_seconds") is not None:
                log.info("the registry has process_* metrics already: keeping its collector")
            else:
                registry.register(runtime.process)

        async def runtime_ctx(_: web.Application) -> Any:
            await runtime.start()
            yield
            await runtime.stop()

        app.cleanup_ctx.append(runtime_ctx)
    if cfg.admin_port is not None:
        # For convenience: the admin listener serving this app (``mount_admin``).
        from wsops.admin.api import mount_admin
        from wsops.instrumentation.app_surface import AppSurface

        inst.admin = mount_admin(app, AppSurface(inst), registry, host=cfg.admin_host,
                                 port=cfg.admin_port)

    async def sampler_ctx(_: web.Application) -> Any:
        task = asyncio.create_task(inst.sampler())
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    app.cleanup_ctx.append(sampler_ctx)

    own = provider if tracer_provider is None and isinstance(provider, LeanTracerProvider) \
        else None

    async def flush_traces(_: web.Application) -> None:
        # Blocking HTTP export: off the loop. A provider built here is ours to stop.
        await asyncio.to_thread(own.shutdown if own is not None else inst.tracing.shutdown)

    app.on_cleanup.append(flush_traces)
    return inst
