"""This node's place in a Redis fleet: heartbeat and registry, shared presence, dead nodes.

- Every ``heartbeat`` seconds the node refreshes ``P:node:<id>`` (admin URL, version, draining,
  ...; TTL three beats) and its score in ``P:nodes``. ``list_nodes`` reads that registry.
- Presence: the node keeps its own counts (user -> connections, per room) in memory and writes
  them to ``P:{room}:pres:<id>`` in the background, coalesced, in order. The Lua script publishes
  ``join`` when a user becomes a member fleet-wide (no live node had them) and ``leave`` when
  the last live node drops them. ``presence(room)`` is this node's members plus those of every
  live node, so a dead node's users drop out when its key expires (at most three beats).
- Each beat also looks for nodes whose key expired and removes their members room by room,
  publishing ``leave`` for users no live node still has.
- When the node finds its own key gone (Redis restarted or the fleet declared it dead), it
  writes all its presence again.

On a Redis Cluster (``Links.sharded``) each room's presence goes to its own shard, the registry
to the shard of its slot, and the node keeps its rooms set itself (``redis_scripts``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from wsops.backoff import full_jitter
from wsops.server.broker import redis_scripts as lua
from wsops.server.broker.redis_cluster import Shards
from wsops.server.broker.redis_link import Link, Links, Locator, connect
from wsops.server.broker.redis_url import Target, parse_broker_url
from wsops.server.core.broker import BrokerUnavailable
from wsops.server.core.presence import PresenceCounts

log = logging.getLogger(__name__)

NodeInfo = Callable[[], Mapping[str, object]]


def _text(value: object) -> str:
    """A Redis reply as text (bytes decoded)."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _field(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def node_record(node_id: str, fields: Mapping[bytes, bytes]) -> dict[str, Any]:
    """A registry hash as ``list_nodes`` returns it: typed fields, times in Unix seconds."""
    raw = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
    out: dict[str, Any] = {"id": node_id, **raw}
    if "started_at" in raw:
        out["started_at"] = _parsed(float, raw["started_at"])
    if "connections" in raw:
        out["connections"] = _parsed(int, raw["connections"])
    if "heartbeat_ms" in raw:
        ms = _parsed(int, out.pop("heartbeat_ms"))
        out["heartbeat_at"] = ms / 1000 if ms is not None else None
    out["draining"] = raw.get("draining") == "1"
    return out


def _parsed(kind: Callable[[str], Any], text: str) -> Any:
    """``kind(text)``, None for a malformed field: one bad entry must not hide the registry."""
    try:
        return kind(text)
    except ValueError:
        return None


@contextlib.asynccontextmanager
async def _slot_map(target: Target, timeout: float, keys: lua.Keys  # noqa: ASYNC109
                    ) -> AsyncIterator[Shards]:
    """A cluster's links with its slot map read (BrokerUnavailable when no node answers)."""
    shards = Shards(target, timeout, keys)
    try:
        if not await shards.refresh():
            raise BrokerUnavailable(f"no node of {target.shown} answered with its slot map")
        yield shards
    finally:
        await shards.close()


async def list_nodes(redis_url: str, timeout: float = 2.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
    """Live nodes of the fleet using ``redis_url`` (same URL as ``--broker``), by id:
    ``id``, ``admin_url``, ``version``, ``started_at``, ``draining``, ``connections``,
    ``heartbeat_at`` (Unix seconds)."""
    target, opts = parse_broker_url(redis_url)
    keys = lua.Keys(opts.prefix, cluster=target.cluster is not None)
    if target.cluster is not None:
        async with _slot_map(target, timeout, keys) as shards:
            return await read_registry(shards.registry().redis, keys)
    locator = Locator(target, timeout)
    client = connect(target, timeout, locator, max_connections=4)
    try:
        return await read_registry(client, keys)
    finally:
        await client.aclose()
        await locator.close()


async def broker_topology(redis_url: str, timeout: float = 2.0  # noqa: ASYNC109
                          ) -> list[dict[str, Any]]:
    """The broker's shards, as ``wsops status --redis`` shows them: one for ``redis://`` and
    Sentinel (the master now), one per master of a cluster. Each: ``slots`` (ranges),
    ``master``, ``up`` (it answered), ``keys`` (DBSIZE), ``replicas``."""
    target, opts = parse_broker_url(redis_url)
    keys = lua.Keys(opts.prefix, cluster=target.cluster is not None)
    if target.cluster is not None:
        async with _slot_map(target, timeout, keys) as shards:
            rows = shards.describe()
            for row in rows:
                host, _, port = (row["master"] or "").rpartition(":")
                link = shards.links.get((host, int(port))) if port else None
                row["keys"] = await _dbsize(link.redis, timeout) if link is not None else None
                row["up"] = row["keys"] is not None
            return rows
    locator = Locator(target, timeout)
    client = connect(target, timeout, locator, max_connections=2)
    try:
        endpoint = await locator()
        info = await asyncio.wait_for(client.info("replication"), timeout)
        replicas = [f"{v['ip']}:{v['port']}" for k, v in info.items()
                    if k.startswith("slave") and isinstance(v, dict)]
        size = await _dbsize(client, timeout)
        return [{"slots": [[0, 16383]], "master": f"{endpoint.host}:{endpoint.port}",
                 "healthy": True, "up": size is not None, "keys": size, "replicas": replicas}]
    finally:
        await client.aclose()
        await locator.close()


async def _dbsize(client: Redis, timeout: float) -> int | None:  # noqa: ASYNC109
    try:
        return int(await asyncio.wait_for(client.dbsize(), timeout))
    except (OSError, TimeoutError, RedisError):
        return None


async def read_registry(client: Redis, keys: lua.Keys) -> list[dict[str, Any]]:
    """The registry's live nodes, by id (one ZRANGE and one pipelined HGETALL per node)."""
    raw_ids: list[bytes] = await client.execute_command(  # type: ignore[no-untyped-call]
        "ZRANGE", keys.nodes, 0, -1)
    ids = [raw.decode(errors="replace") for raw in raw_ids]
    pipe = client.pipeline(transaction=False)
    for node_id in ids:
        pipe.hgetall(keys.node(node_id))
    hashes = await pipe.execute()
    return sorted((node_record(i, h) for i, h in zip(ids, hashes, strict=True) if h),
                  key=lambda n: n["id"])


class Fleet:
    """Heartbeat, registry, presence and reaping for one node (see the module doc)."""

    def __init__(self, links: Links, keys: lua.Keys, node_id: str, heartbeat: float) -> None:
        self.links = links
        self.keys = keys
        self.node_id = node_id
        self.heartbeat = heartbeat
        self.ttl_ms = int(heartbeat * 3000)
        self.info: NodeInfo | None = None
        self.presence = PresenceCounts()
        self._dirty: dict[str, set[str]] = {}
        self._full = True  # write every room again (first beat, lost key, failed write)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.reaped = 0
        self.schema_conflict: str | None = None  # what Redis holds is not this node's layout

    # -- presence ----------------------------------------------------------------------------

    def join(self, room: str, user: str) -> None:
        self.presence.join(room, user)
        self._touch(room, user)

    def leave(self, room: str, user: str) -> None:
        if self.presence.get(room, Counter())[user] <= 0:
            return
        self.presence.leave(room, user)
        self._touch(room, user)

    def _touch(self, room: str, user: str) -> None:
        self._dirty.setdefault(room, set()).add(user)
        self._idle.clear()
        self._wake.set()

    @property
    def _node_prefix(self) -> str:
        """What the presence scripts check liveness with ('' on a cluster: the reaper does)."""
        return "" if self.links.sharded else self.keys.node_prefix

    async def members(self, room: str) -> list[str]:
        k = self.keys
        others = await self.links.room(room).run(
            "presence_read", [k.pnodes(room)], [self.node_id, self._node_prefix,
                                                k.pres_prefix(room)])
        users = {raw.decode() for raw in others}
        users.update(self.presence.get(room, ()))
        return sorted(users)

    def _call(
        self, room: str, users: Mapping[str, int], replace: bool
    ) -> tuple[list[str], list[Any]]:
        k = self.keys
        args: list[Any] = [self.node_id, self._node_prefix, k.pres_prefix(room),
                           k.channel(room), room, "1" if replace else "0"]
        for user, count in users.items():
            args += [user, count]
        keys = [k.pres(room, self.node_id), k.pnodes(room)]
        if not self.links.sharded:
            keys.append(k.node_rooms(self.node_id))
        return keys, args

    async def _write(self, rooms: list[str], calls: list[tuple[list[str], list[Any]]]) -> None:
        """Run the presence scripts, each on its room's shard. On a cluster the room joins the
        node's rooms set first (so the reaper finds it) and leaves it once empty."""
        if not rooms:
            return
        sharded = self.links.sharded
        mine = self.keys.node_rooms(self.node_id)
        if sharded:
            await self.links.registry().call("SADD", mine, *rooms)
        groups: dict[int, tuple[Link, list[int]]] = {}
        for i, room in enumerate(rooms):
            link = self.links.room(room)
            groups.setdefault(id(link), (link, []))[1].append(i)
        empty: list[str] = []
        for link, idx in groups.values():
            results = await link.run_many("presence_set", [calls[i] for i in idx])
            empty += [rooms[i] for i, res in zip(idx, results, strict=True) if not res]
        if sharded and empty:
            await self.links.registry().call("SREM", mine, *empty)

    def registry_up(self) -> bool:
        try:
            return self.links.registry().up
        except BrokerUnavailable:
            return False

    async def flush_loop(self) -> None:
        """Write presence changes as they come, in order; everything again after a failure."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.registry_up():
                continue  # the heartbeat wakes us when Redis is back
            try:
                if self._full:
                    self._dirty.clear()
                    await self._write_all()
                    self._full = False
                while self._dirty:
                    dirty, self._dirty = self._dirty, {}
                    calls = [self._call(room, {u: self.presence.get(room, Counter())[u]
                                               for u in users}, False)
                             for room, users in dirty.items()]
                    await self._write(list(dirty), calls)
            except BrokerUnavailable:
                self._full = True
                continue
            except Exception:  # a bug must not stop presence for good
                log.exception("writing presence failed")
                self._full = True
                continue
            if not self._dirty:
                self._idle.set()

    async def _write_all(self) -> None:
        k = self.keys
        known = await self.links.registry().call("SMEMBERS", k.node_rooms(self.node_id))
        rooms = sorted(set(self.presence) | {raw.decode() for raw in known})
        calls = [self._call(room, dict(self.presence.get(room, {})), True) for room in rooms]
        await self._write(rooms, calls)

    async def flushed(self, within: float) -> bool:
        """Wait (at most ``within`` seconds) until every presence change is written."""
        try:
            await asyncio.wait_for(self._idle.wait(), within)
        except TimeoutError:
            return False
        return True

    # -- heartbeat, registry, reaping --------------------------------------------------------

    async def beat(self) -> bool:
        """Refresh this node's registry entry; False if Redis did not answer."""
        fields: list[str] = []
        for name, value in (self.info() if self.info is not None else {}).items():
            fields += [name, _field(value)]
        sent = time.time()
        try:
            link = self.links.registry()
            existed, now_ms, schema = await link.run(
                "heartbeat", [self.keys.node(self.node_id), self.keys.nodes, self.keys.schema],
                [self.node_id, self.ttl_ms, lua.SCHEMA, *fields], probe=True)
        except BrokerUnavailable:
            return False
        link.skew_ms = int(now_ms) - (sent + time.time()) * 500
        if not self._schema_agrees(_text(schema)):
            return False
        if not existed:
            self._full = True  # Redis restarted empty, or the fleet took us for dead
        if self._full or self._dirty:  # including writes that failed while Redis was away
            self._idle.clear()
            self._wake.set()
        return True

    def _schema_agrees(self, schema: str) -> bool:
        """Whether Redis holds this node's layout (``lua.SCHEMA``); a conflict is said once,
        loudly, and kept in ``schema_conflict`` (the node is not healthy meanwhile)."""
        if schema == lua.SCHEMA:
            if self.schema_conflict is not None:
                log.warning("the Redis layout is schema %s again: serving", schema)
            self.schema_conflict = None
            return True
        conflict = (f"Redis holds wsops data of schema {schema[:16]!r} under prefix "
                    f"{self.keys.prefix!r}; this node reads schema {lua.SCHEMA!r}: run the "
                    "version that wrote it, or give this node another ?prefix=")
        if conflict != self.schema_conflict:
            log.error("%s", conflict)
        self.schema_conflict = conflict
        return False

    async def heartbeat_loop(self) -> None:
        """Beat every ``heartbeat`` seconds; while Redis is down, probe sooner (full jitter)."""
        attempt = 0
        while True:
            ok = False
            try:
                ok = await self.beat()
                if ok:
                    await self.reap()
            except BrokerUnavailable:
                pass
            except Exception:  # a bug must not stop the heartbeat
                log.exception("heartbeat failed")
            if ok:
                attempt = 0
                delay = self.heartbeat
            else:
                delay = min(self.heartbeat, full_jitter(attempt, 0.05, self.heartbeat))
                attempt += 1
            await asyncio.sleep(delay)

    async def reap(self) -> None:
        """Remove the presence of nodes whose heartbeat key expired."""
        k = self.keys
        link = self.links.registry()
        cutoff = link.redis_ms() - self.ttl_ms
        for raw in await link.call("ZRANGEBYSCORE", k.nodes, "-inf", cutoff):
            node_id = raw.decode()
            if node_id != self.node_id and not await link.call("EXISTS", k.node(node_id)):
                await self.reap_node(node_id)

    async def reap_node(self, node_id: str) -> None:
        k = self.keys
        registry = self.links.registry()
        rooms = [raw.decode() for raw in await registry.call("SMEMBERS", k.node_rooms(node_id))]
        if self.links.sharded:
            for room in rooms:  # each on its shard; the caller checked the node is dead
                await self.links.room(room).run(
                    "reap_room", [k.pres(room, node_id), k.pnodes(room)],
                    [node_id, "", k.pres_prefix(room), k.channel(room), room])
                await registry.call("SREM", k.node_rooms(node_id), room)
        else:
            calls = [([k.pres(room, node_id), k.pnodes(room), k.node_rooms(node_id)],
                      [node_id, k.node_prefix, k.pres_prefix(room), k.channel(room), room])
                     for room in rooms]
            await registry.run_many("reap_room", calls)
        done = await registry.run(
            "reap_node", [k.node(node_id), k.node_rooms(node_id), k.nodes], [node_id])
        if done and node_id != self.node_id:
            self.reaped += 1
            log.info("removed dead node %s from presence (%d rooms)", node_id, len(rooms))

    async def leave_fleet(self) -> None:
        """On shutdown: drop this node from the registry and its members from presence."""
        await self.links.registry().call("DEL", self.keys.node(self.node_id))
        await self.reap_node(self.node_id)
