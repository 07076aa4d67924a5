"""The server API's listener: ``POST /api/<method>`` against the node (an ``ApiBackend``).

Every request is read whole (at most ``--api-max-body`` bytes: HTTP 413 past it), checked
against the API keys (HTTP 401), held to its key's rate (HTTP 429, a batch counting as its
calls), parsed (``methods.parse_call``: HTTP 400/404) and served. Answers are JSON; an error
is ``{"error": {"code", "message"}}`` with the protocol's codes. ``GET /api/openapi.json``
describes it all. The listener is a ``Listener`` of its own: never the WebSocket or admin port.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Protocol

from aiohttp import web
from prometheus_client.metrics_core import CounterMetricFamily

from wsops.admin.listener import Listener
from wsops.config import Settings
from wsops.server.api.keys import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ApiAuthError,
    ApiKeys,
    keys_from_env,
)
from wsops.server.api.methods import MAX_BATCH, METHODS, ApiError, Call, parse_call
from wsops.server.core.broker import BrokerUnavailable, HistoryPage, Published
from wsops.server.core.protocol import ErrorCode
from wsops.server.core.token_bucket import TokenBucket

log = logging.getLogger(__name__)
MAX_KEYS_TRACKED = 64  # rate buckets: one per key (keys are few), never per caller
HISTORY_BUDGET = 1 << 20  # bytes of history items one answer holds at most


class ApiBackend(Protocol):
    """What the API needs of the node."""

    async def publish(self, room: str, data: bytes, traceparent: str | None,
                      tracestate: str | None = None) -> Published: ...

    async def presence(self, room: str) -> list[str]: ...

    async def history(self, room: str, limit: int, budget: int) -> HistoryPage: ...

    def local_rooms(self) -> list[tuple[str, int]]:
        """This node's rooms with their local connections, busiest first."""

    async def disconnect(self, user: str | None, connection: int | None, code: int,
                         reason: str) -> int:
        """Close ``user``'s connections on every node (or this node's ``connection``); how
        many were open on this node."""

    async def unsubscribe(self, user: str, room: str, reason: str) -> int:
        """Take ``user``'s connections out of ``room`` on every node; how many on this
        node."""

    async def revoke(self, kind: str, value: str, until: float) -> int:
        """Refuse ``kind`` ``value`` on every node until ``until``; how many of its
        connections this node closed."""

    async def nodes(self) -> list[dict[str, Any]]: ...


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None
          ) -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status,
                        content_type="application/json", headers=headers)


def _history(page: HistoryPage, room: str) -> bytes:
    head = json.dumps({"room": room, "offset": page.position.offset,
                       "epoch": page.position.epoch}, separators=(",", ":")).encode()
    more = b',"truncated":true' if page.truncated else b""
    return b'%s,"messages":[%s]%s}' % (head[:-1], b",".join(page.items), more)


class ApiService:
    """The API's routes, its keys and per-key rates, and its counts (for /metrics)."""

    def __init__(self, backend: ApiBackend, keys: ApiKeys, *, max_body: int, max_data: int,
                 rate: float) -> None:
        self.backend, self.keys = backend, keys
        self.max_body, self.max_data, self.rate = max_body, max_data, rate
        self.buckets: dict[str, TokenBucket] = {}
        self.counts: dict[tuple[str, str], int] = {}  # (method, "ok" or error code) -> calls
        self.app = web.Application(client_max_size=max_body)
        self.app.router.add_post("/api/{method}", self.handle)
        self.app.router.add_get("/api/openapi.json", self.openapi)

    def families(self) -> Iterator[CounterMetricFamily]:
        calls = CounterMetricFamily("wsops_api_calls", "Server API calls by method and outcome "
                                    "('ok' or the error code).", labels=["method", "outcome"])
        for (method, outcome), n in sorted(self.counts.items()):
            calls.add_metric([method, outcome], n)
        yield calls

    def _count(self, method: str, outcome: str) -> None:
        key = (method, outcome)
        self.counts[key] = self.counts.get(key, 0) + 1

    async def openapi(self, _: web.Request) -> web.Response:
        from wsops.server.api.openapi import document

        return _json(document())

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        shown = method if method in METHODS else "unknown"  # labels stay bounded
        if request.content_length is not None and request.content_length > self.max_body:
            self._count(shown, "too_large")
            return _json(ApiError(ErrorCode.BAD_REQUEST, f"the body is {request.content_length} "
                                  f"bytes; at most {self.max_body}").body(), 413)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self._count(shown, "too_large")
            return _json(ApiError(ErrorCode.BAD_REQUEST,
                                  f"the body is over {self.max_body} bytes").body(), 413)
        try:
            key = self.keys.check(request.headers.get("Authorization"),
                                  request.headers.get(TIMESTAMP_HEADER),
                                  request.headers.get(SIGNATURE_HEADER),
                                  request.method, request.path, body, time.time())
        except ApiAuthError as exc:
            self._count(shown, "unauthorized")
            return _json({"error": {"code": ErrorCode.FORBIDDEN, "message": str(exc)}}, 401,
                         {"WWW-Authenticate": 'Bearer realm="wsops-api"'})
        try:
            call = parse_call(method, body, self.max_data)
            self._spend(key, max(1, len(call.calls)))
            result = await self.serve(call)
        except ApiError as exc:
            self._count(shown, exc.code)
            return _json(exc.body(), exc.status,
                         {"Retry-After": "1"} if exc.code == ErrorCode.RATE_LIMITED else None)
        self._count(method, "ok")
        if isinstance(result, bytes):
            return web.Response(body=result, content_type="application/json")
        return _json(result)

    def _spend(self, key: str, calls: int) -> None:
        """Take ``calls`` tokens of ``key``'s bucket at once, or none (ApiError)."""
        now = time.monotonic()
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= MAX_KEYS_TRACKED:
                self.buckets.clear()  # keys rotated many times over: start the buckets again
            bucket = self.buckets[key] = TokenBucket(self.rate, max(2 * self.rate, MAX_BATCH),
                                                     now)
        if not bucket.allow(now, calls):
            raise ApiError(ErrorCode.RATE_LIMITED, f"over {self.rate:g} calls/s for this API "
                                                   "key: retry shortly")

    async def serve(self, call: Call) -> dict[str, Any] | bytes:
        """One checked call's answer; ApiError when it cannot be served."""
        try:
            return await _SERVE[call.method](self, call)
        except ApiError:
            raise
        except BrokerUnavailable as exc:
            raise ApiError(ErrorCode.UNAVAILABLE, str(exc) or "the broker is down") from None
        except Exception:
            log.exception("server API: internal error serving %s", call.method)
            raise ApiError(ErrorCode.INTERNAL, "internal error") from None

    async def _publish(self, call: Call) -> dict[str, Any]:
        msg = await self.backend.publish(call.room, call.data, call.traceparent, call.tracestate)
        out: dict[str, Any] = {"room": msg.room, "offset": msg.offset, "epoch": msg.epoch}
        if msg.local:
            out["local"] = True  # island mode: stored in Redis once it is back
        return out

    async def _broadcast(self, call: Call) -> dict[str, Any]:
        results: list[dict[str, Any]] = []
        for room in call.rooms:
            try:
                results.append(await self._publish(Call(
                    "publish", room=room, data=call.data, traceparent=call.traceparent,
                    tracestate=call.tracestate)))
            except BrokerUnavailable as exc:
                results.append({"room": room, "error": {"code": ErrorCode.UNAVAILABLE,
                                                        "message": str(exc)}})
        return {"results": results}

    async def _presence(self, call: Call) -> dict[str, Any]:
        return {"room": call.room, "users": await self.backend.presence(call.room)}

    async def _presence_stats(self, call: Call) -> dict[str, Any]:
        return {"room": call.room, "users": len(await self.backend.presence(call.room))}

    async def _history(self, call: Call) -> bytes:
        page = await self.backend.history(call.room, call.limit, HISTORY_BUDGET)
        return _history(page, call.room)

    async def _rooms(self, call: Call) -> dict[str, Any]:
        found = [(r, n) for r, n in self.backend.local_rooms() if call.matches(r)]
        return {"scope": "node", "rooms": [{"room": r, "connections": n}
                                           for r, n in found[:call.limit]],
                "truncated": len(found) > call.limit}

    async def _disconnect(self, call: Call) -> dict[str, Any]:
        return {"disconnected": await self.backend.disconnect(
            call.user, call.connection, call.code, call.reason)}

    async def _unsubscribe(self, call: Call) -> dict[str, Any]:
        assert call.user is not None
        return {"unsubscribed": await self.backend.unsubscribe(call.user, call.room,
                                                                call.reason)}

    async def _revoke(self, call: Call) -> dict[str, Any]:
        until = time.time() + call.seconds
        kind, value = ("user", call.user) if call.user is not None else ("jti", call.jti)
        assert value is not None
        try:
            closed = await self.backend.revoke(kind, value, until)
        except OverflowError as exc:
            raise ApiError(ErrorCode.UNAVAILABLE, str(exc)) from None
        return {"kind": kind, "value": value, "until": until, "disconnected": closed}

    async def _info(self, _: Call) -> dict[str, Any]:
        return {"nodes": await self.backend.nodes()}

    async def _batch(self, call: Call) -> dict[str, Any]:
        replies: list[dict[str, Any]] = []
        for item in call.calls:
            if isinstance(item, ApiError):
                replies.append(item.body())
                continue
            try:
                result = await self.serve(item)
            except ApiError as exc:
                replies.append(exc.body())
                continue
            replies.append({"result": json.loads(result) if isinstance(result, bytes)
                            else result})
        return {"replies": replies}


_SERVE: dict[str, Callable[[ApiService, Call], Awaitable[dict[str, Any] | bytes]]] = {
    "publish": ApiService._publish, "broadcast": ApiService._broadcast,
    "presence": ApiService._presence, "presence_stats": ApiService._presence_stats,
    "history": ApiService._history, "rooms": ApiService._rooms,
    "disconnect": ApiService._disconnect, "unsubscribe": ApiService._unsubscribe,
    "revoke": ApiService._revoke,
    "info": ApiService._info, "batch": ApiService._batch,
}


def serve_api(app: web.Application, backend: ApiBackend, settings: Settings) -> tuple[
        ApiService, Listener]:
    """Serve the API on its own listener (never the WebSocket or the admin port) for as long
    as ``app`` runs. Its keys come from ``WSOPS_API_KEYS`` (ValueError: none, or one too
    short)."""
    assert settings.api_port is not None
    keys = ApiKeys(keys_from_env(), signatures=settings.api_signatures)
    service = ApiService(backend, keys, max_body=settings.api_max_body,
                         max_data=settings.max_message_size, rate=settings.api_rate)
    listener = Listener("api listener", service.app, settings.api_host, settings.api_port,
                        handshake_timeout=settings.handshake_timeout,
                        max_connections=settings.api_max_connections)

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await listener.start()
        yield
        await listener.stop()

    app.cleanup_ctx.append(lifecycle)
    return service, listener
