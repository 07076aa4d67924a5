"""Who may call ``/admin/*``: a bearer token (``WSOPS_ADMIN_TOKEN``, compared in constant time),
or, when no token is set, loopback clients only."""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

ADMIN_TOKEN_ENV = "WSOPS_ADMIN_TOKEN"
PROTECTED_PREFIXES = ("/admin",)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def admin_auth(token: str | None) -> Any:
    """Middleware guarding the protected paths; health, readiness and metrics stay open."""
    expected = token.encode() if token else None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/" or request.path.startswith(PROTECTED_PREFIXES):
            if expected is None:
                if not is_loopback(request.remote):
                    raise web.HTTPForbidden(
                        text=f"admin API is loopback-only until {ADMIN_TOKEN_ENV} is set\n"
                    )
            else:
                scheme, _, given = request.headers.get("Authorization", "").partition(" ")
                if scheme.lower() != "bearer" or not hmac.compare_digest(
                    given.strip().encode(), expected
                ):
                    raise web.HTTPUnauthorized(
                        text="admin API needs 'Authorization: Bearer <WSOPS_ADMIN_TOKEN>'\n",
                        headers={"WWW-Authenticate": 'Bearer realm="wsops-admin"'},
                    )
        return await handler(request)

    return middleware


def token_from_env() -> str | None:
    return os.environ.get(ADMIN_TOKEN_ENV) or None
