"""The fleet broker: rooms' offsets, history, presence and fan-out shared through Redis.

``--broker redis://HOST:PORT/DB``, ``redis+sentinel://HOST:PORT[,...]/MASTER_NAME`` or
``redis+cluster://HOST:PORT[,...]`` (``redis_url``; optional
``?prefix=wsops&heartbeat=2&timeout=2``). Every node that runs it agrees on each room's offsets
and epoch, so a client resumes on any node. On a Redis Cluster each room lives on the shard of
its slot (``redis_cluster``, ``redis_cluster_feed``); a shard that is down makes only its own
rooms ``unavailable``.

- Publish is one Lua script (``redis_scripts.PUBLISH``): take the room's next offset, append the
  message to the room's stream (bounded, with a TTL refreshed on publish) and PUBLISH it on the
  room's channel, atomically, so every node sees the same offsets in the same order.
- A node subscribes to a room's channel while it has local subscribers (``redis_feed``) and
  hands each message to its hub already encoded.
- Presence, heartbeats and the node registry live in ``redis_fleet``.

Faults (documented in PROTOCOL.md and README): offsets come from Redis, so while Redis is
unreachable the node refuses what needs the fleet (subscribe, presence, history fail with
``unavailable``) and reports itself down (``wsops_broker_up`` 0, ``/readyz`` 503) while it keeps
its connections; publishes go on locally in island mode (``redis_island``) and are stored in
Redis once it is back (not with ``ack="replica"``: then a publish is acknowledged only once a
replica has it too, ``WAIT``, and refused while Redis is down). After reconnecting, the feed
fetches what its rooms missed from their logs, or closes the rooms' subscribers with 4001 so
they resume with ``since`` (``recovered`` true or false, never a silent gap).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from typing import Any

from wsops.server.broker import redis_scripts as lua
from wsops.server.broker.redis_cluster import Shards
from wsops.server.broker.redis_cluster_feed import ClusterFeeds
from wsops.server.broker.redis_feed import Feeds
from wsops.server.broker.redis_feed_room import rows_to_messages
from wsops.server.broker.redis_fleet import Fleet, list_nodes, read_registry
from wsops.server.broker.redis_island import Islands
from wsops.server.broker.redis_link import Link, Links, Locator, OneLink
from wsops.server.broker.redis_revoked import read_revocations, store_revocation
from wsops.server.broker.redis_store import NotStored, RoomLogs, Unreplicated, store
from wsops.server.broker.redis_url import ACKS, parse_broker_url
from wsops.server.core.broker import (
    Broker,
    BrokerUnavailable,
    HistoryPage,
    Published,
    Recovery,
)
from wsops.server.core.history import new_epoch
from wsops.server.core.protocol import Position, history_items
from wsops.server.stopping import cancel_all

__all__ = ["RedisBroker", "list_nodes"]

log = logging.getLogger(__name__)


def _node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class RedisBroker(Broker):
    """Shares rooms across nodes through one Redis (see the module doc)."""

    name = "redis"

    def __init__(
        self,
        url: str,
        history_size: int = 1000,
        history_ttl: float = 300.0,
        *,
        node_id: str | None = None,
        heartbeat: float | None = None,
        timeout: float | None = None,
        island_bytes: int = 64 << 20,
        ack: str = "master",
    ) -> None:
        super().__init__()
        if ack not in ACKS:
            raise ValueError(f"broker ack must be one of {', '.join(ACKS)}, not {ack!r}")
        target, opts = parse_broker_url(url)
        self.url = url
        self.shown = target.shown
        self.ack = ack
        self.history_size = history_size
        self.ttl_ms = max(1, int(history_ttl * 1000))
        self.timeout = timeout if timeout is not None else opts.timeout
        self.node_id = node_id or _node_id()
        self.keys = lua.Keys(opts.prefix, cluster=target.cluster is not None)
        self.logs = RoomLogs(self.keys, history_size, self.ttl_ms, self.timeout, ack)
        self.shards: Shards | None = None
        self.feeds: Feeds | ClusterFeeds
        self.links: Links
        if target.cluster is not None:
            self.locator: Locator | None = None
            self.shards = self.links = Shards(target, self.timeout, self.keys)
            self.feeds = ClusterFeeds(self, self.shards, self.keys, self.ttl_ms, self.node_id)
        else:
            self.locator = Locator(target, self.timeout)
            link = Link(target, self.timeout, self.locator)
            self.links = OneLink(link)
            self.feeds = Feeds(self, link, self.keys, self.locator, self.ttl_ms, self.node_id)
        self.fleet = Fleet(self.links, self.keys, self.node_id,
                           heartbeat if heartbeat is not None else opts.heartbeat)
        self._tasks: list[asyncio.Task[None]] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self.islands = Islands(max_pending=10 * history_size, max_bytes=island_bytes)
        self.feeds.hold = self.islands.has
        self._published = 0
        self._refused = 0
        self._unreplicated = 0
        self._settling = asyncio.Lock()

    @property
    def link(self) -> Link:
        """The link to the registry's Redis (the only one but on a cluster)."""
        return self.links.registry()

    # The node's leak check looks for per-room state under these names.
    @property
    def _watched(self) -> dict[str, Any]:
        return self.feeds.feeds

    @property
    def _presence(self) -> dict[str, Any]:
        return self.fleet.presence

    @property
    def healthy(self) -> bool:
        return self._redis_up() and self.feeds.live and self.fleet.schema_conflict is None

    @property
    def problem(self) -> str | None:
        return self.fleet.schema_conflict

    def _redis_up(self) -> bool:
        links = self.links.all()
        return bool(links) and all(link.up for link in links)

    def _room_link(self, room: str) -> Link | None:
        """The link serving ``room``, None when no master is known for its slot."""
        try:
            return self.links.room(room)
        except BrokerUnavailable:
            return None

    async def start(self) -> None:
        """Connect in the background; wait (bounded) for the first heartbeat and the feed, and
        start degraded (unhealthy, retrying) when Redis is not there yet."""
        self.fleet.info = self.node_info
        if self.shards is not None:
            await self.shards.refresh()
        await self.fleet.beat()
        self._heartbeat = asyncio.create_task(self.fleet.heartbeat_loop())
        self._tasks = [self._heartbeat, asyncio.create_task(self.feeds.run()),
                       asyncio.create_task(self.fleet.flush_loop()),
                       asyncio.create_task(self._island_loop())]
        if not await self.feeds.wait_live(self.timeout) or not self.healthy:
            log.warning("redis broker %s not reachable yet: starting degraded", self.shown)

    async def close(self) -> None:
        """Write the last presence changes, leave the registry, stop (all bounded)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self.islands.rooms and self.healthy:
            with contextlib.suppress(BrokerUnavailable, TimeoutError):
                await asyncio.wait_for(self.settle(), self.timeout * 4)
        if self.islands.pending:
            log.warning("stopping with %d island messages not stored in Redis",
                        self.islands.pending)
        if self.fleet.registry_up():
            try:
                await self.fleet.flushed(self.timeout)
                await asyncio.wait_for(self.fleet.leave_fleet(), self.timeout * 2)
            except (BrokerUnavailable, TimeoutError) as exc:
                log.warning("leaving the fleet registry failed: %r", exc)
        await cancel_all(self._tasks, self.timeout * 2, "redis broker task")
        self._tasks.clear()
        await self.feeds.close()
        with contextlib.suppress(Exception):
            await self.links.close()
        if self.locator is not None:
            with contextlib.suppress(Exception):
                await self.locator.close()

    # -- messages ----------------------------------------------------------------------------

    async def publish(
        self, room: str, data: bytes, traceparent: str | None = None, sender: str | None = None,
        tracestate: str | None = None,
    ) -> Published:
        if self.fleet.schema_conflict is not None:  # nothing written in a layout not ours
            raise BrokerUnavailable(self.fleet.schema_conflict)
        accepted_at = time.time()
        ts = int(accepted_at * 1000)
        link = self._room_link(room)
        up = link is not None and link.up
        if self.ack == "replica" and not up:
            raise BrokerUnavailable("broker down: publishes wait for a replica (ack replica)")
        if not up or self.islands.has(room):  # behind earlier island messages
            feed = self.feeds.feed(room)
            after = feed.last.offset if feed is not None and feed.last is not None else 0
            msg = self.islands.publish(room, data, ts, accepted_at, traceparent, after, sender,
                                       tracestate)
            if self.listener is not None:
                self.listener.on_message(msg)
            return msg
        return await self._store(room, data, ts, accepted_at, traceparent, sender, tracestate,
                                 link)

    async def _store(self, room: str, data: bytes, ts: int, accepted_at: float,
                     traceparent: str | None, sender: str | None, tracestate: str | None,
                     link: Link | None = None) -> Published:
        try:
            msg = await store(self.logs, link or self.links.room(room), room, data, ts,
                              accepted_at, traceparent, sender, tracestate)
        except NotStored:
            self._refused += 1
            raise
        except Unreplicated:
            self._unreplicated += 1
            raise
        self._published += 1
        return msg

    async def _island_loop(self) -> None:
        """Once Redis answers again, hand it what was published meanwhile."""
        every = min(0.1, self.timeout / 4)
        while True:
            await asyncio.sleep(every)
            if self.islands.rooms:
                try:
                    await self.settle()
                except BrokerUnavailable:
                    pass
                except Exception:  # a bug must not stop forwarding for good
                    log.exception("storing island messages failed")

    async def settle(self) -> None:
        """Store every island message in Redis, in order, room by room. Meanwhile the feed
        holds the room's messages back from its local subscribers (who already have the
        island's), and a ``subscribe`` of it waits; then those subscribers are closed with 4001
        so they resume after the stored messages: nobody gets one twice. One at a time (the
        island loop and ``close`` both call it): two would store a message twice."""
        async with self._settling:
            await self._settle()

    async def _settle(self) -> None:
        for room in list(self.islands.rooms):
            island = self.islands.rooms.get(room)
            link = self._room_link(room)
            if island is None or link is None or not link.up or not self.feeds.live_for(room):
                continue
            while island.pending:
                p = island.pending[0]
                await self._store(room, p.data, p.ts, p.accepted_at, p.traceparent, p.sender,
                                  p.tracestate)
                self.islands.forwarded_one(island)
            if self.listener is not None:
                self.listener.on_resync(room)
            self.islands.finish(room)
            log.info("room %r: island messages stored in Redis", room)

    async def watch(self, room: str) -> None:
        await self.feeds.watch(room)

    async def unwatch(self, room: str) -> None:
        self.feeds.unwatch(room)

    async def _read(self, room: str, mode: str, arg: int = 0, epoch: str = "",
                    budget: int = 0) -> Any:
        k = self.keys
        link = self.links.room(room)
        return await link.run("read", [k.meta(room), k.log(room)],
                              [new_epoch(), self.ttl_ms, mode, arg, epoch, budget, link.lineage])

    async def recover(
        self, room: str, since: Position | None, budget: int = 0
    ) -> Recovery:
        # Only read once the room's feed is live, and answer once the feed has handed the hub
        # everything up to the position read: the hub then holds exactly what follows it.
        await self.feeds.wait_ready(room)
        await self.islands.settled(room, self.timeout * 4)
        if since is None:
            res = await self._read(room, "p")
        else:
            res = await self._read(room, "r", since.offset, since.epoch, budget)
        pos = Position(int(res[1]), res[0].decode())
        await self.feeds.wait_caught_up(room, pos)
        if since is None:
            return Recovery(pos, [], None)
        if not res[2]:
            return Recovery(pos, [], False)
        return Recovery(pos, rows_to_messages(room, pos.epoch, res[3]), True, bool(res[4]))

    async def history(self, room: str, limit: int, budget: int) -> HistoryPage:
        # The script reads newest first and stops at the budget (measured on the stored
        # messages, a little longer than the items cut from them): Redis sends, and this node
        # parses, at most about ``budget`` bytes, and decodes none of the data.
        res = await self._read(room, "h", limit, budget=budget)
        pos = Position(int(res[1]), res[0].decode())
        items = history_items([fields[1] for _, fields in reversed(res[3])], room)
        return HistoryPage(pos, items, bool(res[4]))

    # -- presence ----------------------------------------------------------------------------

    async def join(self, room: str, user: str) -> None:
        self.fleet.join(room, user)

    async def leave(self, room: str, user: str) -> None:
        self.fleet.leave(room, user)

    async def presence(self, room: str) -> list[str]:
        return await self.fleet.members(room)

    async def revoke(self, kind: str, value: str, until: float) -> None:
        await store_revocation(self.links.registry().redis, self.keys, kind, value, until,
                               self.timeout)

    async def revocations(self) -> list[tuple[str, str, float]]:
        return await read_revocations(self.links.registry().redis, self.keys, self.timeout)

    async def fleet_nodes(self) -> list[dict[str, Any]]:
        """The registry (``list_nodes``) over this broker's own connection, bounded by its
        timeout; read-only, so a failure here does not mark the broker down."""
        return await asyncio.wait_for(read_registry(self.links.registry().redis, self.keys),
                                      self.timeout)

    # -- figures -----------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        c = self.feeds.counts
        return {"reconnects": c.get("reconnects", 0), "resyncs": c.get("resyncs", 0),
                "filled": c.get("filled", 0), "gaps": c.get("gaps", 0),
                "duplicates": c.get("duplicates", 0), "publish_refused": self._refused,
                "publish_unreplicated": self._unreplicated,
                "island_published": self.islands.published,
                "island_forwarded": self.islands.forwarded,
                "nodes_reaped": self.fleet.reaped}

    def _shards(self) -> list[dict[str, Any]]:
        """The cluster's shards (``Shards.describe``) with the rooms this node watches on
        each."""
        assert self.shards is not None and isinstance(self.feeds, ClusterFeeds)
        rooms = {f"{h}:{p}": len(f.feeds) for (h, p), f in self.feeds.by_master.items()}
        return [{**row, "rooms": rooms.get(row["master"], 0)} for row in self.shards.describe()]

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "url": self.shown,
            "ack": self.ack,
            "node_id": self.node_id,
            "redis_up": self._redis_up(),
            "pubsub_up": self.feeds.live,
            "down_since": min((x.down_since for x in self.links.all()
                               if x.down_since is not None), default=None),
            "errors": sum(x.errors for x in self.links.all()),
            "rooms": len(self.feeds.feeds),
            "presence_rooms": len(self.fleet.presence),
            "published": self._published,
            "publish_refused": self._refused,
            "publish_unreplicated": self._unreplicated,
            "island_pending": self.islands.pending,
            "island_published": self.islands.published,
            "island_forwarded": self.islands.forwarded,
            "nodes_reaped": self.fleet.reaped,
            **self.feeds.counts,
            **({"shards": self._shards()} if self.shards is not None else {}),
        }
