"""Who may call ``/`` and ``/admin/*``: a bearer token (``WSOPS_ADMIN_TOKEN``, compared in constant
time), or, when no token is set, loopback clients only.

A browser cannot send a bearer header when it navigates, so the fleet page has a cookie: ``GET
/?token=T`` with the right token sets it (HttpOnly, SameSite=Strict) and redirects to ``/``, which
takes the token out of the address bar. The cookie holds an HMAC of the token, not the token,
and is honoured for GET and HEAD only: whatever changes the node (``POST /admin/drain``) still
needs the bearer header, so a page elsewhere cannot make a logged-in browser drain the node.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

ADMIN_TOKEN_ENV = "WSOPS_ADMIN_TOKEN"
PROTECTED_PREFIXES = ("/admin",)
COOKIE_NAME = "wsops_admin"
READ_METHODS = frozenset({"GET", "HEAD"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def cookie_value(token: str) -> str:
    """What the page cookie holds: derived from the token, so it is no bearer token itself."""
    return hmac.new(token.encode(), b"wsops admin page cookie", hashlib.sha256).hexdigest()


def _same(given: str, expected: bytes) -> bool:
    return hmac.compare_digest(given.encode(), expected)


def token_form(message: str = "", status: int = 401) -> web.Response:
    """A tiny page asking for the admin token (a GET form to ``/``): no script, no assets."""
    note = f'<p class="err">{html.escape(message)}</p>' if message else ""
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wsops admin</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:15px system-ui,sans-serif;max-width:26rem;margin:15vh auto;padding:0 1rem}}
input{{font:inherit;padding:.35rem;width:100%;box-sizing:border-box;margin:.5rem 0}}
.err{{color:#b42318}}</style></head>
<body><h1>wsops admin</h1>{note}
<form method="get" action="/"><label for="token">Admin token
(<code>{ADMIN_TOKEN_ENV}</code>)</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus>
<button type="submit">Open the fleet page</button></form></body></html>
"""
    return web.Response(
        status=status, text=body, content_type="text/html",
        headers={"WWW-Authenticate": 'Bearer realm="wsops-admin"',
                 "Content-Security-Policy":
                     "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                     "frame-ancestors 'none'",
                 "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})


def _login(request: web.Request, given: str, expected: bytes, cookie: str) -> web.Response:
    """``GET /?token=T``: the cookie and a 303 to ``/`` (other query parameters kept)."""
    if not _same(given, expected):
        return token_form("That token was refused.")
    rest = request.rel_url.query.copy()
    rest.popall("token", None)
    resp = web.Response(status=303, headers={
        "Location": str(request.rel_url.with_query(rest)), "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store"})
    resp.set_cookie(COOKIE_NAME, cookie, path="/", httponly=True, samesite="Strict",
                    secure=request.secure)
    return resp


def admin_auth(token: str | None) -> Any:
    """Middleware guarding ``/`` and ``/admin*``; health, readiness and metrics stay open."""
    expected = token.encode() if token else None
    cookie = cookie_value(token) if token else ""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        page = request.path == "/"
        if not page and not request.path.startswith(PROTECTED_PREFIXES):
            return await handler(request)
        if expected is None:
            if not is_loopback(request.remote):
                raise web.HTTPForbidden(
                    text=f"admin API is loopback-only until {ADMIN_TOKEN_ENV} is set\n"
                )
            return await handler(request)
        reading = request.method in READ_METHODS
        if page and reading and "token" in request.query:
            return _login(request, request.query["token"], expected, cookie)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and _same(given.strip(), expected):
            return await handler(request)
        if reading and _same(request.cookies.get(COOKIE_NAME, ""), cookie.encode()):
            return await handler(request)
        if page and reading:
            return token_form()
        raise web.HTTPUnauthorized(
            text="admin API needs 'Authorization: Bearer <WSOPS_ADMIN_TOKEN>'\n",
            headers={"WWW-Authenticate": 'Bearer realm="wsops-admin"'},
        )

    return middleware


def token_from_env() -> str | None:
    return os.environ.get(ADMIN_TOKEN_ENV) or None
