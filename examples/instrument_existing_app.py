"""An aiohttp WebSocket app that knows nothing of wsops, instrumented with one call.

    python examples/instrument_existing_app.py --port 8080 --admin-port 9090
    # then: a WebSocket client on ws://127.0.0.1:8080/echo, and
    curl -s http://127.0.0.1:9090/metrics | grep wsops_

The handlers below are plain aiohttp; only ``main()`` mentions wsops.
"""

from __future__ import annotations

import argparse

from aiohttp import WSMsgType, web


async def echo(request: web.Request) -> web.WebSocketResponse:
    """Sends every text message back, upper-cased."""
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            if msg.data == "bye":
                await ws.close(code=4001, message=b"bye")
                break
            await ws.send_str(msg.data.upper())
    return ws


async def chat(request: web.Request) -> web.WebSocketResponse:
    """Broadcasts every text message to everyone connected to /chat."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    peers: set[web.WebSocketResponse] = request.app[PEERS]
    peers.add(ws)
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                for peer in list(peers):
                    await peer.send_str(msg.data)
    finally:
        peers.discard(ws)
    return ws


PEERS = web.AppKey("peers", set)


def make_app() -> web.Application:
    app = web.Application()
    app[PEERS] = set()
    app.router.add_get("/echo", echo)
    app.router.add_get("/chat", chat)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--admin-port", type=int, default=9090)
    args = parser.parse_args()

    import wsops

    app = make_app()
    wsops.instrument(app, admin_port=args.admin_port)  # /metrics, /healthz, /readyz there
    web.run_app(app, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
