"""The one HTTP client of a node's admin API (``/admin/*``, ``/readyz``, ``/metrics``).

The ops commands (status, top, drain, leaks) and the ``--workers N`` aggregator call nodes
through it; answers are the documents of ``wsops.admin.contract``. Every failure becomes an
``AdminError`` whose message says what to do about it; callers decide whether it ends them
(``drain``), is one row of a table (``status``, ``top``) or one worker's row (the aggregator).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast
from urllib.parse import urlencode

import aiohttp

from wsops.admin.access import ADMIN_TOKEN_ENV
from wsops.admin.contract import (
    Connections,
    DebugStarted,
    DebugState,
    DebugStopped,
    DrainCancelled,
    DrainProgress,
    DrainStarted,
    FlowSnapshot,
    Stats,
)

OPENMETRICS: Final = "application/openmetrics-text; version=1.0.0; charset=utf-8"

DEFAULT_TIMEOUT: Final = 2.0
DOWN, DENIED, FAILED = "down", "denied", "error"
"""``AdminError.kind``: unreachable or silent; refused (401/403); answered with an error."""


class AdminError(Exception):
    """A request to a node's admin API failed; ``str()`` is the node and a readable reason."""

    def __init__(self, url: str, kind: str, message: str, status: int | None = None,
                 body: str = "") -> None:
        super().__init__(f"{url}: {message}")
        self.url = url
        self.kind = kind
        self.message = message
        self.status = status
        self.body = body  # what the node said (its first 200 characters)


def refusal(url: str, path: str, status: int, text: str, has_token: bool) -> AdminError:
    said = text.strip()[:200]
    if status == 401:
        hint = ("the admin token was refused: check --token / " + ADMIN_TOKEN_ENV
                if has_token else
                f"this node requires an admin token: pass --token or set {ADMIN_TOKEN_ENV}")
        return AdminError(url, DENIED, f"401 Unauthorized: {hint}", status)
    if status == 403:
        return AdminError(url, DENIED, (
            f"403 Forbidden: {said or 'refused'} (without a token the admin API answers "
            f"loopback clients only: run wsops on the node, or start the node with "
            f"{ADMIN_TOKEN_ENV} and pass --token)"), status)
    if status == 404:
        return AdminError(url, FAILED, (
            f"404 Not Found for {path}: not a wsops admin API. Give the node's admin listener "
            "(--admin-port, default 9765), not its WebSocket port; the node needs "
            "instrumentation on (wsops.instrument or wsops serve without --no-instrument)"),
            status)
    return AdminError(url, FAILED, f"HTTP {status} for {path}: {said}", status, text[:200])


class AdminClient:
    """Calls one node's admin API at ``base_url`` (``http://host:admin_port``)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.session = session
        self.url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    async def request(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                      ok: Sequence[int] = (200, 202)) -> Any:
        """The decoded JSON answer; statuses outside ``ok`` raise ``AdminError``."""
        text = await self._call(method, path, body, ok)
        try:
            return json.loads(text)
        except ValueError:
            raise AdminError(self.url, FAILED,
                             f"the answer to {path} is not JSON: not a wsops admin API") from None

    async def _call(self, method: str, path: str, body: Mapping[str, Any] | None,
                    ok: Sequence[int], accept: str | None = None) -> str:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if accept is not None:
            headers["Accept"] = accept
        try:
            async with asyncio.timeout(self.timeout):
                async with self.session.request(method, self.url + path, json=body,
                                                headers=headers) as resp:
                    text = await resp.text()
                    if resp.status not in ok:
                        raise refusal(self.url, path, resp.status, text, bool(self.token))
                    return text
        except TimeoutError:
            raise AdminError(self.url, DOWN, f"no answer within {self.timeout:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            refused = isinstance(exc.os_error, ConnectionRefusedError)
            reason = "connection refused" if refused else (exc.os_error.strerror or str(exc))
            raise AdminError(self.url, DOWN, f"cannot connect: {reason}") from None
        except aiohttp.ClientError as exc:
            raise AdminError(self.url, DOWN, f"{type(exc).__name__}: {exc}") from None

    async def stats(self) -> Stats:
        return cast(Stats, _object(self, await self.request("GET", "/admin/stats")))

    async def open_connections(self) -> int | None:
        """The node's open connections now, or None when it does not answer (or says no
        number): for followers that chart a node through a restart."""
        try:
            n = (await self.stats()).get("connections")
        except AdminError:
            return None
        return int(n) if isinstance(n, int | float) else None

    async def drain_status(self) -> DrainProgress:
        return cast(DrainProgress, _object(self, await self.request("GET", "/admin/drain")))

    async def start_drain(self, options: Mapping[str, Any]) -> DrainStarted:
        """Start a drain with ``options`` (batch, interval, deadline, code; absent: the node's)."""
        return cast(DrainStarted,
                    _object(self, await self.request("POST", "/admin/drain", options)))

    async def cancel_drain(self) -> DrainCancelled:
        return cast(DrainCancelled,
                    _object(self, await self.request("POST", "/admin/drain/cancel")))

    async def flow(self, top: int = 20) -> FlowSnapshot:
        return cast(FlowSnapshot, _object(self, await self.request(
            "GET", f"/admin/flow?top={top}")))

    async def debug_state(self) -> DebugState:
        return cast(DebugState, await self._debug("GET", "/admin/debug", None))

    async def debug_start(self, body: Mapping[str, Any]) -> DebugStarted:
        """Watch what ``body`` names (``{"user": U}``, ``room`` or ``connection``; ``seconds``)."""
        return cast(DebugStarted, await self._debug("POST", "/admin/debug", body))

    async def debug_stop(self, target_id: str | None) -> DebugStopped:
        """Turn ``target_id`` (``kind:value``) off; None: every target."""
        return cast(DebugStopped, await self._debug("POST", "/admin/debug/stop",
                                                    {"id": target_id}))

    async def _debug(self, method: str, path: str,
                     body: Mapping[str, Any] | None) -> dict[str, Any]:
        text = await self._call(method, path, body, (200, 404))
        try:
            return _object(self, json.loads(text))
        except (ValueError, AdminError):
            if "debug switch" in text:  # the node's own 404: a plain app has none
                raise AdminError(self.url, FAILED, text.strip(), 404, text.strip()) from None
            raise refusal(self.url, path, 404, text, bool(self.token)) from None

    async def connections(self, top: int = 20) -> Connections:
        return cast(Connections, _object(self, await self.request(
            "GET", f"/admin/connections?top={top}")))

    async def readiness(self) -> tuple[bool, list[str]]:
        """(ready, the reasons it is not) from ``/readyz``."""
        answer = _object(self, await self.request("GET", "/readyz", ok=(200, 503)))
        return bool(answer.get("ready")), [str(r) for r in answer.get("reasons", [])]

    async def metrics(self, openmetrics: bool = False, names: Sequence[str] = ()) -> str:
        """The ``/metrics`` exposition (Prometheus text, or OpenMetrics with exemplars); only
        the series ``names`` when given."""
        query = "?" + urlencode([("name[]", n) for n in names]) if names else ""
        return await self._call("GET", "/metrics" + query, None, (200,),
                                accept=OPENMETRICS if openmetrics else "text/plain")

    async def profile_start(self, frames: int, lease_seconds: float) -> dict[str, Any]:
        """Open a profiling session (tracemalloc on, if it was off)."""
        return _object(self, await self.request(
            "POST", "/admin/profile/start", {"frames": frames, "lease_seconds": lease_seconds}))

    async def profile_sample(self, *, top: int, group: str, types: int,
                             session: str | None) -> dict[str, Any]:
        """One sample: traced memory by site, object counts by type, leak checks, RSS."""
        query = urlencode({"top": top, "group": group, "types": types,
                           "session": session or ""})
        return _object(self, await self.request("GET", f"/admin/profile/sample?{query}"))

    async def profile_stop(self, session: str | None) -> dict[str, Any]:
        """End a profiling session (tracemalloc off if wsops turned it on and none is left)."""
        return _object(self, await self.request("POST", "/admin/profile/stop",
                                                {"session": session}))


def _object(client: AdminClient, answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise AdminError(client.url, FAILED, "expected a JSON object: not a wsops admin API")
    return answer


async def fetch_stats(session: aiohttp.ClientSession, urls: Sequence[str], token: str | None,
                      patience: float = DEFAULT_TIMEOUT) -> list[Stats | AdminError]:
    """``/admin/stats`` of every node in parallel, each within ``patience`` seconds, in the
    order given; failures as values."""

    async def one(url: str) -> Stats | AdminError:
        try:
            return await AdminClient(session, url, token, patience).stats()
        except AdminError as exc:
            return exc

    return list(await asyncio.gather(*(one(u) for u in urls)))
