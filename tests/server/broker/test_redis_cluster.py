"""Nodes on a Redis Cluster (3 masters + 3 replicas): the two-node tests of one Redis run again
on it (cross-node pub/sub, history and resume on any node, presence, the registry), then what
only a cluster has: rooms spread over its shards, each on its own sharded channel."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, cast

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ResponseError

from tests.conftest import Connect, LiveServer, ServerFactory
from tests.server.broker.conftest import NodeFactory
from tests.server.broker.test_redis_broker import (
    test_a_node_that_stops_heartbeating_leaves_presence_within_three_beats as test_reaping,
)
from tests.server.broker.test_redis_broker import (
    test_an_expired_room_starts_a_new_epoch_and_resume_says_recovered_false as test_expiry,
)
from tests.server.broker.test_redis_broker import (
    test_history_and_resume_on_another_node_use_the_shared_log as test_history_and_resume,
)
from tests.server.broker.test_redis_broker import (
    test_messages_cross_nodes_in_one_order_with_the_same_offsets as test_cross_node_order,
)
from tests.server.broker.test_redis_broker import (
    test_presence_is_shared_and_join_leave_events_cross_nodes as test_presence,
)
from tests.server.broker.test_redis_broker import (
    test_subscribing_on_a_busy_room_neither_loses_nor_repeats_messages as test_busy_room,
)
from tests.support.acks import Publisher, never_silent, stored
from tests.support.cluster import ClusterSet, replica_of
from tests.support.redisproc import BEAT, TIMEOUT, RedisProc, redis_server_binary
from tests.support.waits import until
from wsops.client import Client, Event, Gap
from wsops.server.broker import redis_scripts as lua
from wsops.server.broker.redis import RedisBroker, list_nodes
from wsops.server.broker.redis_cluster import Shards
from wsops.server.broker.redis_cluster_feed import ClusterFeeds
from wsops.server.core.control import CONTROL_ROOM

pytestmark = pytest.mark.slow

__all__ = ["test_busy_room", "test_cross_node_order", "test_expiry", "test_history_and_resume",
           "test_presence", "test_reaping"]

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterSet]:
    """One cluster for the module; each test has its own key prefix on it."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed")
    c = ClusterSet()
    try:
        c.start()
        yield c
    finally:
        c.close()


@pytest.fixture
def cluster_url(cluster: ClusterSet) -> str:
    return f"{cluster.url}?heartbeat={BEAT}&timeout={TIMEOUT}&prefix=t{next(_prefixes)}"


@pytest.fixture
def node_factory(cluster_url: str, server_factory: ServerFactory) -> NodeFactory:
    """Nodes on the cluster (overrides the one-Redis factory for the tests imported above)."""

    async def start(**overrides: Any) -> LiveServer:
        return await server_factory(broker=cluster_url, **overrides)

    return start


def _broker(server: LiveServer) -> RedisBroker:
    broker = server.node.broker
    assert isinstance(broker, RedisBroker)
    return broker


async def test_rooms_spread_over_the_shards_and_each_shard_carries_its_own(
    node_factory: NodeFactory, connect: Connect, cluster_url: str
) -> None:
    a, b = await node_factory(), await node_factory()
    rooms = [f"room-{i}" for i in range(12)]
    shards = _broker(a).shards
    assert shards is not None
    owners = {room: shards.owner(room) for room in rooms}
    assert len(set(owners.values())) == 3  # every master serves some of them
    sub = await connect(a.url)
    for room in rooms:
        await sub.call("subscribe", room)
    pub = await connect(b.url)
    for n in range(3):
        for room in rooms:
            ack = await pub.call("publish", room, data=n)
            assert ack["offset"] == n + 1
    got = await sub.messages(36)
    by_room = {room: [(m["offset"], m["data"]) for m in got if m["room"] == room]
               for room in rooms}
    assert by_room == {room: [(1, 0), (2, 1), (3, 2)] for room in rooms}
    # Each master's feed carries only its own rooms, on sharded channels.
    feeds = cast(ClusterFeeds, _broker(a).feeds)
    # Each master carries the feeds of its rooms (and one of them the fleet's orders).
    assert {addr: sorted(set(f.feeds) - {CONTROL_ROOM})
            for addr, f in feeds.by_master.items()} == {
        addr: sorted(r for r in rooms if owners[r] == addr) for addr in set(owners.values())}
    stats = _broker(a).stats()
    assert stats["redis_up"] and stats["pubsub_up"] and len(stats["shards"]) == 3
    assert sorted(n["id"] for n in await list_nodes(cluster_url)) == sorted(
        [cast(str, _broker(a).node_id), cast(str, _broker(b).node_id)])


async def test_wsops_publisher_writes_each_room_on_its_shard(
    node_factory: NodeFactory, connect: Connect, cluster_url: str
) -> None:
    """``wsops.Publisher`` on a cluster: each room's message goes to its own shard's log and
    sharded channel, between the node's own publishes, as a node would write it."""
    import wsops

    a = await node_factory()
    rooms = [f"room-{i}" for i in range(9)]
    sub, pub = await connect(a.url), await connect(a.url)
    for room in rooms:
        await sub.call("subscribe", room)
    async with wsops.Publisher(cluster_url) as publisher:
        assert isinstance(publisher.links, type(_broker(a).shards))
        assert len(cast(Shards, publisher.links).all()) == 3
        for room in rooms:
            assert (await publisher.publish(room, "from a worker")).offset == 1
            assert (await pub.call("publish", room, data="from a client"))["offset"] == 2
            assert (await publisher.publish(room, "again")).offset == 3
    got = await sub.messages(27)
    assert {room: [(m["offset"], m["data"]) for m in got if m["room"] == room]
            for room in rooms} == {room: [(1, "from a worker"), (2, "from a client"),
                                          (3, "again")] for room in rooms}


@pytest.fixture
async def own_cluster() -> AsyncIterator[ClusterSet]:
    """A cluster of the test's own, to fail."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed")
    c = ClusterSet()
    try:
        await asyncio.to_thread(c.start)
        yield c
    finally:
        await asyncio.to_thread(c.close)


Change = Callable[[ClusterSet, RedisProc], Awaitable[RedisProc]]


async def _change_under_load(
    server_factory: ServerFactory, cluster: ClusterSet, ack: str, change: Change
) -> tuple[Publisher, list[Event], list[int], list[RedisBroker]]:
    """Two nodes; a subscriber on one, a publisher on the other, in room "r"; after 200 acks
    ``change`` moves the room off its master (and returns the node serving it then) and the
    publisher goes on until 200 more. Returns the publisher, what the subscriber saw, the data
    of every message history holds afterwards, and the two brokers (both on the new node)."""
    url = f"{cluster.url}?heartbeat={BEAT}&timeout={TIMEOUT}"
    a, b = [await server_factory(broker=url, broker_ack=ack, rate_limit=10_000.0,
                                 rate_burst=10_000) for _ in range(2)]
    shards = _broker(a).shards
    assert shards is not None
    master = next(n for n in cluster.nodes if n.port == shards.owner("r")[1])
    events: list[Event] = []
    async with Client(a.url, backoff_base=0.02, backoff_cap=0.2, on_message=events.append,
                      on_gap=events.append) as sub, \
            Client(b.url, backoff_base=0.02, backoff_cap=0.2) as pub_client:
        await sub.subscribe("r")
        pub = Publisher(pub_client, "r")
        await pub.run(200, 20.0)
        assert len(pub.acked) == 200, pub
        now = await change(cluster, master)
        await pub.run(400, 60.0)
        assert len(pub.acked) == 400, f"publishes did not resume after the change: {pub}"
        await until(lambda: stored(events) >= set(pub.acked) or any(
            isinstance(e, Gap) for e in events), 20.0, what="the subscriber to catch up")
        await until(lambda: not _broker(b).islands.pending, 20.0,
                    what="island messages stored in Redis")
        history = await pub_client.history("r", 1000)
    brokers = [_broker(node) for node in (a, b)]

    def followed() -> bool:
        return all(x.healthy and x.shards is not None and x.shards.owner("r")[1] == now.port
                   for x in brokers)

    await until(followed, 15.0, what=lambda: f"both nodes on {now.port}: "
                f"{[x.stats()['shards'] for x in brokers]}")
    return pub, events, [m.data for m in history], brokers


async def _kill(cluster: ClusterSet, master: RedisProc) -> RedisProc:
    """SIGKILL the master; once its replica took over, start it again (it comes back as the
    new master's replica)."""
    replica = replica_of(cluster, master)
    master.stop()
    await until(lambda: replica in cluster.masters(), 20.0, what="the replica promoted")
    await asyncio.to_thread(master.start)
    return replica


async def _failover(cluster: ClusterSet, master: RedisProc) -> RedisProc:
    replica = replica_of(cluster, master)
    await asyncio.to_thread(cluster.failover, replica)
    return replica


async def _reshard(cluster: ClusterSet, master: RedisProc) -> RedisProc:
    """Move the room's slot to another master (``CLUSTER SETSLOT`` + ``MIGRATE``)."""
    target = next(m for m in cluster.masters() if m is not master)
    slot = key_slot(lua.Keys("wsops", cluster=True).meta("r").encode())
    await asyncio.to_thread(cluster.move_slot, slot, master, target)
    return target


async def test_a_graceful_failover_of_a_rooms_shard_loses_nothing(
    own_cluster: ClusterSet, server_factory: ServerFactory
) -> None:
    """CLUSTER FAILOVER: the replica catches up before it takes over, so every acknowledged
    message is kept; the room still takes a new epoch under its new master (a resume across
    the change says so)."""
    pub, events, history, _ = await _change_under_load(server_factory, own_cluster, "master",
                                                       _failover)
    assert not set(pub.acked) - set(history) - pub.island
    never_silent(pub, events, continuous=True)


async def test_with_master_acks_a_killed_shard_master_is_followed_and_never_silent(
    own_cluster: ClusterSet, server_factory: ServerFactory
) -> None:
    pub, events, history, _ = await _change_under_load(server_factory, own_cluster, "master",
                                                       _kill)
    gaps = never_silent(pub, events, continuous=False)
    assert gaps and all(g.last_epoch != g.new_epoch for g in gaps)
    assert pub.island <= set(history)


async def test_with_replica_acks_no_acknowledged_publish_is_lost_when_a_shard_master_dies(
    own_cluster: ClusterSet, server_factory: ServerFactory
) -> None:
    pub, events, history, _ = await _change_under_load(server_factory, own_cluster, "replica",
                                                       _kill)
    lost = set(pub.acked) - set(history)
    assert not lost, f"{len(lost)} acknowledged publishes lost: {sorted(lost)[:20]}"
    gaps = never_silent(pub, events, continuous=True)
    assert len(gaps) == 1 and gaps[0].last_epoch != gaps[0].new_epoch


async def test_spublish_from_a_script_needs_the_rooms_slot_hence_the_tagged_channel(
    cluster: ClusterSet,
) -> None:
    """Why a cluster's room channel carries the room's hash tag: Redis refuses SPUBLISH from
    the publish script to a channel outside the slot of the script's keys."""
    one, tagged = lua.Keys("wsops-why"), lua.Keys("wsops-why", cluster=True)
    rc = RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port, protocol=2)
    try:
        await rc.initialize()
        spub = rc.register_script(lua.sharded(lua.PUBLISH))
        args: list[str | int] = ["e1", 100, 60000, 0, '{"x":', "}", "|1|1|", "1"]
        room = next(r for r in (f"r{i}" for i in range(100))  # untagged: on another master
                    # redis-py's stubs say str, but it hashes a bytes key the same way
                    if rc.get_node_from_key(one.channel(r))  # type: ignore[arg-type]
                    != rc.get_node_from_key(tagged.meta(r)))
        keys = [tagged.meta(room), tagged.log(room)]
        assert (await spub(keys=keys, args=[tagged.channel(room), *args]))[0] == b"1"
        with pytest.raises(ResponseError, match="non local key"):
            await spub(keys=keys, args=[one.channel(room), *args])
    finally:
        await rc.aclose()


async def test_a_rooms_slot_resharded_under_load_is_followed_and_never_silent(
    own_cluster: ClusterSet, server_factory: ServerFactory
) -> None:
    """The room's slot migrates to another master (keys moved with MIGRATE) while a publisher
    goes on: both nodes follow it (the feed moves the room, the scripts run on the new
    master), nothing acknowledged is lost, and the subscriber misses nothing silently."""
    pub, events, history, brokers = await _change_under_load(
        server_factory, own_cluster, "master", _reshard)
    assert not set(pub.acked) - set(history) - pub.island
    never_silent(pub, events, continuous=True)
    assert brokers[0].feeds.counts["moved"] >= 1
