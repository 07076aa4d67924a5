"""Partitions between hosts: wsops nodes and Redis each in a network namespace with its own
address (``tests.support.netns``), so a fault is the network's, not a process stop:

- a node cut from its Redis (a blackhole between the two, both still reachable by everyone
  else) for four seconds, then restored;
- one shard of a Redis Cluster cut from the rest (its master's link down): the cluster fails
  over to the replica, the nodes follow; the link comes back and the old master rejoins as a
  replica;
- a node in another region: its link to Redis through a TCP proxy adding 40 ms each way
  (``tests.support.delayproxy``; the kernel here has no netem).

Two publishers (one per node, one room each, ~50/s) record every ack; subscribers on both nodes
must see every acknowledged message or an explicit gap, never a silent loss and never one twice.
The figures (acked, delivered, missing behind a gap, island messages, time to detect and to
recover) are printed and written to ``tests/artifacts/partition-*.json``; RELIABILITY.md quotes
them."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
import redis
from redis.crc import key_slot

from tests.support.acks import Publisher, in_room, never_silent, stored
from tests.support.artifacts import record
from tests.support.cluster import ClusterSet
from tests.support.delayproxy import DelayProxy
from tests.support.netns import Net, available
from tests.support.procs import ServeProcess, start_serve
from tests.support.redisproc import RedisProc, redis_server_binary
from tests.support.waits import until
from wsops.client import Client, Event, Gap, Message
from wsops.server.broker.redis_cluster import Topology

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(available() is not None, reason=str(available())),
    pytest.mark.skipif(redis_server_binary() is None, reason="redis-server is not installed"),
]

TOKEN = "partition-test-token"
OPTIONS = "heartbeat=0.5&timeout=1"
ARGS = ("--allow-anonymous", "--rate-limit", "10000", "--rate-burst", "10000")
WARM, HOLD, AFTER = 2.0, 4.0, 4.0  # seconds of traffic before, during and after the fault


@pytest.fixture
def net() -> Iterator[Net]:
    n = Net()
    try:
        yield n
    finally:
        n.close()


async def _start(broker: str, *hosts: Any) -> list[ServeProcess]:
    return [await asyncio.to_thread(start_serve, "--broker", broker, *ARGS, host=h,
                                    env={"WSOPS_ADMIN_TOKEN": TOKEN}) for h in hosts]


async def _admin(node: ServeProcess, path: str) -> tuple[int, Any]:
    """``path`` on the node's admin API (status and body; 0 when it does not answer)."""
    try:
        async with aiohttp.ClientSession() as s, s.get(
                node.admin_url + path, headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=aiohttp.ClientTimeout(total=1)) as r:
            return r.status, await (r.json() if r.content_type == "application/json"
                                    else r.text())
    except (aiohttp.ClientError, TimeoutError):
        return 0, None


async def _ready(node: ServeProcess) -> bool:
    return (await _admin(node, "/readyz"))[0] == 200


async def _timed(check: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    """Seconds until ``check`` holds (polled every 50 ms)."""
    start = time.monotonic()
    await until(check, within, step=0.05, what=what)
    return round(time.monotonic() - start, 2)


async def _scenario(a: ServeProcess, b: ServeProcess, fault: Callable[[], None],
                    heal: Callable[[], None], detect: Callable[[], Awaitable[bool]],
                    recover: Callable[[], Awaitable[bool]],
                    during: Callable[[], Awaitable[bool]] | None = None) -> dict[str, Any]:
    """Traffic on both nodes, the fault for ``HOLD`` seconds (``during``: what must come
    about while it lasts, timed from its start), then the checks and figures."""
    events: dict[str, list[Event]] = {"a": [], "b": []}
    opts: dict[str, Any] = {"backoff_base": 0.05, "backoff_cap": 0.5}
    async with Client(a.url, on_message=events["a"].append, on_gap=events["a"].append,
                      **opts) as sub_a, \
            Client(b.url, on_message=events["b"].append, on_gap=events["b"].append,
                   **opts) as sub_b, \
            Client(a.url, **opts) as pub_a_client, Client(b.url, **opts) as pub_b_client:
        for sub in (sub_a, sub_b):
            await sub.subscribe("ra")
            await sub.subscribe("rb")
        pubs = {"ra": Publisher(pub_a_client, "ra"), "rb": Publisher(pub_b_client, "rb")}
        tasks = [asyncio.create_task(p.run(10**6, WARM + HOLD + AFTER, pace=0.02))
                 for p in pubs.values()]
        await asyncio.sleep(WARM)
        fault()
        started = time.monotonic()
        detected = await _timed(detect, HOLD, "the fault noticed")
        followed = None
        if during is not None:
            followed = round(detected + await _timed(during, 20.0, "the fault dealt with"), 2)
        await asyncio.sleep(max(0.0, HOLD - (time.monotonic() - started)))
        heal()
        recovered = await _timed(recover, 30.0, "recovery")
        await asyncio.gather(*tasks)
        histories = {room: {m.data for m in await pub_b_client.history(room, 1000)}
                     for room in pubs}
        for room, pub in pubs.items():  # what nodes acked on their own was stored
            assert pub.island <= histories[room], f"island messages of {room} not stored"

        def caught_up() -> bool:  # every acked message, or a gap (checked below)
            return all(stored(in_room(events[n], room)) >= set(p.acked) - p.island
                       or any(isinstance(e, Gap) for e in in_room(events[n], room))
                       for n in events for room, p in pubs.items())

        await until(caught_up, 20.0, what="the subscribers to catch up")
    figures: dict[str, Any] = {"detect_s": detected, "recover_s": recovered}
    if followed is not None:
        figures["followed_s"] = followed
    for room, pub in pubs.items():
        lost = set(pub.acked) - histories[room]
        figures[room] = {"acked": len(pub.acked), "island": len(pub.island),
                         "refused": pub.refused, "lost_from_history": len(lost)}
        for n, evs in events.items():
            got = in_room(evs, room)
            gaps = never_silent(pub, got, continuous=False)  # asserts: no silent loss, no dup
            missing = set(pub.acked) - stored(got) - pub.island
            figures[room][f"sub_{n}"] = {"delivered": len(stored(got)), "gaps": len(gaps),
                                         "missing_behind_gap": len(missing)}
    return figures


async def test_a_node_cut_from_its_redis_and_restored_loses_nothing_silently(net: Net) -> None:
    h_redis, h_a, h_b = net.host(), net.host(), net.host()
    store = RedisProc(6379, host=h_redis)
    await asyncio.to_thread(store.start)
    try:
        a, b = await _start(f"{store.url}?{OPTIONS}", h_a, h_b)
        try:
            figures = await _scenario(
                a, b, lambda: net.block(h_a, h_redis), lambda: net.unblock(h_a, h_redis),
                detect=lambda: _not(_ready(a)), recover=lambda: _ready(a))
        finally:
            a.stop()
            b.stop()
    finally:
        store.close()
    record("partition-node-redis.json", figures)
    print("node cut from its Redis:", figures)
    # Nothing acknowledged by Redis was lost: the cut node's own publishes were island ones,
    # stored once it was back.
    assert figures["ra"]["lost_from_history"] == figures["rb"]["lost_from_history"] == 0
    assert figures["ra"]["island"] > 0 and figures["rb"]["island"] == 0


async def _not(check: Awaitable[bool]) -> bool:
    return not await check


def _master_of(cluster: ClusterSet, room: str) -> RedisProc:
    first = cluster.nodes[0]
    client = redis.Redis(host=first.address, port=first.port, protocol=2)
    try:
        topo = Topology.parse(
            client.execute_command("CLUSTER", "SHARDS"))  # type: ignore[no-untyped-call]
    finally:
        client.close()
    owner = topo.owner(key_slot(f"wsops:{{{room}}}:meta".encode()))
    return next(n for n in cluster.nodes if (n.address, n.port) == owner)


async def test_a_redis_cluster_shard_cut_from_the_rest_fails_over_and_never_silently(
    net: Net,
) -> None:
    hosts = [net.host() for _ in range(6)]
    h_a, h_b = net.host(), net.host()
    cluster = ClusterSet(hosts=hosts)
    await asyncio.to_thread(cluster.start)
    try:
        master = _master_of(cluster, "ra")
        assert _master_of(cluster, "rb") is not master  # "rb" goes on, on another shard
        cut = next(h for h in hosts if h.ip == master.address)
        a, b = await _start(f"{cluster.url}?{OPTIONS}", h_a, h_b)

        async def followed() -> bool:  # both nodes on the promoted replica, every shard up
            for node in (a, b):
                status, stats = await _admin(node, "/admin/stats")
                shards = stats["broker"]["shards"] if status == 200 else []
                if len(shards) != 3 or not all(s["up"] for s in shards) or any(
                        s["master"] == f"{master.address}:{master.port}" for s in shards):
                    return False
            return True

        try:
            figures = await _scenario(
                a, b, lambda: net.cut(cut), lambda: net.restore(cut),
                detect=lambda: _not(_ready(a)), recover=followed, during=followed)
            figures["rejoined_s"] = await _timed(
                lambda: asyncio.to_thread(cluster.ok), 30.0, "the old master back as a replica")
        finally:
            a.stop()
            b.stop()
    finally:
        await asyncio.to_thread(cluster.close)
    record("partition-cluster-shard.json", figures)
    print("cluster shard cut from the rest:", figures)
    assert figures["rb"]["lost_from_history"] == 0  # the other shard's room went on


async def test_a_node_in_another_region_gets_everything_at_the_links_latency(net: Net) -> None:
    """Node b reaches Redis through a link of 40 ms each way (a TCP delay proxy): publishes
    and deliveries both ways, every message once and in order, no gap; what the link adds to
    acknowledgements and deliveries."""
    h_redis, h_a, h_b = net.host(), net.host(), net.host()
    store = RedisProc(6379, host=h_redis)
    await asyncio.to_thread(store.start)
    proxy = await DelayProxy(net.gateway, (h_redis.ip, 6379), 0.04).start()
    try:
        a, = await _start(f"{store.url}?{OPTIONS}", h_a)
        b, = await _start(f"redis://{net.gateway}:{proxy.port}/0?{OPTIONS}", h_b)
        try:
            figures = await _regions(a, b)
        finally:
            a.stop()
            b.stop()
    finally:
        await proxy.close()
        store.close()
    record("partition-region.json", figures)
    print("a node 40 ms from Redis:", figures)
    assert figures["ack_p50_ms"]["far"] >= 80  # the round trip through the link


async def _regions(a: ServeProcess, b: ServeProcess) -> dict[str, Any]:
    got: dict[str, list[tuple[float, Message]]] = {"a": [], "b": []}
    opts: dict[str, Any] = {"backoff_base": 0.05, "backoff_cap": 0.5}
    async with Client(a.url, on_message=lambda m: got["a"].append((time.time(), m)),
                      **opts) as sub_a, \
            Client(b.url, on_message=lambda m: got["b"].append((time.time(), m)),
                   **opts) as sub_b, \
            Client(a.url, **opts) as near, Client(b.url, **opts) as far:
        for sub in (sub_a, sub_b):
            await sub.subscribe("ra")
            await sub.subscribe("rb")
        acks: dict[str, list[float]] = {"near": [], "far": []}
        for i in range(100):
            for name, client, room in (("near", near, "ra"), ("far", far, "rb")):
                start = time.monotonic()
                await client.publish(room, i)
                acks[name].append((time.monotonic() - start) * 1000)
        await until(lambda: all(len(v) == 200 for v in got.values()), 10.0,
                    what="every message delivered on both nodes")
    figures: dict[str, Any] = {"ack_p50_ms": {k: round(statistics.median(v), 1)
                                              for k, v in acks.items()}}
    for sub_node, seen in got.items():
        for room, source in (("ra", "a"), ("rb", "b")):
            msgs = [(t, m) for t, m in seen if m.room == room]
            assert [m.data for _, m in msgs] == list(range(100)), (sub_node, room)
            late = sorted((t - m.ts / 1000) * 1000 for t, m in msgs)
            figures[f"delivery_{source}_to_{sub_node}_ms"] = {
                "p50": round(late[len(late) // 2], 1), "p99": round(late[98], 1)}
    return figures
