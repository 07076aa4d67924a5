"""The Redis Cluster broker's pure parts: its URL, the slot map from CLUSTER SHARDS, the key
layout that keeps every script in one slot."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from wsops.server.broker import redis_scripts as lua
from wsops.server.broker.redis_cluster import Shard, Topology, node_url
from wsops.server.broker.redis_url import ClusterTarget, check_broker, parse_broker_url


def _node(port: int, role: str, health: str = "online") -> list[object]:
    return [b"id", b"x" * 40, b"port", port, b"ip", b"10.0.0.9", b"endpoint", b"10.0.0.1",
            b"role", role.encode(), b"replication-offset", 0, b"health", health.encode()]


# The shape of a real Redis 7.0 reply (RESP2), three shards, the middle one failing over.
SHARDS = [
    [b"slots", [5461, 10922], b"nodes", [_node(7001, "master", "fail"), _node(7004, "replica")]],
    [b"slots", [10923, 16383], b"nodes", [_node(7002, "master"), _node(7005, "replica")]],
    [b"slots", [0, 100, 101, 5460], b"nodes", [_node(7003, "replica"), _node(7000, "master")]],
]


def test_cluster_urls_name_the_seeds_and_credentials() -> None:
    target, opts = parse_broker_url(
        "redis+cluster://app:s%40cret@10.0.0.1:7000,[::1]:7001,h3?prefix=blue&timeout=1")
    assert (target.url, target.sentinel) == (None, None)
    assert target.cluster == ClusterTarget(
        (("10.0.0.1", 7000), ("::1", 7001), ("h3", 6379)), "app", "s@cret", False)
    assert target.shown == "redis+cluster://10.0.0.1:7000,[::1]:7001,h3"
    assert (opts.prefix, opts.timeout) == ("blue", 1.0)
    tls = parse_broker_url("rediss+cluster://:pw@h:1")[0].cluster
    assert tls == ClusterTarget((("h", 1),), None, "pw", True)
    check_broker("redis+cluster://h:1", "replica")
    for bad, why in (("redis+cluster://h:1/0", "no path after the seeds"),
                     ("redis+cluster://:pw@h:1?db=1", "unknown option 'db'"),
                     ("redis+cluster://h:1?prefix=a{b", "cannot hold"),
                     ("redis+cluster://h:1?prefix=a}b", "cannot hold"),
                     ("redis+cluster://h:1?a=1&b=2", "unknown option 'a'"),
                     ("redis+cluster://h:x", "HOST:PORT")):
        with pytest.raises(ValueError, match=why) as err:
            parse_broker_url(bad)
        assert "pw" not in str(err.value)


def test_the_slot_map_names_each_shards_healthy_master() -> None:
    topo = Topology.parse(SHARDS)
    assert topo.shards[0] == Shard(((0, 100), (101, 5460)), ("10.0.0.1", 7000), True,
                                   (("10.0.0.1", 7003),))
    # A master marked failed is still the shard's master until a replica is promoted.
    assert topo.shards[1].master == ("10.0.0.1", 7001) and not topo.shards[1].healthy
    assert [topo.owner(s) for s in (0, 100, 101, 5460, 5461, 16383)] == [
        ("10.0.0.1", 7000)] * 4 + [("10.0.0.1", 7001), ("10.0.0.1", 7002)]
    assert topo.covered()
    assert topo.masters == [("10.0.0.1", 7000), ("10.0.0.1", 7001), ("10.0.0.1", 7002)]
    assert len(topo.nodes) == 6
    assert not Topology.parse(SHARDS[:2]).covered()
    assert Topology.parse(SHARDS[:2]).owner(0) is None
    # Parsed the same whatever the order the node lists its shards in.
    assert Topology.parse(list(reversed(SHARDS))) == topo
    # A shard without a master (every master gone): no owner for its slots.
    lost = Topology.parse([[b"slots", [0, 16383], b"nodes", [_node(7003, "replica")]]])
    assert lost.owner(5) is None and lost.masters == []


def test_node_urls_carry_the_clusters_credentials() -> None:
    c = ClusterTarget((), "app", "p@ss:w/d", True)
    assert node_url(c, ("h", 7000)) == "rediss://app:p%40ss%3Aw%2Fd@h:7000/0"
    assert node_url(ClusterTarget((), None, "pw", False), ("::1", 7)) == "redis://:pw@[::1]:7/0"
    assert node_url(ClusterTarget((), "u", None, False), ("h", 7)) == "redis://u@h:7/0"
    assert node_url(ClusterTarget((), None, None, False), ("h", 7)) == "redis://h:7/0"


def test_on_a_cluster_every_script_stays_in_one_slot() -> None:
    """A room's keys and its shard channel share the room's slot; the registry's keys share
    one slot of their own; the channel names its room."""
    k = lua.Keys("wsops", cluster=True)
    for room in ("a", "lobby", "room/with:colons", "user@host.x-1_2", "x" * 128):
        slot = key_slot(k.meta(room).encode())
        assert {key_slot(x) for x in (k.log(room).encode(), k.pnodes(room).encode(),
                                      k.pres(room, "n1").encode(), k.channel(room))} == {slot}
        channel = k.channel(room)
        assert channel == f"wsops:{{{room}}}:ch".encode()
        assert channel[len(k.channel_prefix):-len(k.channel_suffix)].decode() == room
    registry = {key_slot(x.encode()) for x in (k.nodes, k.node("n1"), k.node_rooms("n1"))}
    assert len(registry) == 1
    # One Redis keeps the names it always had (nodes of mixed versions share them).
    one = lua.Keys("wsops")
    assert (one.channel("a"), one.nodes, one.node("n1")) == (
        b"wsops:room:a", "wsops:nodes", "wsops:node:n1")
    assert lua.sharded(lua.PUBLISH).count("redis.call('SPUBLISH',") == 1
    assert "redis.call('PUBLISH'," not in lua.sharded(lua.PRESENCE_SET + lua.REAP_ROOM)
