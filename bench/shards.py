"""Fleet throughput, delivery latency and CPU per message: one Redis against a Redis Cluster of
1, 2 and 3 shards, at a fixed offered load, side by side.

Two ``wsops serve`` nodes (processes pinned to CPU 0); the broker's redis-servers and this
load generator on CPU 1. Publishers on node a send ``--rate`` publishes per second (open loop,
spread over ``--rooms`` rooms); one subscriber per room on node b receives each message, so
every message crosses the broker. Per configuration and round: publishes acknowledged per
second, delivery latency p50/p99 (publisher send to subscriber receive, one clock), and CPU
seconds per 1,000 messages of the nodes and of Redis (all shards), from psutil. Configurations
alternate within each round. A cluster here has no replicas (slots split evenly with
``CLUSTER ADDSLOTSRANGE``): it measures the sharded path, not replication.

    python bench/shards.py --rate 3000 --seconds 10 --rounds 3 --json bench/results/shards.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.cluster import masters_only  # noqa: E402
from tests.support.procs import start_serve  # noqa: E402
from tests.support.redisproc import RedisProc  # noqa: E402

CONFIGS = ("redis", "cluster1", "cluster2", "cluster3")
NODE_CPU, LOAD_CPU = {0}, {1}


def _broker(config: str) -> tuple[str, list[RedisProc]]:
    if config == "redis":
        proc = RedisProc()
        proc.start()
        return proc.url, [proc]
    nodes = masters_only(int(config.removeprefix("cluster")))
    return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in nodes), nodes


def _cpu(procs: list[psutil.Process]) -> float:
    return sum(p.cpu_times().user + p.cpu_times().system for p in procs)


async def _measure(url_a: str, url_b: str, rooms: int, rate: float, seconds: float
                   ) -> dict[str, Any]:
    latencies: list[float] = []
    acked = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        subs = [await session.ws_connect(url_b, max_msg_size=0) for _ in range(rooms)]
        for i, ws in enumerate(subs):
            await ws.send_str(json.dumps({"op": "subscribe", "room": f"r{i}", "id": 1}))
            while (await ws.receive_json()).get("op") != "reply":
                pass
        pubs = [await session.ws_connect(url_a, max_msg_size=0) for _ in range(4)]
        stop = time.monotonic() + seconds

        async def receive(ws: aiohttp.ClientWebSocketResponse) -> None:
            async for msg in ws:
                data = json.loads(msg.data)
                if data.get("op") == "message":
                    latencies.append(time.time() - data["data"])

        async def acks(ws: aiohttp.ClientWebSocketResponse) -> None:
            nonlocal acked
            async for msg in ws:
                if '"ok":true' in msg.data:
                    acked += 1

        readers = [asyncio.create_task(receive(ws)) for ws in subs]
        readers += [asyncio.create_task(acks(ws)) for ws in pubs]
        start, sent = time.monotonic(), 0
        while time.monotonic() < stop:  # open loop: the rate, whatever the replies do
            due = int((time.monotonic() - start) * rate)
            while sent < due:
                ws = pubs[sent % len(pubs)]
                await ws.send_str(json.dumps({"op": "publish", "room": f"r{sent % rooms}",
                                              "id": sent + 10, "data": time.time()}))
                sent += 1
            await asyncio.sleep(0.001)
        elapsed = time.monotonic() - start
        await asyncio.sleep(1.0)  # the last deliveries
        for ws in (*subs, *pubs):
            await ws.close()
        for task in readers:
            task.cancel()
    latencies.sort()

    def q(p: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {"sent": sent, "acked_per_s": acked / elapsed, "delivered": len(latencies),
            "p50_ms": q(0.5), "p99_ms": q(0.99)}


async def one(config: str, rate: float, rooms: int, seconds: float) -> dict[str, Any]:
    url, redis_procs = await asyncio.to_thread(_broker, config)
    nodes = []
    try:
        args = ("--broker", f"{url}?heartbeat=2&timeout=2", "--allow-anonymous",
                "--rate-limit", "100000", "--rate-burst", "100000")
        nodes = [await asyncio.to_thread(start_serve, *args) for _ in range(2)]
        for node in nodes:
            psutil.Process(node.proc.pid).cpu_affinity(list(NODE_CPU))
        rprocs = [psutil.Process(r.proc.pid) for r in redis_procs if r.proc is not None]
        for p in rprocs:
            p.cpu_affinity(list(LOAD_CPU))
        nprocs = [psutil.Process(n.proc.pid) for n in nodes]
        await _measure(nodes[0].url, nodes[1].url, rooms, rate, 1.0)  # warm up
        before = (_cpu(nprocs), _cpu(rprocs))
        out = await _measure(nodes[0].url, nodes[1].url, rooms, rate, seconds)
        after = (_cpu(nprocs), _cpu(rprocs))
        per_k = 1000 / max(1, out["sent"])
        out.update(config=config, node_cpu_ms_per_1k=(after[0] - before[0]) * 1000 * per_k,
                   redis_cpu_ms_per_1k=(after[1] - before[1]) * 1000 * per_k)
        return out
    finally:
        for node in nodes:
            node.stop()
        for proc in redis_procs:
            proc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=3000.0, help="publishes per second")
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.sched_setaffinity(0, LOAD_CPU)
    configs = args.configs.split(",")
    results: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for config in configs if r % 2 == 0 else reversed(configs):
            res = asyncio.run(one(config, args.rate, args.rooms, args.seconds))
            res["round"] = r
            results.append(res)
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                              for k, v in res.items()}), flush=True)
    summary = {}
    for config in configs:
        rows = [x for x in results if x["config"] == config]
        summary[config] = {k: [round(min(x[k] for x in rows), 3),
                               round(statistics.median(x[k] for x in rows), 3),
                               round(max(x[k] for x in rows), 3)]
                           for k in ("acked_per_s", "p50_ms", "p99_ms", "node_cpu_ms_per_1k",
                                     "redis_cpu_ms_per_1k")}
    print("min/median/max per configuration:")
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "results": results, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
