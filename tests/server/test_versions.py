"""The protocol version is negotiated as a WebSocket subprotocol on a live server (PROTOCOL.md,
"Versions"): offered and answered, absent for clients from before the negotiation, refused
with a clear HTTP 400 when the client speaks no version this server does."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import ServerFactory
from wsops.client import Client


@pytest.mark.parametrize(("offer", "answer"), [
    (("wsops.v1",), "wsops.v1"),
    (("wsops.v2", "wsops.v1"), "wsops.v1"),
    ((), None),  # a client from before the negotiation: no header either way
])
async def test_the_version_is_answered_when_offered(server_factory: ServerFactory,
                                                    offer: tuple[str, ...],
                                                    answer: str | None) -> None:
    server = await server_factory()
    async with aiohttp.ClientSession() as s, s.ws_connect(server.url, protocols=offer) as ws:
        assert ws.protocol == answer
        await ws.send_str('{"op":"subscribe","id":1,"room":"r"}')
        assert (await ws.receive_json())["ok"] is True


async def test_a_client_offering_only_unknown_versions_gets_a_clear_400(
        server_factory: ServerFactory) -> None:
    server = await server_factory()
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
               "Sec-WebSocket-Protocol": "wsops.v2, wsops.v3"}
    http_url = server.url.replace("ws://", "http://")
    async with aiohttp.ClientSession() as s, s.get(http_url, headers=headers) as r:
        assert r.status == 400
        text = await r.text()
    assert "Unsupported protocol version" in text
    assert "'wsops.v2, wsops.v3'" in text and "this server speaks wsops.v1" in text


async def test_the_python_client_offers_its_version(server_factory: ServerFactory) -> None:
    server = await server_factory()
    async with Client(server.url) as client:
        await client.subscribe("r")
        assert client._ws is not None and client._ws.protocol == "wsops.v1"
