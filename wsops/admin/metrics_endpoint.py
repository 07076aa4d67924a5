"""``/metrics`` on the admin listener: Prometheus text, or OpenMetrics (with exemplars) when the
scraper asks for it."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, exposition
from prometheus_client.openmetrics import exposition as openmetrics

from wsops.admin.listener import AdminListener


def add_metrics_route(admin: AdminListener, registry: CollectorRegistry) -> None:
    """Serve ``registry`` at ``/metrics`` (once per listener)."""
    if any(r.canonical == "/metrics" for r in admin.app.router.resources()):
        return

    async def metrics(request: web.Request) -> web.Response:
        accept = request.headers.get("Accept", "")
        if "application/openmetrics-text" in accept:
            body = openmetrics.generate_latest(registry)  # type: ignore[no-untyped-call]
            ctype = openmetrics.CONTENT_TYPE_LATEST
        else:
            body = exposition.generate_latest(registry)
            ctype = exposition.CONTENT_TYPE_LATEST
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = ctype
        return resp

    admin.app.router.add_get("/metrics", metrics)
