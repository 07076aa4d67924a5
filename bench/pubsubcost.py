"""CPU per received message of a cluster's sharded pub/sub: wsops' hand-written connection
(``wsops.server.broker.resp.PubSubConnection``, one per master, ``SSUBSCRIBE``) against
redis-py's ``RedisCluster.pubsub()`` (``ssubscribe`` + ``get_sharded_message``).

A cluster of three masters (no replicas); a subscriber process per implementation, pinned to
CPU 0, subscribes ``--channels`` shard channels (spread over the masters) and counts
``--messages`` messages of ``--size`` bytes, which this process (CPU 1) sends with pipelined
``SPUBLISH``; the subscriber reports its own CPU time (user + system, from getrusage) from its
first message to its last. Implementations alternate, ``--rounds`` times.

    python bench/pubsubcost.py --messages 100000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IMPLS = ("wsops", "redis-py")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _channels(n: int) -> list[bytes]:
    return [f"wsops:{{r{i}}}:ch".encode() for i in range(n)]


async def _sub_wsops(masters: list[tuple[str, int]], channels: list[bytes], total: int) -> float:
    from redis.crc import key_slot

    from wsops.server.broker.resp import Endpoint, PubSubConnection

    got = 0
    start = 0.0
    done = asyncio.get_running_loop().create_future()

    def on_push(push: object) -> None:
        nonlocal got, start
        if type(push) is list and push[0] == b"smessage":
            if got == 0:
                start = _cpu()
            got += 1
            if got == total and not done.done():
                done.set_result(_cpu() - start)

    per = 16384 // len(masters)
    conns = [await PubSubConnection.open(Endpoint(h, p), on_push, 5.0) for h, p in masters]
    for ch in channels:
        conns[min(len(conns) - 1, key_slot(ch) // per)].subscribe([ch], sharded=True)
    await asyncio.sleep(0.5)
    print("ready", flush=True)
    used: float = await done
    for c in conns:
        c.close()
    return used


async def _sub_redispy(masters: list[tuple[str, int]], channels: list[bytes], total: int
                       ) -> float:
    from redis.asyncio.cluster import RedisCluster

    rc = RedisCluster(host=masters[0][0], port=masters[0][1], protocol=2)
    await rc.initialize()
    ps = rc.pubsub()
    await ps.ssubscribe(*channels)
    for _ in range(len(channels)):
        await ps.get_sharded_message(timeout=1.0)
    print("ready", flush=True)
    got, start = 0, 0.0
    while got < total:
        msg = await ps.get_sharded_message(ignore_subscribe_messages=True, timeout=5.0)
        if msg is not None and msg["type"] == "smessage":
            if got == 0:
                start = _cpu()
            got += 1
    used = _cpu() - start
    await ps.aclose()
    await rc.aclose()
    return used


def subscriber(impl: str, masters: list[tuple[str, int]], channels: int, total: int) -> None:
    os.sched_setaffinity(0, {0})
    chans = _channels(channels)
    run = _sub_wsops if impl == "wsops" else _sub_redispy
    used = asyncio.run(run(masters, chans, total))
    print(json.dumps({"impl": impl, "cpu_s": used, "us_per_message": used / total * 1e6}),
          flush=True)


def _publish(masters: list[tuple[str, int]], channels: int, total: int, size: int) -> None:
    import redis
    from redis.crc import key_slot

    per = 16384 // len(masters)
    clients = [redis.Redis(host=h, port=p) for h, p in masters]
    payload = b"x" * size
    chans = _channels(channels)
    pipes = [c.pipeline(transaction=False) for c in clients]
    for i in range(total):
        ch = chans[i % len(chans)]
        pipes[min(len(pipes) - 1, key_slot(ch) // per)].execute_command("SPUBLISH", ch, payload)
        if i % 500 == 499:
            for p in pipes:
                p.execute()
    for p in pipes:
        p.execute()
    for c in clients:
        c.close()


def one(impl: str, masters: list[tuple[str, int]], args: argparse.Namespace) -> dict[str, float]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--role", "sub", "--impl", impl, "--masters",
         ",".join(f"{h}:{p}" for h, p in masters), "--channels", str(args.channels),
         "--messages", str(args.messages)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    _publish(masters, args.channels, args.messages, args.size)
    out = json.loads(proc.stdout.readline())
    proc.wait(30)
    return dict(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--channels", type=int, default=30)
    parser.add_argument("--size", type=int, default=200, help="payload bytes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--role", default="main", help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="wsops", help=argparse.SUPPRESS)
    parser.add_argument("--masters", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "sub":
        masters = [(h, int(p)) for h, p in (m.rsplit(":", 1) for m in args.masters.split(","))]
        subscriber(args.impl, masters, args.channels, args.messages)
        return
    from tests.support.cluster import masters_only, node_info

    os.sched_setaffinity(0, {1})
    nodes = masters_only(3)
    try:
        for n in nodes:  # a slow subscriber must not be cut off by its output buffer
            node_info(n, "CONFIG", "SET", "client-output-buffer-limit", "pubsub 0 0 0")
        masters = [(n.address, n.port) for n in nodes]
        results: dict[str, list[float]] = {impl: [] for impl in IMPLS}
        for r in range(args.rounds):
            for impl in IMPLS if r % 2 == 0 else reversed(IMPLS):
                res = one(impl, masters, args)
                results[impl].append(res["us_per_message"])
                print(json.dumps(res), flush=True)
        for impl, values in results.items():
            print(f"{impl}: {min(values):.2f} / {statistics.median(values):.2f} / "
                  f"{max(values):.2f} us of CPU per message (min / median / max)")
        print(f"redis-py / wsops (medians): "
              f"{statistics.median(results['redis-py']) / statistics.median(results['wsops']):.2f}")
    finally:
        for n in nodes:
            n.close()


if __name__ == "__main__":
    main()
