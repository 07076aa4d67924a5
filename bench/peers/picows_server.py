"""The broadcast server a picows user writes, following picows' own example, a peer of
``bench/peers.py``.

picows' core API (``ws_create_server`` + a ``WSListener`` per connection, callbacks with no
``await`` on the data path), shaped like ``examples/broadcast_server.py`` in the picows
repository: the server keeps a set of weak references to the connected listeners (added in
``on_ws_connected``, removed in ``on_ws_disconnected``), and a CLOSE frame is echoed and the
connection disconnected, as in the example. What the example leaves as "custom protocol logic"
is the broadcast: every TEXT frame received is sent, unchanged, with
``client.transport.send(WSMsgType.TEXT, payload)`` to every *other* connected client, the
payload being the frame's zero-copy memoryview (as in picows' README echo server; ``send``
copies it into each transport's buffer before the callback returns).

Default ``ws_create_server`` settings: no permessage-deflate (picows has none), no auto-ping
(picows' default; auto-pong on), 16 KiB initial read buffer per connection, aiofastnet for the
sockets when it is installed (a picows dependency, so on by default). Frames are not
reassembled: each frame of the benchmark is a whole message, as in the example. ``GET
/healthz`` answers 200 (the listener factory returns a plain response, which picows sends
with ``Connection: close``); any other path than ``/ws`` gets 404. It runs on uvloop, like the
other Python peers.

Run: ``python bench/peers/picows_server.py --port 8769``; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from importlib.metadata import version
from weakref import ReferenceType, ref

from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)


class ServerClientListener(WSListener):
    def __init__(self, all_clients: set[ReferenceType[ServerClientListener]]) -> None:
        self.transport: WSTransport | None = None
        self._all_clients = all_clients

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self._all_clients.add(ref(self))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._all_clients.discard(ref(self))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            payload = frame.get_payload_as_memoryview()
            for client_ref in self._all_clients:
                client = client_ref()
                if client is not None and client is not self and client.transport is not None:
                    client.transport.send(WSMsgType.TEXT, payload)
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()


class Server:
    def __init__(self) -> None:
        self._all_clients: set[ReferenceType[ServerClientListener]] = set()

    def listener_factory(
        self, request: WSUpgradeRequest
    ) -> ServerClientListener | WSUpgradeResponseWithListener | None:
        if request.path == b"/ws":
            return ServerClientListener(self._all_clients)
        if request.path == b"/healthz":
            return WSUpgradeResponseWithListener(
                WSUpgradeResponse.create_ok_response(b"ok"), None)
        return None  # 404

    def disconnect_all(self) -> None:
        for client_ref in list(self._all_clients):
            client = client_ref()
            if client is not None and client.transport is not None:
                client.transport.disconnect(graceful=False)


async def serve(host: str, port: int) -> None:
    server = Server()
    asyncio_server = await ws_create_server(server.listener_factory, host, port)
    print(f"picows {version('picows')} broadcast serving ws://{host}:{port}/ws", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        asyncio_server.close()
        server.disconnect_all()
        await asyncio.wait_for(asyncio_server.wait_closed(), 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8769)
    parser.add_argument("--no-uvloop", action="store_true", help="use asyncio's own loop")
    args = parser.parse_args()
    if not args.no_uvloop:
        import uvloop

        uvloop.run(serve(args.host, args.port))
    else:
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
