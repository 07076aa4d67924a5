"""Who may call ``/`` and ``/admin/*``: a bearer token (``WSOPS_ADMIN_TOKEN``, compared in constant
time), or, when no token is set, loopback clients only (a reverse proxy on the same host makes
every caller loopback: set the token whenever there is one).

A browser cannot send a bearer header when it navigates, so the fleet page has a cookie: ``GET
/?token=T`` with the right token sets it (HttpOnly, SameSite=Strict, ``Max-Age`` 12 h) and
redirects to ``/``, which takes the token out of the address bar. The cookie holds the time it
was issued and an HMAC of that time keyed with the token, not the token: it cannot be stretched
past ``COOKIE_MAX_AGE`` without the token, and dies with a new token. It is honoured for GET and
HEAD only: whatever changes the node (``POST /admin/drain``) still needs the bearer header, so a
page elsewhere cannot make a logged-in browser drain the node.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

ADMIN_TOKEN_ENV = "WSOPS_ADMIN_TOKEN"
PROTECTED_PREFIXES = ("/admin",)
COOKIE_NAME = "wsops_admin"
READ_METHODS = frozenset({"GET", "HEAD"})
COOKIE_MAX_AGE = 12 * 3600
"""Seconds a page cookie opens the page and the reads; then the token is asked again."""
COOKIE_CLOCK_SLACK = 60
"""Seconds a cookie may claim to come from the future (the clock stepped back)."""
COOKIE_INVALID, COOKIE_EXPIRED = "no valid page cookie", "the page cookie has expired"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def _cookie_mac(token: str, issued_at: int) -> str:
    message = b"wsops admin page cookie|%d" % issued_at
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def cookie_value(token: str, issued_at: float | None = None) -> str:
    """What the page cookie holds: ``ISSUED_AT.HMAC``, derived from the token, so it is no
    bearer token itself."""
    at = int(time.time() if issued_at is None else issued_at)
    return f"{at}.{_cookie_mac(token, at)}"


def cookie_refusal(value: str, token: str, now: float | None = None) -> str | None:
    """Why ``value`` does not open the page (None: it does); constant time in the MAC."""
    at_text, _, mac = value.partition(".")
    if not (at_text.isascii() and at_text.isdigit()) or len(at_text) > 12:
        return COOKIE_INVALID
    at = int(at_text)
    if not hmac.compare_digest(mac.encode(), _cookie_mac(token, at).encode()):
        return COOKIE_INVALID
    now = time.time() if now is None else now
    if now - at > COOKIE_MAX_AGE or at - now > COOKIE_CLOCK_SLACK:
        return COOKIE_EXPIRED
    return None


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


def _login(request: web.Request, given: str, expected: bytes, token: str) -> web.Response:
    """``GET /?token=T``: the cookie and a 303 to ``/`` (other query parameters kept)."""
    if not _same(given, expected):
        return token_form("That token was refused.")
    rest = request.rel_url.query.copy()
    rest.popall("token", None)
    resp = web.Response(status=303, headers={
        "Location": str(request.rel_url.with_query(rest)), "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store"})
    resp.set_cookie(COOKIE_NAME, cookie_value(token), path="/", httponly=True,
                    samesite="Strict", secure=request.secure, max_age=COOKIE_MAX_AGE)
    return resp


def admin_auth(token: str | None) -> Any:
    """Middleware guarding ``/`` and ``/admin*``; health, readiness and metrics stay open."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        page = request.path == "/"
        if not page and not request.path.startswith(PROTECTED_PREFIXES):
            return await handler(request)
        if not token:
            if not is_loopback(request.remote):
                raise web.HTTPForbidden(
                    text=f"admin API is loopback-only until {ADMIN_TOKEN_ENV} is set\n"
                )
            return await handler(request)
        expected = token.encode()
        reading = request.method in READ_METHODS
        if page and reading and "token" in request.query:
            return _login(request, request.query["token"], expected, token)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and _same(given.strip(), expected):
            return await handler(request)
        cookie = request.cookies.get(COOKIE_NAME)
        refusal = cookie_refusal(cookie, token) if cookie else None
        if reading and cookie and refusal is None:
            return await handler(request)
        expired = refusal == COOKIE_EXPIRED
        if page and reading:
            return token_form("Your session has expired: enter the token again." if expired
                              else "")
        note = f" ({COOKIE_EXPIRED}: open / with the token again)" if expired else ""
        raise web.HTTPUnauthorized(
            text=f"admin API needs 'Authorization: Bearer <{ADMIN_TOKEN_ENV}>'{note}\n",
            headers={"WWW-Authenticate": 'Bearer realm="wsops-admin"'},
        )

    return middleware


def token_from_env() -> str | None:
    return os.environ.get(ADMIN_TOKEN_ENV) or None
