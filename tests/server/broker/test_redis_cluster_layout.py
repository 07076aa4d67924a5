"""Groundwork for the Redis Cluster broker (#19): what the key layout already gives a cluster
and what it does not yet, held against Redis' own slot function and a real 3+3 cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from tests.support.cluster import ClusterSet
from tests.support.redisproc import redis_server_binary
from wsops.server.broker import redis_scripts as lua
from wsops.server.core.protocol import ROOM_RE

ROOMS = ("a", "lobby", "room/with:colons", "user@host.x-1_2", "x" * 128)  # protocol.ROOM_RE


def test_every_key_of_a_room_is_in_the_room_slot() -> None:
    """Meta, log, presence and its node set share one slot, so each room's scripts are
    single-slot on a cluster. The live channel does not yet (``prefix:room:<room>``, no hash
    tag): SPUBLISH from the publish script needs it in the room's slot (the test below)."""
    k = lua.Keys("wsops")
    for room in ROOMS:
        assert ROOM_RE.fullmatch(room)
        slot = key_slot(k.meta(room).encode())
        assert {key_slot(key.encode()) for key in (
            k.log(room), k.pnodes(room), k.pres(room, "node-1"))} == {slot}, room


@pytest.fixture
async def cluster() -> AsyncIterator[ClusterSet]:
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed")
    c = ClusterSet()
    try:
        await asyncio.to_thread(c.start)
        yield c
    finally:
        await asyncio.to_thread(c.close)


@pytest.mark.slow
async def test_the_publish_script_runs_per_room_on_a_cluster_and_spublish_needs_the_slot(
    cluster: ClusterSet,
) -> None:
    k = lua.Keys("wsops")
    sharded = lua.PUBLISH.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")
    rc = RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port, protocol=2)
    try:
        await rc.initialize()
        plain, spub = rc.register_script(lua.PUBLISH), rc.register_script(sharded)
        owners = set()
        for i, room in enumerate(ROOMS):
            args = ["e1", 100, 60000, 0, '{"x":', "}", "|1|1|", "1"]
            first = await plain(keys=[k.meta(room), k.log(room)], args=[k.channel(room), *args])
            tagged = f"wsops:{{{room}}}:ch"
            second = await spub(keys=[k.meta(room), k.log(room)], args=[tagged, *args])
            assert [first[0], second[0]] == [b"1", b"2"], room
            owners.add(rc.get_node_from_key(k.meta(room)).port)  # type: ignore[union-attr]
            if i == 0:
                with pytest.raises(Exception, match="non local key"):
                    await spub(keys=[k.meta(room), k.log(room)], args=[k.channel(room), *args])
        assert len(owners) > 1  # the rooms are spread over the shards
    finally:
        await rc.aclose()
