"""Reply orderings a real server rarely produces, from a scripted WebSocket peer.

The peer is a real aiohttp WebSocket server whose replies the test writes by hand, so the order
of frames is exact (the same scenarios of wsops-client.js are in tests/client_js/unit.test.mjs).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.support.ports import serving
from wsops.client import Client, Message, ServerError, SubscriptionLost


@dataclass
class Peer:
    url: str = ""
    frames: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    sockets: list[web.WebSocketResponse] = field(default_factory=list)

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.frames.get(), 5)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.sockets[-1].send_str(json.dumps(frame))


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        p.sockets.append(ws)
        async for msg in ws:
            await p.frames.put(json.loads(msg.data))
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    async with serving(app) as port:
        p.url = f"ws://127.0.0.1:{port}/ws"
        yield p


async def test_a_stale_subscribe_reply_leaves_the_room_subscribed_again_alone(peer: Peer) -> None:
    """subscribe, unsubscribe, subscribe: the first request's refusal must not drop the second
    entry (it did: replies were matched by room name, and the room then lost every message)."""
    async with Client(peer.url, request_timeout=5) as client:
        events = client.events()
        first = asyncio.create_task(client.subscribe("r"))
        s1 = await peer.next()
        unsubscribing = asyncio.create_task(client.unsubscribe("r"))
        u = await peer.next()
        second = asyncio.create_task(client.subscribe("r"))
        s2 = await peer.next()
        assert [s1["op"], u["op"], s2["op"]] == ["subscribe", "unsubscribe", "subscribe"]
        await peer.send({"op": "reply", "id": s1["id"], "ok": False,
                         "error": {"code": "rate_limited", "message": "slow down"}})
        await peer.send({"op": "reply", "id": u["id"], "ok": True, "room": "r"})
        await peer.send({"op": "reply", "id": s2["id"], "ok": True, "room": "r", "offset": 5,
                         "epoch": "e"})
        with pytest.raises(ServerError):
            await first
        await unsubscribing
        assert (await second).offset == 5
        assert client.rooms == ["r"]
        await peer.send({"op": "message", "room": "r", "offset": 6, "epoch": "e", "data": 1,
                         "ts": 1})
        event = await asyncio.wait_for(anext(events), 5)
        assert isinstance(event, Message) and event.offset == 6


async def test_a_stale_unsubscribed_event_leaves_a_subscribe_under_way_alone(peer: Peer) -> None:
    """The server's 'unsubscribed' of an earlier subscription arrives while the app's new
    subscribe of the room is unanswered: that subscribe goes on (the server sends an
    unsubscribed event only after the subscribe's reply), and a later one does drop it."""
    async with Client(peer.url, request_timeout=5) as client:
        events = client.events()
        subscribing = asyncio.create_task(client.subscribe("r"))
        s = await peer.next()
        await peer.send({"op": "unsubscribed", "room": "r", "reason": "an earlier one"})
        await peer.send({"op": "reply", "id": s["id"], "ok": True, "room": "r", "offset": 5,
                         "epoch": "e"})
        assert (await subscribing).offset == 5 and client.rooms == ["r"]
        await peer.send({"op": "unsubscribed", "room": "r", "reason": "muted"})
        event = await asyncio.wait_for(anext(events), 5)
        assert event == SubscriptionLost("r", "unsubscribed", "muted")
        assert client.rooms == []
