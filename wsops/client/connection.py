"""Opening one WebSocket connection and sorting its failures into "retry" and "give up".

The only I/O here is ``ws_connect``; the client's run loop decides what to do with the outcome.
"""

from __future__ import annotations

import asyncio
import re
from http import HTTPStatus
from typing import Final

import aiohttp

from wsops.backoff import parse_retry_after
from wsops.client.errors import AuthError

# HTTP statuses that retrying with the same credentials cannot fix.
AUTH_STATUSES: Final = frozenset({401, 403})
# Abnormal closure: what a connection that ended without a close frame reports.
ABNORMAL_CLOSE: Final = 1006


_DESCRIPTION = re.compile(r'error_description="((?:[^"\\]|\\.)*)"')


def refusal_reason(status: int, challenge: str | None) -> str:
    """Why the server refused the upgrade: the ``error_description`` of its ``WWW-Authenticate``
    challenge (RFC 6750; the wsops server says e.g. "token expired"), else the status's name."""
    found = _DESCRIPTION.search(challenge or "")
    if found:
        return re.sub(r"\\(.)", r"\1", found.group(1))
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


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
) -> aiohttp.ClientWebSocketResponse:
    """Open a connection to ``url`` with the token as a bearer header.

    permessage-deflate is not requested (``compress=0``): the server does not offer it and
    it would cost memory on both sides. Raises ``AuthError`` on 401/403, ``RetryLater``
    on anything else that went wrong.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        return await asyncio.wait_for(
            session.ws_connect(
                url, headers=headers, compress=0, heartbeat=heartbeat, autoping=True
            ),
            connect_timeout,
        )
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status in AUTH_STATUSES:
            challenge = exc.headers.get("WWW-Authenticate") if exc.headers else None
            raise AuthError(exc.status, refusal_reason(exc.status, challenge)) from None
        retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        raise RetryLater(f"HTTP {exc.status}: {exc.message}", retry_after) from None
    except TimeoutError:
        raise RetryLater("connection attempt timed out") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise RetryLater(f"{type(exc).__name__}: {exc}") from None
