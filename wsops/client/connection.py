"""Opening one WebSocket connection and sorting its failures into "retry" and "give up".

The only I/O here is ``ws_connect`` (and reading the body of a refused upgrade); the client's
run loop decides what to do with the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from http import HTTPStatus
from typing import Any, Final

import aiohttp

from wsops.backoff import parse_retry_after
from wsops.client.errors import AuthError
from wsops.client.wire import SUBPROTOCOL

# HTTP statuses that retrying with the same credentials cannot fix.
AUTH_STATUSES: Final = frozenset({401, 403})
# Abnormal closure: what a connection that ended without a close frame reports.
ABNORMAL_CLOSE: Final = 1006
# Bytes of a refused upgrade's body kept as its reason (the wsops server says one short line).
MAX_BODY: Final = 1024


_DESCRIPTION = re.compile(r'error_description="((?:[^"\\]|\\.)*)"')


def refusal_reason(status: int, challenge: str | None, body: str = "") -> str:
    """Why the server refused the upgrade: the ``error_description`` of its ``WWW-Authenticate``
    challenge (RFC 6750; the wsops server says e.g. "token expired"), else the first line of
    the response body ("node is full"), else the status's name."""
    found = _DESCRIPTION.search(challenge or "")
    if found:
        return re.sub(r"\\(.)", r"\1", found.group(1))
    line = body.strip().split("\n", 1)[0].strip()
    if line:
        return line[:200]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class RefusedBody:
    """The start of the last refused upgrade's body, which ``ws_connect`` closes unread.

    ``trace_config()`` is an aiohttp hook that reads it when the response has arrived, before
    ``ws_connect`` checks the status; give it to the session when creating it. A client makes
    one connection attempt at a time, so one slot is enough. On a session without the hook
    (one the application passed in) ``text`` stays empty and the reason comes from
    ``WWW-Authenticate`` or the status alone.
    """

    def __init__(self) -> None:
        self.text = ""

    def trace_config(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()
        config.on_request_end.append(self._on_request_end)
        return config

    async def _on_request_end(self, session: aiohttp.ClientSession, context: Any,
                              params: aiohttp.TraceRequestEndParams) -> None:
        response = params.response
        if response.status < 400:
            return
        data = bytearray()
        with contextlib.suppress(aiohttp.ClientError, OSError):
            while len(data) < MAX_BODY:
                chunk = await response.content.read(MAX_BODY - len(data))
                if not chunk:
                    break
                data += chunk
        self.text = data.decode("utf-8", "replace")


class RetryLater(Exception):
    """The connection attempt failed in a way that may pass (refused, 503, timeout...)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


async def open_socket(
    session: aiohttp.ClientSession,
    url: str,
    token: str | None,
    *,
    heartbeat: float | None,
    connect_timeout: float | None,
    refused: RefusedBody | None = None,
) -> aiohttp.ClientWebSocketResponse:
    """Open a connection to ``url`` with the token as a bearer header.

    permessage-deflate is not requested (``compress=0``): the server does not offer it and
    it would cost memory on both sides. The protocol version is offered as the subprotocol
    ``wsops.v1`` (PROTOCOL.md, "Versions"). Raises ``AuthError`` on 401/403, ``RetryLater``
    on anything else that went wrong; both say why (see ``refusal_reason``), reading the
    body of a refused upgrade from ``refused`` when the session has its hook.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if refused is not None:
        refused.text = ""
    try:
        return await asyncio.wait_for(
            session.ws_connect(
                url, headers=headers, compress=0, heartbeat=heartbeat, autoping=True,
                protocols=(SUBPROTOCOL,),
            ),
            connect_timeout,
        )
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status == 101:  # upgraded, but not as a WebSocket (a bad Upgrade or key)
            raise RetryLater(f"bad handshake: {exc.message}") from None
        challenge = exc.headers.get("WWW-Authenticate") if exc.headers else None
        reason = refusal_reason(exc.status, challenge, refused.text if refused else "")
        if exc.status in AUTH_STATUSES:
            raise AuthError(exc.status, reason) from None
        retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        raise RetryLater(f"HTTP {exc.status}: {reason}", retry_after) from None
    except TimeoutError:
        raise RetryLater("connection attempt timed out") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise RetryLater(f"{type(exc).__name__}: {exc}") from None
