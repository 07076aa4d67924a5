"""A thin raw protocol client for server tests: send ops, await replies, collect events."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

import aiohttp


class RawClient:
    """Speaks protocol v1 directly over aiohttp, with no resume logic of its own."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession) -> None:
        self.ws = ws
        self.session = session
        self.ids = itertools.count(1)
        self.replies: dict[int | None, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.close_code: int | None = None
        self.closed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str, **kw: Any) -> RawClient:
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(url, compress=0, **kw)
        except BaseException:
            await session.close()
            raise
        return cls(ws, session)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            obj = json.loads(msg.data)
            if obj.get("op") == "reply":
                fut = self.replies.pop(obj.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(obj)
                    continue
            self.events.put_nowait(obj)
        self.close_code = self.ws.close_code
        self.closed.set()

    async def call(self, op: str, room: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        req_id = next(self.ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[req_id] = fut
        await self.ws.send_str(json.dumps({"op": op, "room": room, "id": req_id, **fields}))
        return await asyncio.wait_for(fut, timeout)

    async def send_raw(self, text: str) -> None:
        await self.ws.send_str(text)

    async def next_event(self, timeout: float = 5.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def messages(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The next ``n`` room messages (skipping presence events)."""
        out: list[dict[str, Any]] = []
        while len(out) < n:
            ev = await self.next_event(timeout)
            if ev["op"] == "message":
                out.append(ev)
        return out

    async def events_until(self, last: Callable[[dict[str, Any]], bool],
                           timeout: float = 5.0) -> list[dict[str, Any]]:
        """The next events up to and including the first that ``last`` accepts.

        To show something did not arrive, send a marker behind it on the same path (a message
        from the same publisher, a reply to this connection) and wait for the marker: whatever
        came before it is all that came, no sleep needed."""
        out: list[dict[str, Any]] = []
        while not out or not last(out[-1]):
            out.append(await self.next_event(timeout))
        return out

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await self.session.close()
