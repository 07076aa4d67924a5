"""Taking an upgraded connection away from aiohttp.

aiohttp parses and routes the upgrade request, runs the middlewares and the node's admission;
then ``hand_off`` writes the 101 itself and gives the transport to a lean ``asyncio.Protocol``
(``wsops.server.wsconn.WsConn``). aiohttp's per-request objects (its request handler and HTTP
parser, the request and its headers, the handler's task and coroutine frames, the
``WebSocketResponse`` and its reader and writer) are then garbage: ~18 KB less per idle
connection (docs/lean-core-design.md).

It relies on how aiohttp 3.14's ``RequestHandler`` behaves, which the canary test
(tests/server/test_handoff.py) holds against the installed aiohttp:
``set_parser(p)`` feeds ``p.feed_data`` the bytes that arrived after the request (a frame sent
in the same packet as the upgrade) and resumes reading; ``connection_lost(None)`` with its
``transport`` cleared forgets the connection (keep-alive timer, the server's connection list)
without closing the socket; the ``Handoff`` response makes ``finish_response`` write nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from typing import Any, Protocol

from aiohttp import hdrs, web

from wsops.server.core.protocol import UnsupportedSubprotocol, negotiate_subprotocol

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Adopter(Protocol):
    """The protocol object that takes over (``WsConn``)."""

    def feed_data(self, data: bytes) -> None: ...

    def feed_eof(self) -> None: ...


def accept_key(key: str) -> bytes:
    """``Sec-WebSocket-Accept`` for ``Sec-WebSocket-Key`` (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())


def check_upgrade(request: web.Request) -> tuple[str, str | None]:
    """The request's ``Sec-WebSocket-Key`` and the subprotocol to answer with, if it is a
    valid WebSocket upgrade (the rules of aiohttp's ``WebSocketResponse``) in a version this
    server speaks (``negotiate_subprotocol``); else an HTTP error to answer with."""
    headers = request.headers
    upgrade, connection = headers.get(hdrs.UPGRADE, ""), headers.get(hdrs.CONNECTION, "")
    if upgrade.lower().strip() != "websocket":
        raise web.HTTPBadRequest(text=f"Upgrade header is {upgrade!r}: only websocket is served")
    if "upgrade" not in connection.lower():
        raise web.HTTPBadRequest(text=f"Connection header {connection!r} lacks 'upgrade'")
    version = headers.get(hdrs.SEC_WEBSOCKET_VERSION, "")
    if version != "13":
        raise web.HTTPBadRequest(text=f"Unsupported version: {version}",
                                 headers={hdrs.SEC_WEBSOCKET_VERSION: "13"})
    key = headers.get(hdrs.SEC_WEBSOCKET_KEY, "")
    try:
        if not key or len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError(key)
    except (ValueError, binascii.Error):
        raise web.HTTPBadRequest(text=f"Handshake error: {key!r}") from None
    try:
        subprotocol = negotiate_subprotocol(headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL))
    except UnsupportedSubprotocol as exc:
        raise web.HTTPBadRequest(text=f"Unsupported protocol version: {exc}\n") from None
    return key, subprotocol


class Handoff(web.StreamResponse):
    """What the handler returns once the connection is handed off: aiohttp writes nothing."""

    def __init__(self) -> None:
        super().__init__(status=101)
        self.force_close()

    async def prepare(self, request: Any) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


def hand_off(request: web.Request, key: str, adopter: Adopter,
             subprotocol: str | None = None) -> asyncio.Transport:
    """Answer 101 (with ``subprotocol``, the negotiated version, when the client offered
    one) and give the request's transport to ``adopter``; returns the transport.

    Nothing awaits between the 101 and the switch, so no byte is lost: later reads go to the
    adopter's ``data_received``, bytes aiohttp already buffered to its ``feed_data``."""
    transport: Any = request.transport
    handler: Any = request.protocol
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the peer went away during the upgrade")
    chosen = b"" if subprotocol is None else (
        b"\r\nSec-WebSocket-Protocol: " + subprotocol.encode())
    transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_key(key)
                    + chosen + b"\r\n\r\n")
    transport.set_protocol(adopter)
    handler.set_parser(adopter)
    handler.transport = None  # aiohttp must not close the socket it no longer serves
    handler.connection_lost(None)
    return transport  # type: ignore[no-any-return]
