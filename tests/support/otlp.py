"""A real OTLP/HTTP trace receiver for tests: decodes the protobuf requests it is sent."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.support.ports import serving


@dataclass
class Receiver:
    url: str = ""
    spans: list[Any] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    encodings: list[str] = field(default_factory=list)  # each request's Content-Encoding
    scopes: list[str] = field(default_factory=list)  # each span's instrumentation scope

    def named(self, name: str) -> list[Any]:
        return [s for s in self.spans if s.name == name]


def attrs(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None
    return out


@asynccontextmanager
async def otlp_receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()

    async def traces(request: web.Request) -> web.Response:
        body = await request.read()  # aiohttp has inflated a gzip or deflate body already
        rec.encodings.append(request.headers.get("Content-Encoding", ""))
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            rec.resources.append(attrs(rs.resource.attributes))
            for ss in rs.scope_spans:
                rec.spans.extend(ss.spans)
                rec.scopes.extend(ss.scope.name for _ in ss.spans)
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    async with serving(app, access_log=None) as port:
        rec.url = f"http://127.0.0.1:{port}"
        yield rec
