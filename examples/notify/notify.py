"""An existing REST application that notifies its users in real time through wsops.

    python examples/notify/notify.py     # then open http://127.0.0.1:8080/ and change an order

Two servers, as in production: a wsops node (WebSocket on 8765, its server API on 9800, keys
in ``WSOPS_API_KEYS``) and the application, a small aiohttp "orders" service on 8080 that
knows nothing of WebSockets. When an order changes (``POST /orders/{id}``), the application
stores it and publishes the change to the room ``orders:{id}`` through the node's server API
(``wsops.ApiClient``); every browser watching that order sees it at once, without polling.
The page (served by the application, with ``wsops-client.js`` copied from the package, as an
application bundles it) asks the application for a token, then subscribes to the order's
room on the node.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import jwt
from aiohttp import web

import wsops
from wsops.config import Settings
from wsops.server.app import NODE_KEY, create_app, make_runner

HERE = Path(__file__).resolve().parent
CLIENT_JS = Path(wsops.__file__).resolve().parent / "static" / "wsops-client.js"
ORDER_ID = re.compile(r"[0-9]{1,12}")
STATUSES = ("placed", "packed", "shipped", "delivered", "cancelled")
USER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")

API_KEY = web.AppKey("notify_api", wsops.ApiClient)
CONFIG_KEY = web.AppKey("notify_config", "Config")


@dataclass
class Config:
    ws_url: str  # where browsers open their WebSocket (the wsops node)
    jwt_secret: str  # shared by the application (signs tokens) and the node (checks them)
    orders: dict[str, dict[str, object]]


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(HERE / "index.html", headers={"Cache-Control": "no-cache"})


async def client_js(request: web.Request) -> web.FileResponse:
    return web.FileResponse(CLIENT_JS, headers={"Content-Type": "text/javascript"})


async def config(request: web.Request) -> web.Response:
    """Where the page's WebSocket goes, and a token for it.

    DEMO ONLY: a token for any user name. A real application signs it for the user of its own
    session, after its login."""
    cfg = request.app[CONFIG_KEY]
    user = request.query.get("user", "guest")
    if not USER_NAME.fullmatch(user):
        raise web.HTTPBadRequest(text="user: 1-32 characters of A-Z a-z 0-9 _ . -")
    now = int(time.time())
    token = jwt.encode({"sub": user, "rooms": ["orders:*"], "iat": now, "exp": now + 600},
                       cfg.jwt_secret, algorithm="HS256")
    return web.json_response({"ws_url": cfg.ws_url, "token": token},
                             headers={"Cache-Control": "no-store"})


def _order_id(request: web.Request) -> str:
    order_id = request.match_info["id"]
    if not ORDER_ID.fullmatch(order_id):
        raise web.HTTPNotFound(text="no such order")
    return order_id


async def get_order(request: web.Request) -> web.Response:
    order_id = _order_id(request)
    order = request.app[CONFIG_KEY].orders.setdefault(
        order_id, {"id": order_id, "status": "placed", "updated_at": time.time()})
    return web.json_response(order)


async def update_order(request: web.Request) -> web.Response:
    """The application's own write: store the order, then tell whoever watches it."""
    order_id = _order_id(request)
    body = await request.json()
    status = body.get("status") if isinstance(body, dict) else None
    if status not in STATUSES:
        raise web.HTTPBadRequest(text=f"status: one of {', '.join(STATUSES)}")
    order = {"id": order_id, "status": status, "updated_at": time.time()}
    request.app[CONFIG_KEY].orders[order_id] = order
    ack = await request.app[API_KEY].publish(f"orders:{order_id}", order)
    return web.json_response({**order, "notified_at_offset": ack["offset"]})


def build_app(cfg: Config, api: wsops.ApiClient) -> web.Application:
    app = web.Application()
    app[CONFIG_KEY], app[API_KEY] = cfg, api
    app.router.add_get("/", page)
    app.router.add_get("/wsops-client.js", client_js)
    app.router.add_get("/config", config)
    app.router.add_get("/orders/{id}", get_order)
    app.router.add_post("/orders/{id}", update_order)
    return app


async def _site(app: web.Application, settings: Settings, port: int) -> tuple[web.AppRunner,
                                                                           int]:
    runner = make_runner(app, settings)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return runner, int(runner.addresses[0][1])


@contextlib.asynccontextmanager
async def serving(ws_port: int = 8765, api_port: int = 9800, app_port: int = 8080
                  ) -> AsyncIterator[dict[str, str]]:
    """The wsops node and the application (0: free ports); yields their URLs."""
    key = os.environ.setdefault("WSOPS_API_KEYS", secrets.token_urlsafe(32)).split(",")[0]
    secret = secrets.token_urlsafe(32)
    settings = Settings(host="127.0.0.1", port=ws_port, admin_port=None, api_port=api_port,
                        jwt_secret=secret)
    node_app = create_app(settings)
    node_runner, port = await _site(node_app, settings, ws_port)
    try:
        node = node_app[NODE_KEY]
        assert node.api is not None
        async with wsops.ApiClient(node.api.url, key) as api:
            cfg = Config(f"ws://127.0.0.1:{port}/ws", secret, {})
            app_runner, app_port = await _site(build_app(cfg, api), settings, app_port)
            try:
                yield {"app": f"http://127.0.0.1:{app_port}/", "ws": cfg.ws_url,
                       "api": node.api.url}
            finally:
                await app_runner.cleanup()
    finally:
        await node_runner.cleanup()


async def serve(ws_port: int, api_port: int, app_port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serving(ws_port, api_port, app_port) as urls:
        print(f"orders app: open {urls['app']} and change an order:", flush=True)
        print(f"  curl -X POST -d '{{\"status\": \"shipped\"}}' {urls['app']}orders/42",
              flush=True)
        print(f"  wsops node: {urls['ws']} (server API {urls['api']}). Ctrl-C stops.",
              flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--ws-port", type=int, default=8765, help="the node's WebSocket port")
    parser.add_argument("--api-port", type=int, default=9800, help="the node's server API port")
    parser.add_argument("--port", type=int, default=8080, help="the application's port")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.ws_port, args.api_port, args.port))


if __name__ == "__main__":
    main()
