"""A plain aiohttp WebSocket app with planted leaks, instrumented with ``wsops.instrument``.

    python -m tests.ops.leaky_app --port 8080 --admin-port 9090

``/ws`` answers every text message and keeps a copy of it forever (the message leak, on the
line marked ``PLANTED``); with ``--keep-closed`` it also keeps every closed WebSocket (closed
connections still referenced). ``/churn`` is the same handler without the leaks.
"""

from __future__ import annotations

import argparse

from aiohttp import WSMsgType, web

import wsops

RECEIVED: list[str] = []
CLOSED: list[web.WebSocketResponse] = []
KEEP_CLOSED = web.AppKey("keep_closed", bool)


async def leaky(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            RECEIVED.append(msg.data * 16)  # PLANTED: a copy of every message, kept forever
            await ws.send_str("ok")
    if request.app[KEEP_CLOSED]:
        CLOSED.append(ws)
    return ws


async def clean(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data.upper())
    return ws


def make_app(keep_closed: bool) -> web.Application:
    app = web.Application()
    app[KEEP_CLOSED] = keep_closed
    app.router.add_get("/ws", leaky)
    app.router.add_get("/churn", clean)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--admin-port", type=int, required=True)
    parser.add_argument("--keep-closed", action="store_true")
    args = parser.parse_args()
    app = make_app(args.keep_closed)
    wsops.instrument(app, admin_port=args.admin_port, tracing=False)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
