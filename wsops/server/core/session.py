"""One connection's protocol session: rate limit, parse, authorize and run each client op."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from wsops.server.core.broker import Broker, BrokerUnavailable
from wsops.server.core.hub import Conn, Hub
from wsops.server.core.identity import Identity
from wsops.server.core.observer import DebugTap, Publish, SessionObserver
from wsops.server.core.protocol import (
    Close,
    ErrorCode,
    Position,
    ProtocolError,
    Request,
    history_reply,
    parse,
    reply_error,
    reply_ok,
    unsubscribed_event,
)
from wsops.server.core.token_bucket import TokenBucket

log = logging.getLogger(__name__)
_perf = time.perf_counter
INVALID = "invalid"
"""The op a frame is counted under when it did not parse."""


async def wait_drained(conn: Conn, target: int, patience: float = 30.0) -> bool:
    """Wait until ``conn`` has at most ``target`` bytes queued; a peer that does not read for
    ``patience`` seconds is a slow consumer (closed with 4000). False if it closed."""
    deadline = time.monotonic() + patience
    while not conn.closing and conn.queued_bytes > target:
        if time.monotonic() > deadline:
            conn.close(Close.SLOW_CONSUMER, "slow consumer")
            break
        await asyncio.sleep(0.005)
    return not conn.closing


def _guess_id(text: str) -> int | None:
    """The request id of a frame we refuse before parsing it fully (best effort)."""
    try:
        value = json.loads(text).get("id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Session:
    """Serves the ops of one connection, in the order they arrive."""

    __slots__ = (
        "broker", "bucket", "conn", "debug", "hub", "identity", "kicked", "max_rooms",
        "observer", "present", "publish", "strikes",
    )

    def __init__(
        self,
        conn: Conn,
        identity: Identity,
        hub: Hub,
        broker: Broker,
        *,
        max_rooms: int,
        rate: float,
        burst: int,
        strikes: int,
        observer: SessionObserver | None = None,
        publish: Publish | None = None,
        debug: DebugTap | None = None,
    ) -> None:
        """``publish`` defaults to ``broker.publish`` (``observer``, when given, is told of
        each publish around it); ``debug``: the node's debug switch."""
        self.observer = observer
        self.debug = debug
        self.publish = publish or broker.publish
        self.conn = conn
        self.identity = identity
        self.hub = hub
        self.broker = broker
        self.max_rooms = max_rooms
        self.bucket = TokenBucket(rate, burst, time.monotonic())
        self.strikes = strikes
        self.present: set[str] = set()  # rooms where this connection counts in presence
        # Server-side unsubscribes of rooms whose subscribe was under way: room -> reason,
        # applied once it is done (None until there is one: most sessions never have any).
        self.kicked: dict[str, str] | None = None

    async def handle(self, text: str) -> None:
        """Handle one text frame; every outcome is a reply or a documented close."""
        conn = self.conn
        if not self.bucket.allow(time.monotonic()):
            if self.observer is not None:
                self.observer.rate_limited()
            if self.bucket.strikes >= self.strikes:
                conn.close(Close.POLICY, "rate limit exceeded")
                return
            conn.send_text(
                reply_error(_guess_id(text), ErrorCode.RATE_LIMITED, "rate limit exceeded")
            )
            return
        started = _perf()
        op = INVALID
        code: str | None = None
        debug, watched = self.debug, False
        try:
            req = parse(text)
            op = req.op
            if debug is not None and debug.targets.active:  # debug or tap: one check when off
                watched = debug.targets.watches(self.identity.user, conn.id, req.room)
                if watched:
                    debug.received(conn.id, self.identity.user, text, req.room, op)
            if not self.identity.may_use(req.room):
                raise ProtocolError(
                    ErrorCode.FORBIDDEN, f"token does not grant room {req.room!r}", req.id
                )
            if (watched and op == "publish" and debug is not None and debug.publish is not None
                    and debug.targets.debugs(self.identity.user, conn.id, req.room)):
                await self._op_publish(req, debug.publish)  # traced whatever the ratio
            else:
                await _OPS[op](self, req)
        except ProtocolError as exc:
            code = exc.code
            conn.send_text(reply_error(exc.req_id, code, exc.message))
            if (op == INVALID and debug is not None and debug.targets.active
                    and debug.targets.watches(self.identity.user, conn.id)):
                debug.received(conn.id, self.identity.user, text, None, INVALID)
        except BrokerUnavailable as exc:
            code = ErrorCode.UNAVAILABLE
            conn.send_text(reply_error(_guess_id(text), code, str(exc)))
        except Exception:
            log.exception("internal error serving a frame")
            code = ErrorCode.INTERNAL
            conn.send_text(reply_error(_guess_id(text), code, "internal error"))
        if self.observer is not None:
            self.observer.served(op, started, code)

    async def _op_publish(self, req: Request, publish: Publish | None = None) -> None:
        """``publish``: the debug switch's (observed and traced by itself)."""
        # The sender is the connection's user, whatever the frame says: clients cannot forge it.
        observer, user = self.observer, self.identity.user
        if observer is None or publish is not None:
            msg = await (publish or self.publish)(req.room, req.data, req.traceparent, user,
                                                  req.tracestate)
        else:  # observed here, not by a wrapping coroutine
            if req.traceparent is None and observer.quiet > 0:  # publish_started, inlined
                observer.quiet -= 1
                handle = None
            else:
                handle = observer.publish_started(req)
            started = _perf()
            try:
                msg = await self.publish(req.room, req.data, req.traceparent, user,
                                         req.tracestate)
            except Exception as exc:
                observer.publish_failed(handle, exc)
                raise
            observer.publish_stored(handle, msg, started, True)
        self.hub.flow.published(req.room, len(req.data), self.identity.user)
        if msg.local:  # island mode: delivered on this node, stored in Redis once it is back
            self.conn.send_text(reply_ok(req.id, room=req.room, offset=msg.offset,
                                         epoch=msg.epoch, local=True))
        else:
            self.conn.send_text(reply_ok(req.id, room=req.room, offset=msg.offset,
                                         epoch=msg.epoch))

    async def _op_subscribe(self, req: Request) -> None:
        conn, room = self.conn, req.room
        if room in conn.rooms:
            rec = await self.broker.recover(room, None)
            conn.send_text(
                reply_ok(req.id, room=room, offset=rec.position.offset, epoch=rec.position.epoch)
            )
            return
        if len(conn.rooms) >= self.max_rooms:
            raise ProtocolError(
                ErrorCode.TOO_MANY_ROOMS, f"at most {self.max_rooms} rooms per connection", req.id
            )
        if self.kicked:  # one left by an earlier attempt that failed is not for this one
            self.kicked.pop(room, None)
        # Join as a syncing subscriber first, so nothing published while we read history is
        # missed: it is held and delivered after the replay, without duplicates.
        if self.hub.join_room(conn, room, req.presence):
            try:
                await self.broker.watch(room)
            except Exception:
                if self.hub.leave_room(conn, room):
                    await self.broker.unwatch(room)
                raise
        try:
            rec = await self.broker.recover(room, req.since, conn.limit // 2)
        except Exception:
            if self.hub.leave_room(conn, room):
                await self.broker.unwatch(room)
            raise
        if conn.closing:
            return
        pos = rec.position
        fields: dict[str, Any] = {"room": room, "offset": pos.offset, "epoch": pos.epoch}
        if rec.recovered is not None:
            fields["recovered"] = rec.recovered
            if self.observer is not None:
                self.observer.resumed(rec.recovered)
        conn.send_text(reply_ok(req.id, **fields))
        last, epoch = pos.offset, pos.epoch
        while rec.messages:
            # Page by page (the broker's budget is half the send queue): a resume never holds
            # more of the room's history than that here.
            if not await self._replay(rec.messages):
                return
            last, epoch = rec.messages[-1].offset, rec.messages[-1].epoch
            if not rec.more:
                break
            rec = await self.broker.recover(room, Position(last, epoch), conn.limit // 2)
            if not rec.recovered:  # trimmed or reset meanwhile: the client resumes again
                conn.close(Close.RESYNC, "resync: history moved on during the replay")
                return
        self.hub.finish_sync(conn, room, last, epoch)
        self.present.add(room)
        await self.broker.join(room, self.identity.user)
        if self.kicked and room in self.kicked:  # unsubscribed by the server meanwhile
            left = self.unsubscribed(room, self.kicked.pop(room))
            if left is not None:
                await left

    async def _replay(self, messages: list[Any]) -> bool:
        """Queue a resume's messages under backpressure: wait for the socket to drain rather
        than overflow the send queue (which would close with 4000, and the client would resume
        into the same overflow again). False if the connection closed meanwhile."""
        conn = self.conn
        high = conn.limit // 2
        for msg in messages:
            if conn.queued_bytes > high:
                conn.flush()
                if not await wait_drained(conn, high // 2):
                    return False
            if conn.closing:
                return False
            conn.push(msg.frame)
        return not conn.closing

    async def _op_unsubscribe(self, req: Request) -> None:
        conn, room = self.conn, req.room
        if room not in conn.rooms:
            raise ProtocolError(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {room!r}", req.id)
        await self.leave(room)
        conn.send_text(reply_ok(req.id, room=room))

    async def leave(self, room: str) -> None:
        self.hub.leave_room(self.conn, room)
        present = room in self.present
        self.present.discard(room)
        await self._left(room, present)

    async def _left(self, room: str, present: bool) -> None:
        # Whether the room is empty here is asked now, not when the connection left it: run
        # later (a server-side unsubscribe), another connection may have joined meanwhile,
        # and unwatching would leave it without the room's feed.
        if room not in self.hub.rooms:
            await self.broker.unwatch(room)
        if present:
            await self.broker.leave(room, self.identity.user)

    def unsubscribed(self, room: str, reason: str) -> Coroutine[Any, Any, None] | None:
        """Taken out of ``room`` by the server: told now, and sent none of its messages after
        that; returns the broker's side (unwatch, presence leave) to run. None when the
        connection is not in the room, or its subscribe is still under way (see
        ``unsubscribe_pending``), or it is closing."""
        if room not in self.present or self.conn.closing:
            return None
        self.conn.send_text(unsubscribed_event(room, reason))
        self.hub.leave_room(self.conn, room)
        self.present.discard(room)
        return self._left(room, True)

    def unsubscribe_pending(self, room: str, reason: str) -> bool:
        """A server-side unsubscribe of a room whose subscribe is under way (a replay can take
        a while): applied when it is done. False when the connection is not joining it."""
        if room in self.present or room not in self.conn.rooms or self.conn.closing:
            return False
        if self.kicked is None:
            self.kicked = {}
        self.kicked[room] = reason  # bounded: a room of conn.rooms (--max-rooms)
        return True

    async def _op_presence(self, req: Request) -> None:
        users = await self.broker.presence(req.room)
        self.conn.send_text(reply_ok(req.id, room=req.room, users=users))

    async def _op_history(self, req: Request) -> None:
        # One reply frame must fit the send queue: the newest messages that fit in half of it.
        page = await self.broker.history(req.room, req.limit, self.conn.limit // 2)
        self.conn.send_payload(
            history_reply(req.id, req.room, page.position, page.items, page.truncated))

    async def close(self) -> None:
        """The connection is gone: leave every room (presence leave, unwatch empty rooms)."""
        for room in list(self.conn.rooms):
            try:
                await self.leave(room)
            except Exception:
                log.exception("leaving room %r after disconnect", room)


_OPS: dict[str, Callable[[Session, Request], Awaitable[None]]] = {
    "publish": Session._op_publish,
    "subscribe": Session._op_subscribe,
    "unsubscribe": Session._op_unsubscribe,
    "presence": Session._op_presence,
    "history": Session._op_history,
}
"""Every op ``protocol.parse`` accepts, and the method that serves it."""
