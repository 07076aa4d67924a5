"""``/metrics`` on the admin listener: prometheus-client's own aiohttp handler, so the scrape
gets what every Prometheus client serves: OpenMetrics (with exemplars) when the scraper asks for
it, gzip when it accepts it, and ``name[]=...`` to read only some families."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from wsops.admin.listener import AdminListener


def add_metrics_route(admin: AdminListener, registry: CollectorRegistry) -> None:
    """Serve ``registry`` at ``/metrics`` (once per listener)."""
    if any(r.canonical == "/metrics" for r in admin.app.router.resources()):
        return
    admin.app.router.add_get("/metrics", make_aiohttp_handler(registry))
