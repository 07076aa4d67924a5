"""The broadcast server a typical aiohttp user writes, as a baseline for ``bench/fanout.py``.

What it does: every connection to ``/ws`` joins one set; every text frame received from any
connection is sent, unchanged, with ``await ws.send_str(msg)`` to every *other* connection, one
after the other. No rooms, no protocol, no replies, default ``WebSocketResponse()`` settings
(no heartbeat; compression is on but only used if the client offers permessage-deflate, which the
benchmark clients do not). ``GET /healthz`` answers 200 once it listens. It runs on uvloop.

The loop iterates a snapshot (``tuple(subs)``) because the set may change while ``send_str``
awaits; a send to a socket that is closing is skipped. Those are the only two departures from
the shortest version, and both are what a user hits on the first day.

Run: ``python bench/peers/naive_aiohttp.py --port 8766``; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from aiohttp import WSMsgType, web

SUBS = web.AppKey("subs", set[web.WebSocketResponse])


async def handle_ws(request: web.Request) -> web.WebSocketResponse:
    subs = request.app[SUBS]
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    subs.add(ws)
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                for other in tuple(subs):
                    if other is not ws:
                        with contextlib.suppress(ConnectionError):
                            await other.send_str(msg.data)
    finally:
        subs.discard(ws)
    return ws


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def create_app() -> web.Application:
    app = web.Application()
    app[SUBS] = set()
    app.router.add_get("/ws", handle_ws)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(host: str, port: int) -> None:
    runner = web.AppRunner(create_app(), handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"naive aiohttp broadcast serving ws://{host}:{port}/ws", flush=True)
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
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--no-uvloop", action="store_true", help="use asyncio's own loop")
    args = parser.parse_args()
    if not args.no_uvloop:
        import uvloop

        uvloop.run(serve(args.host, args.port))
    else:
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
