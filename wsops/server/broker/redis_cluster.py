"""Where a Redis Cluster keeps each room: its slot map, and one link per master.

Every key of a room carries the hash tag ``{room}`` (``redis_scripts``), so a room lives in one
slot, on one shard: its scripts run on that shard's master and its messages go out on that
shard's sharded pub/sub. ``Topology`` is the slot map as ``CLUSTER SHARDS`` tells it (pure).
``Shards`` keeps a ``Link`` (commands, scripts, health) per master and asks the cluster for its
map every half timeout and at once after a redirection, so the node follows a failover (a
replica promoted) and a resharding (slots moved): listeners (the live feed,
``redis_cluster_feed``) hear of every change. A shard whose master is unreachable is down on
its own: its rooms are ``unavailable`` (island mode for publishes) while the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.crc import key_slot

from wsops.server.broker import redis_scripts as lua
from wsops.server.broker.redis_link import Link, Locator, measure_clock
from wsops.server.broker.redis_url import ClusterTarget, Target
from wsops.server.core.broker import BrokerUnavailable

log = logging.getLogger(__name__)

Addr = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Shard:
    """Slot ranges (inclusive), the master serving them (None while none is healthy and known)
    and the other nodes."""

    slots: tuple[tuple[int, int], ...]
    master: Addr | None
    healthy: bool
    others: tuple[Addr, ...] = ()


def _pairs(flat: Sequence[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i in range(0, len(flat) - 1, 2):
        key = flat[i].decode() if isinstance(flat[i], bytes) else str(flat[i])
        value = flat[i + 1]
        out[key] = value.decode() if isinstance(value, bytes) else value
    return out


def _fields(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        return {(k.decode() if isinstance(k, bytes) else k):
                (v.decode() if isinstance(v, bytes) else v) for k, v in item.items()}
    return _pairs(item)


@dataclass(frozen=True, slots=True)
class Topology:
    """The slot map: which master serves each slot."""

    shards: tuple[Shard, ...]

    @classmethod
    def parse(cls, reply: Sequence[Any]) -> Topology:
        """From a ``CLUSTER SHARDS`` reply (RESP2: flat field/value lists). Of each shard's
        nodes, the master is an online node with role master, else any node with that role."""
        shards = []
        for raw in reply:
            shard = _fields(raw)
            flat = [int(s) for s in shard.get("slots", [])]
            slots = tuple((flat[i], flat[i + 1]) for i in range(0, len(flat) - 1, 2))
            nodes = [_fields(n) for n in shard.get("nodes", [])]
            addrs = [(str(n.get("endpoint") or n.get("ip")), int(n.get("port") or 0))
                     for n in nodes]
            masters = [i for i, n in enumerate(nodes) if n.get("role") == "master"]
            online = [i for i in masters if nodes[i].get("health") == "online"]
            picks = online or masters
            master = addrs[picks[0]] if picks else None
            shards.append(Shard(slots, master, bool(online),
                                tuple(a for a in addrs if a != master)))
        return cls(tuple(sorted(shards, key=lambda s: s.slots[0] if s.slots else (1 << 14,))))

    def ranges(self) -> list[tuple[int, int, Addr | None]]:
        """``(first slot, last slot, master)``, in slot order."""
        return sorted((a, b, s.master) for s in self.shards for a, b in s.slots)

    def owner(self, slot: int) -> Addr | None:
        for start, end, master in self.ranges():
            if start <= slot <= end:
                return master
        return None

    @property
    def masters(self) -> list[Addr]:
        return [s.master for s in self.shards if s.master is not None and s.slots]

    @property
    def nodes(self) -> list[Addr]:
        return [*self.masters, *(a for s in self.shards for a in s.others)]

    def covered(self) -> bool:
        return sum(b - a + 1 for s in self.shards for a, b in s.slots) == 16384


def node_url(cluster: ClusterTarget, addr: Addr) -> str:
    """A ``redis://`` URL for one node of ``cluster`` (its credentials and TLS)."""
    auth = ""
    if cluster.password is not None:
        auth = f"{quote(cluster.username or '', safe='')}:{quote(cluster.password, safe='')}@"
    elif cluster.username:
        auth = f"{quote(cluster.username, safe='')}@"
    host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
    return f"{'rediss' if cluster.tls else 'redis'}://{auth}{host}:{addr[1]}/0"


class Shards:
    """A link per master of the cluster, by slot (see the module doc)."""

    sharded = True

    def __init__(self, target: Target, timeout: float, keys: lua.Keys) -> None:
        assert target.cluster is not None
        self.keys = keys
        self.cluster = target.cluster
        self.shown = target.shown
        self.timeout = timeout
        self.topology: Topology | None = None
        self.links: dict[Addr, Link] = {}
        self.listeners: list[Callable[[Topology], None]] = []
        self.changes = 0  # slot map changes seen
        self._asked = asyncio.Event()
        self._slots: list[Addr | None] = []
        self._closing: set[asyncio.Task[None]] = set()

    # -- routing ------------------------------------------------------------------------------

    def link_at(self, addr: Addr) -> Link:
        link = self.links.get(addr)
        if link is None:
            url = node_url(self.cluster, addr)
            shown = f"{addr[0]}:{addr[1]}"
            target = Target(url, None, shown)
            link = self.links[addr] = Link(target, self.timeout, Locator(target, self.timeout),
                                           sharded=True, on_moved=self.ask)
        return link

    def owner(self, room: str) -> Addr:
        """The master serving ``room``'s slot; BrokerUnavailable when none is known."""
        return self._owner(self.keys.meta(room))

    def _owner(self, key: str) -> Addr:
        addr = self._slots[key_slot(key.encode())] if self._slots else None
        if addr is None:
            raise BrokerUnavailable("broker unavailable: no Redis Cluster master is known "
                                    "for the slot")
        return addr

    def room(self, room: str) -> Link:
        """The link to the master of ``room``'s slot."""
        return self.link_at(self._owner(self.keys.meta(room)))

    def registry(self) -> Link:
        """The link to the master of the node registry's slot."""
        return self.link_at(self._owner(self.keys.nodes))

    def all(self) -> list[Link]:
        """The links of the current masters."""
        return [self.link_at(a) for a in self.topology.masters] if self.topology else []

    def ask(self) -> None:
        """Ask the cluster for its slot map soon (a redirection or a lost shard)."""
        self._asked.set()

    # -- the slot map -------------------------------------------------------------------------

    async def refresh(self) -> bool:
        """Ask the known nodes, then the seeds, for the slot map; apply it when it changed.
        False when none answered with a map covering every slot."""
        known = self.topology.nodes if self.topology else []
        for addr in dict.fromkeys([*known, *self.cluster.seeds]):
            try:
                reply = await self._shards_of(addr)
                topo = Topology.parse(reply)
            except (OSError, TimeoutError, rexc.RedisError, ValueError, IndexError) as exc:
                log.debug("CLUSTER SHARDS from %s:%d failed: %r", *addr, exc)
                continue
            if not topo.covered():
                continue
            if topo != self.topology:
                self._apply(topo)
            return True
        return False

    async def _shards_of(self, addr: Addr) -> Any:
        link = self.links.get(addr)
        if link is not None:
            return await asyncio.wait_for(link.redis.execute_command(  # type: ignore[no-untyped-call]
                "CLUSTER", "SHARDS"), self.timeout)
        client = Redis.from_url(node_url(self.cluster, addr), socket_timeout=self.timeout,
                                socket_connect_timeout=self.timeout, protocol=2)
        try:
            return await asyncio.wait_for(client.execute_command(  # type: ignore[no-untyped-call]
                "CLUSTER", "SHARDS"), self.timeout)
        finally:
            await client.aclose()

    def _apply(self, topo: Topology) -> None:
        old = self.topology
        self.topology = topo
        slots: list[Addr | None] = [None] * 16384
        for start, end, master in topo.ranges():
            slots[start:end + 1] = [master] * (end - start + 1)
        self._slots = slots
        self.changes += 1
        if old is not None:
            log.warning("redis cluster slot map changed: masters %s",
                        ", ".join(f"{h}:{p}" for h, p in topo.masters))
        for master in topo.masters:
            self.link_at(master)
        for listener in self.listeners:
            listener(topo)
        for addr in [a for a in self.links if a not in topo.masters]:
            task = asyncio.get_running_loop().create_task(self.links.pop(addr).close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def run(self) -> None:
        """Follow the slot map (every half timeout, at once when asked) and probe every
        master."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._asked.wait(), self.timeout / 2)
            self._asked.clear()
            try:
                await self.refresh()
                # each master marked up or down, its clock measured (each has its own)
                await asyncio.gather(*(measure_clock(link) for link in self.all()))
            except Exception:  # a bug must not stop following the cluster
                log.exception("following the redis cluster failed")

    def describe(self) -> list[dict[str, Any]]:
        """The shards serving slots, for stats: slot ranges, master, health, the link's
        view."""
        if self.topology is None:
            return []
        out = []
        for s in self.topology.shards:
            if not s.slots:  # a failed master whose replica took its slots over
                continue
            link = self.links.get(s.master) if s.master else None
            out.append({"slots": [list(r) for r in s.slots],
                        "master": f"{s.master[0]}:{s.master[1]}" if s.master else None,
                        "healthy": s.healthy, "up": bool(link and link.up),
                        "replicas": [f"{h}:{p}" for h, p in s.others]})
        return out

    async def close(self) -> None:
        for link in self.links.values():
            with contextlib.suppress(Exception):
                await link.close()
        self.links.clear()
