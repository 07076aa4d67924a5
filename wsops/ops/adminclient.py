"""HTTP access to a node's admin API (``/admin/*``, ``/readyz``): the only I/O of the ops commands.

Every failure becomes an ``AdminError`` whose message says what to do about it; the commands
decide whether it ends them (``drain``) or is one row of a table (``status``, ``top``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any, Final

import aiohttp

from wsops.admin.access import ADMIN_TOKEN_ENV

DEFAULT_TIMEOUT: Final = 2.0
DOWN, DENIED, FAILED = "down", "denied", "error"
"""``AdminError.kind``: unreachable or silent; refused (401/403); answered with an error."""


class AdminError(Exception):
    """A request to a node's admin API failed; ``str()`` is the node and a readable reason."""

    def __init__(self, url: str, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url
        self.kind = kind
        self.message = message
        self.status = status


def _refusal(url: str, path: str, status: int, text: str, has_token: bool) -> AdminError:
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
    return AdminError(url, FAILED, f"HTTP {status} for {path}: {said}", status)


class AdminClient:
    """Calls one node's admin API at ``base_url`` (``http://host:admin_port``)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.session = session
        self.url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                      ok: Sequence[int] = (200, 202)) -> Any:
        """The decoded JSON answer; statuses outside ``ok`` raise ``AdminError``."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with asyncio.timeout(self.timeout):
                async with self.session.request(method, self.url + path, json=body,
                                                headers=headers) as resp:
                    text = await resp.text()
                    if resp.status not in ok:
                        raise _refusal(self.url, path, resp.status, text, bool(self.token))
            return json.loads(text)
        except TimeoutError:
            raise AdminError(self.url, DOWN, f"no answer within {self.timeout:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            refused = isinstance(exc.os_error, ConnectionRefusedError)
            reason = "connection refused" if refused else (exc.os_error.strerror or str(exc))
            raise AdminError(self.url, DOWN, f"cannot connect: {reason}") from None
        except aiohttp.ClientError as exc:
            raise AdminError(self.url, DOWN, f"{type(exc).__name__}: {exc}") from None
        except ValueError:
            raise AdminError(self.url, FAILED,
                             f"the answer to {path} is not JSON: not a wsops admin API") from None

    async def stats(self) -> dict[str, Any]:
        return _object(self, await self.request("GET", "/admin/stats"))

    async def drain_status(self) -> dict[str, Any]:
        return _object(self, await self.request("GET", "/admin/drain"))

    async def start_drain(self, options: dict[str, Any]) -> dict[str, Any]:
        """Start a drain with ``options`` (batch, interval, deadline, code; absent: the node's)."""
        return _object(self, await self.request("POST", "/admin/drain", options))

    async def cancel_drain(self) -> dict[str, Any]:
        return _object(self, await self.request("POST", "/admin/drain/cancel"))

    async def readiness(self) -> tuple[bool, list[str]]:
        """(ready, the reasons it is not) from ``/readyz``."""
        answer = _object(self, await self.request("GET", "/readyz", ok=(200, 503)))
        return bool(answer.get("ready")), [str(r) for r in answer.get("reasons", [])]


def _object(client: AdminClient, answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise AdminError(client.url, FAILED, "expected a JSON object: not a wsops admin API")
    return answer


async def fetch_stats(session: aiohttp.ClientSession, urls: Sequence[str], token: str | None,
                      patience: float = DEFAULT_TIMEOUT) -> list[dict[str, Any] | AdminError]:
    """``/admin/stats`` of every node in parallel, each within ``patience`` seconds, in the
    order given; failures as values."""

    async def one(url: str) -> dict[str, Any] | AdminError:
        try:
            return await AdminClient(session, url, token, patience).stats()
        except AdminError as exc:
            return exc

    return list(await asyncio.gather(*(one(u) for u in urls)))
