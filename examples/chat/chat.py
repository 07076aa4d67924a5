"""A browser chat on the bundled server: rooms, presence and history with wsops-client.js.

    python examples/chat/chat.py                # then open http://127.0.0.1:8765/ in two windows
    python examples/chat/chat.py --port 0       # any free port (the URL is printed)

One process, one port: the wsops server (``create_app``, memory broker, HS256 tokens) and, on
the same aiohttp app, the page (``/``, ``/chat.js``, ``/chat.css``) and a demo token endpoint
(``/token?user=NAME``). The page loads the client from the server's ``/static/wsops-client.js``
and shows a room's history, its live messages, who is present, and what the client does when
the connection drops: it reconnects, resumes, and reports a gap when messages were lost
(restart this script while a page is open to see one: the memory broker's history dies with it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import secrets
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
from aiohttp import web

from wsops.config import Settings
from wsops.server.app import create_app, make_runner

HERE = Path(__file__).resolve().parent
PAGES = {"/": "index.html", "/chat.js": "chat.js", "/chat.css": "chat.css"}
USER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")
ROOMS = ["chat:*"]  # what a token grants: every chat room, nothing else
TOKEN_TTL = 600.0  # seconds; the server closes a connection whose token expired (1008) and the
# page's token function fetches a fresh one for the reconnect

SECRET_KEY = web.AppKey("chat_jwt_secret", str)
TOKEN_TTL_KEY = web.AppKey("chat_token_ttl", float)


def chat_settings(host: str = "127.0.0.1", port: int = 8765, admin_port: int | None = None,
                  secret: str | None = None) -> Settings:
    """The server's settings: memory broker, HS256 with ``secret`` (random by default)."""
    return Settings(host=host, port=port, admin_port=admin_port, broker="memory",
                    jwt_secret=secret or secrets.token_urlsafe(32))


def sign_token(secret: str, user: str, ttl: float = TOKEN_TTL) -> str:
    now = int(time.time())
    claims = {"sub": user, "rooms": ROOMS, "iat": now, "exp": now + int(ttl)}
    return jwt.encode(claims, secret, algorithm="HS256")


async def page(request: web.Request) -> web.FileResponse:
    name = PAGES[request.path]
    # no-cache: edit index.html/chat.js and reload, without a stale copy.
    return web.FileResponse(HERE / name, headers={"Cache-Control": "no-cache"})


async def token(request: web.Request) -> web.Response:
    """DEMO ONLY: anyone may ask for a token of any user name, no password, no session.

    A real application signs tokens in its own authenticated backend (after its login) and
    never lets the browser choose the ``sub`` claim; the secret never leaves that backend.
    """
    user = request.query.get("user", "")
    if not USER_NAME.fullmatch(user):
        raise web.HTTPBadRequest(text="user: 1-32 characters of A-Z a-z 0-9 _ . -")
    ttl = request.app[TOKEN_TTL_KEY]
    body = {"token": sign_token(request.app[SECRET_KEY], user, ttl), "user": user,
            "expires_in": ttl}
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def build_app(settings: Settings, token_ttl: float = TOKEN_TTL) -> web.Application:
    """The bundled server's app plus the chat page and the demo token endpoint."""
    if not settings.jwt_secret:
        raise ValueError("the chat example signs HS256 tokens: settings.jwt_secret is required")
    app = create_app(settings)
    app[SECRET_KEY] = settings.jwt_secret
    app[TOKEN_TTL_KEY] = float(token_ttl)
    for path in PAGES:
        app.router.add_get(path, page)
    app.router.add_get("/token", token)
    # The client itself is GET /static/wsops-client.js, served by the server (create_app).
    return app


@contextlib.asynccontextmanager
async def serving(settings: Settings, token_ttl: float = TOKEN_TTL) -> AsyncIterator[str]:
    """Run the chat on ``settings.host:port`` (0: a free port); yields the page's URL."""
    app = build_app(settings, token_ttl)
    runner = make_runner(app, settings)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=settings.backlog)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    port = sockets[0].getsockname()[1] if sockets else settings.port
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
    try:
        yield f"http://{host}:{port}/"
    finally:
        await runner.cleanup()  # open connections are closed with 1001


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serving(settings) as url:
        print(f"wsops chat: open {url} (in two windows, with two names)", flush=True)
        print(f"  WebSocket {url.replace('http', 'ws', 1)}ws, client "
              f"{url}static/wsops-client.js", flush=True)
        if settings.admin_port is not None:
            print(f"  metrics   http://{settings.admin_host}:{settings.admin_port}/metrics",
                  flush=True)
        print("Ctrl-C stops it.", flush=True)
        await stop.wait()
    print("stopped", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default loopback)")
    parser.add_argument("--port", type=int, default=8765,
                        help="port of the page and of /ws (default 8765; 0 = any free port)")
    parser.add_argument("--admin-port", type=int, default=None,
                        help="also serve /metrics, /healthz, /readyz on this port (default off)")
    args = parser.parse_args(argv)
    asyncio.run(serve(chat_settings(args.host, args.port, args.admin_port)))


if __name__ == "__main__":
    main()
