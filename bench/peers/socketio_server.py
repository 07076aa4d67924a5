"""The broadcast server a typical python-socketio user writes, a peer of ``bench/peers.py``.

``socketio.AsyncServer(async_mode="aiohttp", transports=["websocket"])`` attached to an aiohttp
application, on uvloop: every client connects to the default namespace; a ``publish`` event from
any client is re-emitted as a ``message`` event, with the same argument, to every *other*
client: ``await sio.emit("message", data, skip_sid=sid)`` (``socket.broadcast.emit`` in the
JavaScript API). No rooms, no acknowledgements, default Engine.IO settings (ping every 25 s;
no compression is negotiated on the WebSocket). ``GET /healthz`` answers 200 once it listens.

Clients use Engine.IO v4's WebSocket transport directly:
``ws://HOST:PORT/socket.io/?EIO=4&transport=websocket`` (``bench/wsload.py``'s
``SocketIOClient`` speaks it).

Run: ``python bench/peers/socketio_server.py --port 8768``; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from importlib.metadata import version
from typing import Any

import socketio  # type: ignore[import-untyped]
from aiohttp import web

sio = socketio.AsyncServer(async_mode="aiohttp", transports=["websocket"])


@sio.on("publish")
async def publish(sid: str, data: Any) -> None:
    await sio.emit("message", data, skip_sid=sid)


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def create_app() -> web.Application:
    app = web.Application()
    sio.attach(app)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(host: str, port: int) -> None:
    runner = web.AppRunner(create_app(), handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"python-socketio {version('python-socketio')} broadcast serving "
          f"ws://{host}:{port}/socket.io/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8768)
    parser.add_argument("--no-uvloop", action="store_true", help="use asyncio's own loop")
    args = parser.parse_args()
    if not args.no_uvloop:
        import uvloop

        uvloop.run(serve(args.host, args.port))
    else:
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
