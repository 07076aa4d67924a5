"""The live feed on a Redis Cluster: one sharded pub/sub connection per master.

Each master gets its own ``Feeds`` (``redis_feed``: ``SSUBSCRIBE`` to the shard channels of the
rooms whose slots it serves, the same checks against silent gaps). When the slot map changes
(``redis_cluster.Shards``: a replica promoted, slots moved), every watched room whose slot went
to another master moves there with its position and waiters: the new master's feed subscribes
it and delivers what it missed from the room's log, or makes it resync (4001), before anything
newer; the feeds of masters that left are stopped.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from wsops.server.broker import redis_scripts as lua
from wsops.server.broker.redis_cluster import Addr, Shards, Topology
from wsops.server.broker.redis_feed import Feeds
from wsops.server.broker.redis_feed_room import Feed
from wsops.server.core.broker import Broker, BrokerUnavailable
from wsops.server.core.protocol import Position
from wsops.server.stopping import cancel_all


class ClusterFeeds:
    """The node's live feed across the cluster's masters (see the module doc); the broker uses
    it as it uses one ``Feeds``."""

    def __init__(self, broker: Broker, shards: Shards, keys: lua.Keys, ttl_ms: int,
                 name: str = "") -> None:
        self.broker = broker
        self.shards = shards
        self.keys = keys
        self.ttl_ms = ttl_ms
        self.name = name
        self.timeout = shards.timeout
        self.by_master: dict[Addr, Feeds] = {}
        self._runs: dict[Addr, asyncio.Task[None]] = {}
        self.home: dict[str, Addr] = {}  # watched room -> the master whose feed has it
        self.moved = 0
        self._closing: set[asyncio.Task[None]] = set()
        self.hold: Callable[[str], bool] = lambda room: False
        shards.listeners.append(self.follow)

    # -- the slot map -------------------------------------------------------------------------

    def follow(self, topo: Topology) -> None:
        """Start feeds for new masters, move rooms whose slot changed master, stop the feeds
        of masters that left."""
        for addr in topo.masters:
            if addr not in self.by_master:
                feeds = Feeds(self.broker, self.shards.link_at(addr), self.keys,
                              self.shards.link_at(addr).locator, self.ttl_ms,
                              f"{self.name}-{addr[1]}", sharded=True, on_moved=self.shards.ask)
                feeds.hold = self._held
                self.by_master[addr] = feeds
                self._runs[addr] = asyncio.get_running_loop().create_task(feeds.run())
        for room, addr in list(self.home.items()):
            now = self.shards.owner(room)
            if now != addr:
                feed = self.by_master[addr].give(room)
                self.home[room] = now
                if feed is not None:
                    self.moved += 1
                    self.by_master[now].adopt(room, feed)
        for addr in [a for a in self.by_master if a not in topo.masters]:
            feeds = self.by_master.pop(addr)
            self._runs.pop(addr).cancel()
            task = asyncio.get_running_loop().create_task(feeds.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _held(self, room: str) -> bool:
        return self.hold(room)

    def _of(self, room: str) -> Feeds | None:
        addr = self.home.get(room)
        return self.by_master.get(addr) if addr is not None else None

    # -- what the broker uses ------------------------------------------------------------------

    @property
    def feeds(self) -> dict[str, Feed]:
        return {room: feed for f in self.by_master.values() for room, feed in f.feeds.items()}

    def feed(self, room: str) -> Feed | None:
        feeds = self._of(room)
        return feeds.feeds.get(room) if feeds is not None else None

    @property
    def live(self) -> bool:
        return bool(self.by_master) and all(f.live for f in self.by_master.values())

    def live_for(self, room: str) -> bool:
        """Whether the feed of the master serving ``room``'s slot is up."""
        try:
            feeds = self.by_master.get(self.shards.owner(room))
        except BrokerUnavailable:
            return False
        return feeds is not None and feeds.live

    @property
    def counts(self) -> dict[str, int]:
        total: Counter[str] = Counter({"moved": self.moved})
        for f in self.by_master.values():
            total.update(f.counts)
        return dict(total)

    async def wait_live(self, within: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not self.by_master:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)
        for f in list(self.by_master.values()):
            if not await f.wait_live(max(0.0, deadline - loop.time())):
                return False
        return True

    async def watch(self, room: str) -> None:
        feeds = self._of(room)
        if feeds is None:
            addr = self.shards.owner(room)
            feeds = self.by_master.get(addr)
            if feeds is None:
                raise BrokerUnavailable("broker down (no pub/sub connection to the room's "
                                        "shard)")
            self.home[room] = addr
        await feeds.watch(room)

    def unwatch(self, room: str) -> None:
        feeds = self._of(room)
        self.home.pop(room, None)
        if feeds is not None:
            feeds.unwatch(room)

    async def wait_ready(self, room: str) -> None:
        feeds = self._of(room)
        if feeds is not None:
            await feeds.wait_ready(room)

    async def wait_caught_up(self, room: str, pos: Position) -> None:
        feeds = self._of(room)
        if feeds is not None:
            await feeds.wait_caught_up(room, pos)

    async def run(self) -> None:
        """The per-master feeds run in their own tasks (``follow``); this follows the slot
        map until cancelled."""
        await self.shards.run()

    async def close(self) -> None:
        await cancel_all(list(self._runs.values()), 5.0, "cluster feed task")
        self._runs.clear()
        for feeds in self.by_master.values():
            await feeds.close()
