"""``ApiClient``: the server API from a backend (HTTP, asyncio), for services that publish to
rooms, ask who is in one, or disconnect a user, without a WebSocket.

Usage::

    async with ApiClient("http://10.0.0.5:9800", key) as api:
        await api.publish("orders:42", {"status": "shipped"})

With ``sign=True`` each request also carries ``X-Wsops-Timestamp`` and ``X-Wsops-Signature``
(for nodes run with ``--api-signatures``). A refused call raises ``ApiCallError`` with the
HTTP status, the protocol's error code and the node's message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import aiohttp

from wsops.apisign import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign


class ApiCallError(Exception):
    """A call the node refused: ``status`` (HTTP), ``code`` (PROTOCOL.md) and its message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class ApiClient:
    """One node's server API (``--api-port``); any node of a Redis fleet serves the fleet."""

    def __init__(self, url: str, key: str, *, sign: bool = False, timeout: float = 10.0,
                 session: aiohttp.ClientSession | None = None) -> None:
        self.url = url.rstrip("/")
        self.key, self.sign = key, sign
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session, self._own = session, session is None

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own and self._session is not None:
            await self._session.close()
        self._session = None

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """``POST /api/<method>`` with ``params``; the answer (decoded JSON)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        path = f"/api/{method}"
        body = json.dumps(dict(params or {}), separators=(",", ":")).encode()
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        if self.sign:
            ts = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = ts
            headers[SIGNATURE_HEADER] = sign(self.key, ts, "POST", path, body)
        async with self._session.post(self.url + path, data=body, headers=headers,
                                      timeout=self.timeout) as r:
            text = await r.text()
            try:
                answer = json.loads(text)
            except ValueError:
                raise ApiCallError(r.status, "bad_response", text[:200]) from None
            if r.status != 200:
                error = answer.get("error", {}) if isinstance(answer, dict) else {}
                raise ApiCallError(r.status, str(error.get("code", "error")),
                                   str(error.get("message", text[:200])))
            return answer

    async def publish(self, room: str, data: Any, *, traceparent: str | None = None,
                      tracestate: str | None = None) -> dict[str, Any]:
        """Publish ``data`` (any JSON value) to ``room``: ``{"room", "offset", "epoch"}``;
        ``traceparent``/``tracestate``: the W3C trace context of the caller's span."""
        params: dict[str, Any] = {"room": room, "data": data}
        if traceparent is not None:
            params["traceparent"] = traceparent
        if tracestate is not None:
            params["tracestate"] = tracestate
        return dict(await self.call("publish", params))

    async def broadcast(self, rooms: Sequence[str], data: Any) -> list[dict[str, Any]]:
        """Publish ``data`` to each of ``rooms``: one result (or error) per room."""
        return list((await self.call("broadcast", {"rooms": list(rooms), "data": data}))[
            "results"])

    async def presence(self, room: str) -> list[str]:
        return list((await self.call("presence", {"room": room}))["users"])

    async def presence_stats(self, room: str) -> int:
        return int((await self.call("presence_stats", {"room": room}))["users"])

    async def history(self, room: str, limit: int = 100) -> dict[str, Any]:
        """``{"room", "offset", "epoch", "messages": [...]}``, the newest ``limit``."""
        return dict(await self.call("history", {"room": room, "limit": limit}))

    async def rooms(self, pattern: str | None = None, limit: int = 100) -> dict[str, Any]:
        """This node's rooms (``pattern``: a glob) with their connections, busiest first."""
        params: dict[str, Any] = {"limit": limit}
        if pattern is not None:
            params["pattern"] = pattern
        return dict(await self.call("rooms", params))

    async def disconnect(self, *, user: str | None = None, connection: int | None = None,
                         code: int | None = None, reason: str | None = None) -> int:
        """Close ``user``'s connections on every node (or this node's ``connection``); how
        many were open on the node called."""
        params: dict[str, Any] = {"user": user} if user is not None else {
            "connection": connection}
        if code is not None:
            params["code"] = code
        if reason is not None:
            params["reason"] = reason
        return int((await self.call("disconnect", params))["disconnected"])

    async def unsubscribe(self, user: str, room: str, *, reason: str | None = None) -> int:
        """Take ``user``'s connections out of ``room`` on every node (each gets an
        ``unsubscribed`` event); how many were in it on the node called."""
        params: dict[str, Any] = {"user": user, "room": room}
        if reason is not None:
            params["reason"] = reason
        return int((await self.call("unsubscribe", params))["unsubscribed"])

    async def revoke(self, *, user: str | None = None, jti: str | None = None,
                     seconds: float) -> dict[str, Any]:
        """Refuse ``user`` (or the token ``jti``) on every node for ``seconds``, and close its
        connections now: ``{"kind", "value", "until", "disconnected"}``."""
        params: dict[str, Any] = {"user": user} if user is not None else {"jti": jti}
        return dict(await self.call("revoke", {**params, "seconds": seconds}))

    async def info(self) -> list[dict[str, Any]]:
        return list((await self.call("info"))["nodes"])

    async def batch(self, calls: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
        """Several calls in one request: one ``{"result"}`` or ``{"error"}`` each, in order."""
        return list((await self.call("batch", {"calls": [
            {"method": m, "params": dict(p)} for m, p in calls]}))["replies"])
