"""The Redis broker's live feed: one pub/sub connection per node, one channel per watched room.

Every watched room keeps the position (offset, epoch) of the last message this node handed to
its hub; all the room's live local subscribers are at that position. That makes three checks
possible without ever leaving a silent gap:

- a message that does not continue the position (a lost message) makes the room resync;
- ``recover`` waits until the feed has caught up with the position it reads, so a new
  subscriber gets no message twice and misses none in between;
- after the connection was lost, every watched room is subscribed again and its position in
  Redis compared with the feed's: missed messages are fetched from the room's log and delivered
  in order, or, when the log no longer holds them (or the epoch changed), the room's local
  subscribers are closed with 4001 so each client resumes from its own position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from wsops.backoff import full_jitter
from wsops.server.broker import redis_scripts as lua
from wsops.server.broker.redis_feed_room import Feed, caught_up, fetch, positions, settled
from wsops.server.broker.redis_link import Link, Locator
from wsops.server.broker.resp import Endpoint, PubSubConnection, Push, RespError
from wsops.server.core.broker import Broker, BrokerUnavailable, Published
from wsops.server.core.protocol import Position, text_frame, tracestate_in
from wsops.server.stopping import cancel_all

log = logging.getLogger(__name__)


class Feeds:
    """Subscriptions, the reader and reconnection of the live feed (see the module doc)."""

    def __init__(
        self, broker: Broker, link: Link, keys: lua.Keys, locate: Locator, ttl_ms: int,
        name: str = "", *, sharded: bool = False, on_moved: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.sharded = sharded  # one master of a cluster: SSUBSCRIBE (redis_cluster_feed)
        self.on_moved = on_moved  # the server says a room's slot left this master
        self.broker = broker
        self.link = link
        self.keys = keys
        self.locate = locate
        self.ttl_ms = ttl_ms
        self.timeout = link.timeout
        self.feeds: dict[str, Feed] = {}
        self.conn: PubSubConnection | None = None
        self.live = False
        self._prefix_len = len(keys.channel_prefix)
        self._room_end = -len(keys.channel_suffix) or None
        self._subscribed: set[str] = set()  # SUBSCRIBE sent on this connection
        self._pending: dict[str, int] = {}  # SUBSCRIBE confirmations still to come
        self._confirmed = asyncio.Event()
        self._held: list[Push] | None = None  # messages held while rooms are checked
        self._tasks: set[asyncio.Task[Any]] = set()
        self._live = asyncio.Event()
        self.counts = {"received": 0, "duplicates": 0, "gaps": 0, "filled": 0, "resyncs": 0,
                       "reconnects": 0}
        # Rooms whose messages are not handed to the hub for now (their local subscribers are
        # about to resync: see redis_island).
        self.hold: Callable[[str], bool] = lambda room: False

    # -- the node's side ---------------------------------------------------------------------

    async def watch(self, room: str) -> None:
        feed = self.feeds.get(room)
        if feed is None:
            feed = self.feeds[room] = Feed(settled())
        if self.conn is None:
            raise BrokerUnavailable("broker down (no pub/sub connection)")
        if self.live and room not in self._subscribed:
            self._subscribe([room])
        await self.wait_ready(room)

    def unwatch(self, room: str) -> None:
        feed = self.feeds.pop(room, None)
        if feed is not None:
            feed.release()
        if self.live and room in self._subscribed and self.conn is not None:
            self._subscribed.discard(room)
            self.conn.unsubscribe([self.keys.channel(room)], self.sharded)

    def give(self, room: str) -> Feed | None:
        """Hand ``room``'s feed over to another shard's (its slot moved): unsubscribed here,
        its waiters and position kept for ``adopt``."""
        feed = self.feeds.pop(room, None)
        if feed is not None:
            feed.held = None
        if feed is not None and room in self._subscribed and self.conn is not None:
            self._subscribed.discard(room)
            self.conn.unsubscribe([self.keys.channel(room)], self.sharded)
        return feed

    def adopt(self, room: str, feed: Feed) -> None:
        """Take over a room's feed from another shard's: subscribe, then deliver what it
        missed from the log (or resync the room) before what arrives here."""
        self.feeds[room] = feed
        if feed.ready.done():
            feed.ready = settled()
        # Levelled once subscribed (``_baseline``), or with every room when this feed
        # (re)connects (``_resubscribe``); never positioned anew, which could skip messages.
        feed.held = [] if feed.last is not None else None
        if self.live and self.conn is not None:
            self._subscribe([room])

    def live_for(self, room: str) -> bool:
        return self.live

    def feed(self, room: str) -> Feed | None:
        return self.feeds.get(room)

    async def wait_live(self, within: float) -> bool:
        """Wait (at most ``within`` seconds) for the connection to be up and checked."""
        try:
            await asyncio.wait_for(self._live.wait(), within)
        except TimeoutError:
            return False
        return True

    async def wait_ready(self, room: str) -> None:
        """Until ``room``'s feed is live; raises BrokerUnavailable if it cannot be."""
        feed = self.feeds.get(room)
        if feed is None:
            return
        if self.conn is None:
            raise BrokerUnavailable("broker down (no pub/sub connection)")
        if not await self._wait(feed.ready):
            raise BrokerUnavailable("broker link lost")

    async def wait_caught_up(self, room: str, pos: Position) -> None:
        """Until the feed has handed the hub every message up to ``pos``."""
        feed = self.feeds.get(room)
        if feed is None or caught_up(feed.last, pos):
            return
        fut = settled()
        feed.waiters.append((pos, fut))
        if not await self._wait(fut):
            raise BrokerUnavailable("broker link lost")

    async def _wait(self, fut: asyncio.Future[bool]) -> bool:
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.timeout)
        except TimeoutError:
            raise BrokerUnavailable("broker too slow") from None

    # -- the connection ----------------------------------------------------------------------

    async def run(self) -> None:
        """Keep the connection up: reconnect with full-jitter backoff, then recheck rooms."""
        attempt = 0
        while True:
            try:
                endpoint = await self.locate()
                conn = await PubSubConnection.open(endpoint, self._on_push, self.timeout,
                                                   f"wsops-feed-{self.name}")
            except (OSError, RespError, TimeoutError) as exc:
                log.debug("redis pub/sub connect failed: %r", exc)
            except Exception:  # a bug must not end the feed for good
                log.exception("redis pub/sub connect failed")
            else:
                self.conn = conn
                dog = asyncio.create_task(self._watchdog(conn, endpoint))
                try:
                    await self._resubscribe(conn)
                    attempt = 0
                    await conn.closed
                    log.warning("redis pub/sub connection lost")
                except (BrokerUnavailable, OSError, TimeoutError) as exc:
                    log.warning("redis pub/sub resubscribe failed: %r", exc)
                except Exception:  # a bug must not end the feed for good
                    log.exception("redis pub/sub failed")
                finally:
                    dog.cancel()
                    conn.close()
                    self._disconnected()
                self.counts["reconnects"] += 1
            await asyncio.sleep(full_jitter(attempt, 0.05, 5.0))
            attempt += 1

    async def _watchdog(self, conn: PubSubConnection, endpoint: Endpoint) -> None:
        """PING an idle connection; one silent for 1.5x the timeout is dead (a paused Redis).
        Under Sentinel, also leave a master the sentinels no longer name (a failover that kept
        it running, now a replica)."""
        loop = asyncio.get_running_loop()
        interval = self.timeout / 2
        while conn.is_open:
            await asyncio.sleep(interval)
            if loop.time() - conn.last_rx > self.timeout * 1.5:
                log.warning("redis pub/sub silent for %.1fs: reconnecting", self.timeout * 1.5)
                conn.close()
                return
            conn.ping()
            if self.locate.follows:
                with contextlib.suppress(OSError, TimeoutError):  # keep it while none answers
                    now = await asyncio.wait_for(self.locate(), self.timeout)
                    if (now.host, now.port) != (endpoint.host, endpoint.port):
                        log.warning("redis master moved to %s:%d: reconnecting the feed",
                                    now.host, now.port)
                        conn.close()
                        return

    def _subscribe(self, rooms: list[str]) -> None:
        assert self.conn is not None
        for room in rooms:
            self._subscribed.add(room)
            self._pending[room] = self._pending.get(room, 0) + 1
        if rooms:
            self._confirmed.clear()
            self.conn.subscribe((self.keys.channel(room) for room in rooms), self.sharded)

    async def _resubscribe(self, conn: PubSubConnection) -> None:
        """Subscribe every watched room, then bring each feed level with Redis."""
        self._held = []
        self._confirmed.set()
        rooms = list(self.feeds)
        self._subscribe(rooms)
        await asyncio.wait_for(self._confirmed.wait(), self.timeout * 2)
        rooms = [room for room in rooms if room in self.feeds]
        tops = await positions(self.link, self.keys, self.ttl_ms, rooms)
        for room, now in zip(rooms, tops, strict=True):
            feed = self.feeds.get(room)
            if feed is not None:
                feed.held = None  # held with the others, in ``self._held``
                await self._level(room, feed, now)
        held, self._held = self._held, None
        self.live = True
        self._live.set()
        for push in held:
            self._on_push(push)
        extra = [room for room in self.feeds if room not in self._subscribed]
        stale = [room for room in self._subscribed if room not in self.feeds]
        self._subscribe(extra)
        if stale:
            self._subscribed.difference_update(stale)
            conn.unsubscribe((self.keys.channel(room) for room in stale), self.sharded)
        for room, feed in self.feeds.items():
            if room in extra:
                continue
            if feed.last is None:  # watched again while the rooms were checked
                self._start_baseline(room, feed)
            else:
                feed.release(True)

    async def _level(self, room: str, feed: Feed, now: Position) -> None:
        """Deliver what the feed missed while it was down, or resync the room."""
        last = feed.last
        plan = lua.after_outage(last, now)
        if plan is None:
            self._resync(room)
        elif plan != (0, 0) and last is not None:
            got = await fetch(self.link, self.keys, self.ttl_ms, room, last)
            if got is None:
                self._resync(room)
            else:
                now, msgs = got
                listener = self.broker.listener
                for msg in msgs:
                    if listener is not None and not self.hold(room):
                        listener.on_message(msg)
                self.counts["filled"] += len(msgs)
        feed.last = now

    def _resync(self, room: str) -> None:
        self.counts["resyncs"] += 1
        log.warning("room %r lost messages on this node: closing its subscribers (4001)", room)
        listener = self.broker.listener
        if listener is not None:
            listener.on_resync(room)

    def _disconnected(self) -> None:
        self.conn = None
        self.live = False
        self._live.clear()
        self._held = None
        self._subscribed.clear()
        self._pending.clear()
        self._confirmed.set()
        for feed in self.feeds.values():
            feed.release()
            feed.ready = settled()
            feed.held = None  # levelled with the others on the next connection

    # -- reading -----------------------------------------------------------------------------

    def _on_push(self, push: Push) -> None:
        if type(push) is list and len(push) == 3:
            kind = push[0]
            if kind == b"message" or kind == b"smessage":
                if self._held is not None:
                    self._held.append(push)
                else:
                    self._message(push[1], push[2])  # type: ignore[arg-type]
            elif kind == b"subscribe" or kind == b"ssubscribe":
                self._confirm(push[1])  # type: ignore[arg-type]
            elif kind == b"sunsubscribe":
                self._unsubscribed(push[1])  # type: ignore[arg-type]
        elif isinstance(push, RespError):
            log.warning("redis pub/sub error: %s", push)
            if str(push).startswith("MOVED") and self.on_moved is not None:
                self.on_moved()

    def _unsubscribed(self, channel: bytes) -> None:
        """One we did not ask for: the room's slot left this master (a resharding)."""
        room = channel[self._prefix_len:self._room_end].decode()
        if room in self._subscribed:
            self._subscribed.discard(room)
            log.warning("room %r left this shard's pub/sub: following the slot map", room)
            if self.on_moved is not None:
                self.on_moved()

    def _confirm(self, channel: bytes) -> None:
        room = channel[self._prefix_len:self._room_end].decode()
        left = self._pending.get(room, 0) - 1
        if left > 0:
            self._pending[room] = left
            return
        self._pending.pop(room, None)
        if not self._pending:
            self._confirmed.set()
        feed = self.feeds.get(room)
        if feed is not None and self.live and not feed.ready.done():
            self._start_baseline(room, feed)

    def _start_baseline(self, room: str, feed: Feed) -> None:
        task = asyncio.create_task(self._baseline(room, feed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _baseline(self, room: str, feed: Feed) -> None:
        """A newly watched room: where it stands now (messages from here on will arrive)."""
        conn = self.conn
        while True:
            if self.conn is not conn or self.feeds.get(room) is not feed:
                return
            try:
                (now,) = await positions(self.link, self.keys, self.ttl_ms, [room])
                break
            except BrokerUnavailable:
                await asyncio.sleep(self.timeout / 4)
            except Exception:  # waiters time out with ``unavailable``; never a silent gap
                log.exception("reading the position of room %r failed", room)
                return
        if self.conn is not conn or self.feeds.get(room) is not feed:
            return
        last = feed.last
        if feed.held is not None:  # adopted from another shard's feed: fill or resync
            try:
                await self._level(room, feed, now)
            except BrokerUnavailable:
                self._resync(room)
                feed.last = now
            held, feed.held = feed.held, None
            for channel, data in held:
                self._message(channel, data)
        elif last is None or (last.epoch == now.epoch and last.offset < now.offset):
            feed.last = now
        if not feed.ready.done():
            feed.ready.set_result(True)
        feed.wake()

    def _message(self, channel: bytes, data: bytes) -> None:
        room = channel[self._prefix_len:self._room_end].decode()
        feed = self.feeds.get(room)
        listener = self.broker.listener
        if feed is None or listener is None or not data:
            return
        if feed.held is not None:
            feed.held.append((channel, data))
            return
        first = data[0]
        if first == 74 or first == 76:  # J, L: presence events
            listener.on_presence(room, "join" if first == 74 else "leave", data[1:].decode())
            return
        try:
            h = lua.parse_message(data)
        except ValueError:
            log.warning("malformed message on %r", channel)
            return
        self.counts["received"] += 1
        verdict = lua.classify(feed.last, h.epoch, h.offset)
        if verdict == lua.DUPLICATE:
            self.counts["duplicates"] += 1
            return
        if verdict == lua.GAP:
            self.counts["gaps"] += 1
            self._resync(room)
        feed.last = Position(h.offset, h.epoch)
        if self.hold(room):
            return
        # The tracestate is not in the header (which nodes of every version parse alike): only
        # a traced message's fan-out span needs it, from the message's own JSON.
        listener.on_message(Published(
            room, h.offset, h.epoch, text_frame(h.payload), h.traceparent, h.accepted_at,
            tracestate=tracestate_in(h.payload) if h.traceparent is not None else None))
        if feed.waiters:
            feed.wake()

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        await cancel_all(list(self._tasks), 5.0, "redis feed task")
        for feed in self.feeds.values():
            feed.release()
