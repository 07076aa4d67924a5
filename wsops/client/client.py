"""The asyncio client API: subscribe, publish, presence, history, events.

Requests are queued in a ``RequestBook`` and written by the run loop of ``ClientCore``; each
call awaits its reply with a timeout.
"""

from __future__ import annotations

import asyncio
import enum
from types import TracebackType
from typing import Any, Final

from wsops.client import wire
from wsops.client.errors import (
    ClientClosed,
    ClientError,
    ConnectTimeout,
    RequestTimeout,
    ServerError,
)
from wsops.client.events import ClientState, Message, PublishAck, SubscribeResult
from wsops.client.runloop import ClientCore
from wsops.client.stream import EventStream


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET: Final = _Unset.UNSET
Timeout = float | None | _Unset


class Client(ClientCore):
    """A wsops protocol v1 client that survives disconnects without losing or repeating messages.

    Subscriptions persist across reconnects: each room resumes after the last message delivered
    to the application, and a server that cannot replay (``recovered: false``) produces a
    ``Gap`` event, never a silent hole. Requests made while disconnected wait in a queue bounded
    by ``max_queue`` (``QueueFull`` beyond it) and go out in order on the next connection. A
    request that was sent but not answered when a connection dropped is sent again after the
    reconnect, so it is done at least once: a publish may then be stored twice.

    Events reach the application through the ``on_*`` callbacks (run inline, in order: keep
    them quick; an async callback is scheduled as a task) and through ``events()`` iterators.

    Parameters: ``token`` is sent as ``Authorization: Bearer``; pass a callable to fetch a fresh
    one for every connection attempt (tokens expire, reconnects do not). A 401/403 closes the
    client with ``AuthError``; every other failure, and every close code, is retried after
    ``uniform(0, min(backoff_cap, backoff_base * 2**attempt))`` seconds, the attempt counter
    resetting once a connection stayed open ``stable_after`` seconds; after a drain's 1012 close
    that carries a reconnect hint (``reconnect=MS`` in its reason), after ``uniform(0, MS)``
    instead (at most 60 s), so the clients of a drained node come back spread out.
    ``request_timeout`` is the default for each request (None waits forever),
    ``connect_timeout`` bounds each handshake, ``heartbeat`` makes aiohttp ping the server to
    notice a dead peer. ``on_lost`` receives ``SubscriptionLost`` when a room cannot be
    resubscribed. ``uniform`` replaces ``random.uniform`` (tests). A ``session`` passed in is
    used and left open.
    """

    async def connect(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Start the run loop and return once the first connection is open.

        Raises ``AuthError`` (401/403, with the server's reason), or ``ConnectTimeout`` (a
        ``TimeoutError`` saying why the last attempt failed) when no connection opened within
        ``timeout``; either way the client is closed. Other failures are retried with backoff.
        """
        self.start()
        assert self._first_open is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._first_open), timeout)
        except TimeoutError:
            refused = self.last_refusal
            await self.close()
            raise ConnectTimeout(timeout, refused) from None
        except BaseException:
            await self.close()
            raise

    async def __aenter__(self) -> Client:
        await self.connect(self._connect_timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def events(self, maxsize: int = 0) -> EventStream:
        """An async iterator of every room event from now on, until the client closes."""
        stream = self._dispatch.stream(maxsize)
        if self._closing:
            stream.end()
        return stream

    # -- requests --------------------------------------------------------------------------

    async def subscribe(
        self, room: str, *, presence: bool = False, timeout: Timeout = _UNSET  # noqa: ASYNC109
    ) -> SubscribeResult:
        """Follow ``room``: its messages flow until ``unsubscribe``, across reconnects.

        With ``presence=True`` the room's join/leave events are delivered too.
        """
        entry = self._rooms.get(room)
        if entry is not None:  # already followed, or its first subscribe is under way
            if not entry.ready.done():
                await self._wait(asyncio.shield(entry.ready), timeout)
            since = entry.tracker.since()
            if since is None:  # pragma: no cover - ready implies a position
                return entry.ready.result()
            return SubscribeResult(room, since[0], since[1], None)
        entry = self._rooms.add(room, presence)
        frame: dict[str, Any] = {"op": "subscribe", "room": room}
        if presence:
            frame["presence"] = True
        try:
            reply = await self._request(frame, timeout, owner=entry)
            if self._rooms.get(room) is not entry:
                raise ClientError(f"unsubscribed from {room!r}")
            return wire.subscribe_result(room, reply)
        except BaseException as exc:
            if not entry.tracker.positioned:
                err = exc if isinstance(exc, Exception) else ClientClosed("cancelled")
                self._rooms.discard(entry, err)
            raise

    async def unsubscribe(self, room: str, *, timeout: Timeout = _UNSET) -> None:  # noqa: ASYNC109
        """Stop following ``room``; its events stop at once, even before the server replies."""
        entry = self._rooms.get(room)
        if entry is not None:
            self._rooms.discard(entry, ClientError(f"unsubscribed from {room!r}"))
        if self._state is not ClientState.OPEN and not self._book.queued_for("subscribe", room):
            return  # the next connection will not subscribe it at all
        try:
            await self._request({"op": "unsubscribe", "room": room}, timeout)
        except ServerError as exc:
            if exc.code != "not_subscribed":
                raise

    async def publish(
        self,
        room: str,
        data: Any,
        *,
        timeout: Timeout = _UNSET,  # noqa: ASYNC109
    ) -> PublishAck:
        """Append ``data`` (any JSON value) to ``room``; returns where the server stored it.

        Raises ``QueueFull`` at once when ``max_queue`` requests already wait to be sent.
        """
        reply = await self._request({"op": "publish", "room": room, "data": data}, timeout)
        return wire.publish_ack(room, reply)

    async def presence(self, room: str, *, timeout: Timeout = _UNSET) -> list[str]:  # noqa: ASYNC109
        """The sorted ids of the users present in ``room``."""
        return wire.presence_users(await self._request({"op": "presence", "room": room}, timeout))

    async def history(
        self,
        room: str,
        limit: int = 100,
        *,
        timeout: Timeout = _UNSET,  # noqa: ASYNC109
    ) -> list[Message]:
        """Up to ``limit`` (1..1000) of the room's latest retained messages, oldest first."""
        frame = {"op": "history", "room": room, "limit": limit}
        return wire.history_messages(room, await self._request(frame, timeout))

    async def _request(
        self, frame: dict[str, Any], limit: Timeout, owner: object = None
    ) -> wire.Reply:
        if self._closing:
            raise self.error or ClientClosed("client is closed")
        pending = self._book.add(frame)
        pending.owner = owner
        self._wake.set()
        try:
            reply: wire.Reply = await self._wait(pending.future, limit)
        finally:
            self._book.withdraw(pending)
        if not reply.ok:
            raise reply.error()
        return reply

    async def _wait(self, awaitable: asyncio.Future[Any], limit: Timeout) -> Any:
        """Await a reply for at most ``limit`` seconds (the client's default when unset)."""
        seconds = self._request_timeout if isinstance(limit, _Unset) else limit
        ended = len(self.closes)
        try:
            async with asyncio.timeout(seconds):
                return await awaitable
        except TimeoutError:
            closed = self.closes[-1] if len(self.closes) > ended else None
            raise RequestTimeout(seconds, closed=closed, refused=self.last_refusal) from None
