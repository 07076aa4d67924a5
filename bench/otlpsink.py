"""A minimal OTLP/HTTP trace receiver that counts what it is sent, for ``bench/overhead.py``.

``POST /v1/traces`` (binary protobuf ``ExportTraceServiceRequest``, gzip or not) is answered
200 with an empty ``ExportTraceServiceResponse``, as a collector would; ``GET /stats`` returns
``{"requests", "spans", "bytes", "errors"}`` counted since start, and ``GET /healthz`` 200.
It runs in its own process so its CPU never counts as the server's.

Run: ``python bench/otlpsink.py --port 4318``; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import gzip

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

STATS = web.AppKey("stats", dict[str, int])
EMPTY_RESPONSE = ExportTraceServiceResponse().SerializeToString()


async def traces(request: web.Request) -> web.Response:
    stats = request.app[STATS]
    body = await request.read()
    stats["requests"] += 1
    stats["bytes"] += len(body)
    try:
        if body[:2] == b"\x1f\x8b":  # aiohttp inflates a body it can read the encoding of
            body = gzip.decompress(body)
        req = ExportTraceServiceRequest.FromString(body)
    except Exception:  # a broken export is counted, not fatal: the benchmark reports it
        stats["errors"] += 1
        return web.Response(status=400, text="bad ExportTraceServiceRequest")
    stats["spans"] += sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
    return web.Response(body=EMPTY_RESPONSE, content_type="application/x-protobuf")


async def stats_view(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATS])


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATS] = {"requests": 0, "spans": 0, "bytes": 0, "errors": 0}
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/stats", stats_view)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="otlpsink.py", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
