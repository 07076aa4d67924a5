"""Acknowledged publishes lost across a Redis master kill, per ``--broker-ack`` mode.

Each round starts a master, two replicas and three sentinels (``tests/support/sentinel.py``),
two wsops nodes on ``redis+sentinel://`` and ``--publishers`` clients publishing as fast as
their acks come back (one in flight each), kills the master with SIGKILL after ``--warmup``
seconds, lets the publishers go on until ``--after`` seconds past the failover, then reads
every message the new master holds. A publish is lost when it was acknowledged (not as an
island message: those wait in the node's memory and are counted apart) and is not in the log.

    python bench/ackloss.py --rounds 5 --json bench/results/ackloss-19.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.sentinel import SentinelSet  # noqa: E402
from wsops.client import Client, ClientError  # noqa: E402
from wsops.config import Settings  # noqa: E402
from wsops.server.app import NODE_KEY, running  # noqa: E402


async def _publisher(client: Client, room: str, me: int, stop: asyncio.Event,
                     acked: dict[str, bool], refused: list[int]) -> None:
    n = 0
    while not stop.is_set():
        data = f"{me}-{n}"
        n += 1
        try:
            ack = await client.publish(room, data, timeout=2.0)
        except (ClientError, TimeoutError):
            refused[0] += 1
            await asyncio.sleep(0.01)
        else:
            acked[data] = ack.local


async def one_round(ack: str, publishers: int, warmup: float, after: float) -> dict[str, Any]:
    s = SentinelSet()
    await asyncio.to_thread(s.start)
    try:
        url = f"{s.url}?heartbeat=0.5&timeout=1"
        settings = Settings(host="127.0.0.1", port=0, admin_port=None, allow_anonymous=True,
                            broker=url, broker_ack=ack, rate_limit=100_000.0,
                            rate_burst=100_000, history_size=1_000_000)
        async with contextlib.AsyncExitStack() as stack:
            served = [await stack.enter_async_context(running(settings)) for _ in range(2)]
            ports = [port for _, _, port in served]
            brokers = [app[NODE_KEY].broker for app, _, _ in served]
            clients = [await stack.enter_async_context(
                Client(f"ws://127.0.0.1:{ports[i % 2]}/ws", backoff_base=0.02, backoff_cap=0.2))
                for i in range(publishers)]
            acked: dict[str, bool] = {}
            refused = [0]
            stop = asyncio.Event()
            tasks = [asyncio.create_task(_publisher(c, "r", i, stop, acked, refused))
                     for i, c in enumerate(clients)]
            await asyncio.sleep(warmup)
            before = len(acked)
            killed = time.monotonic()
            s.master.stop()
            await asyncio.to_thread(s.wait_failover, 30.0)
            failover = time.monotonic() - killed
            await asyncio.sleep(after)
            stop.set()
            await asyncio.gather(*tasks)
            settle_start = time.monotonic()
            while any(b.stats().get("island_pending") for b in brokers):
                if time.monotonic() - settle_start > 300:
                    break
                await asyncio.sleep(0.2)  # island messages stored before the nodes stop
            settled_s = time.monotonic() - settle_start
            stored = await _stored(s)
        island = {d for d, local in acked.items() if local}
        lost = [d for d, local in acked.items() if not local and d not in stored]
        return {"ack": ack, "acked": len(acked), "acked_before_kill": before,
                "island_acked": len(island), "island_lost": len(island - stored),
                "refused": refused[0], "lost": len(lost), "failover_s": round(failover, 2),
                "island_settle_s": round(settled_s, 1)}
    finally:
        await asyncio.to_thread(s.close)


async def _stored(s: SentinelSet) -> set[str]:
    import redis.asyncio as aioredis

    port = s.master_port()
    assert port is not None, "no sentinel names a master"
    r = aioredis.Redis(port=port)
    try:
        rows = await r.xrange("wsops:{r}:log", "-", "+")
    finally:
        await r.aclose()
    out = set()
    for _, fields in rows:  # each a whole message frame's JSON text
        out.add(json.loads(fields[b"p"])["data"])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="master kills per mode")
    p.add_argument("--publishers", type=int, default=32)
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before the kill")
    p.add_argument("--after", type=float, default=2.0, help="seconds after the failover")
    p.add_argument("--modes", nargs="+", default=["master", "replica"])
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    results = []
    for mode in args.modes:
        for i in range(args.rounds):
            r = asyncio.run(one_round(mode, args.publishers, args.warmup, args.after))
            print(f"{mode} #{i + 1}: {r}", flush=True)
            results.append(r)
    for mode in args.modes:
        rs = [r for r in results if r["ack"] == mode]
        print(f"{mode}: lost {sum(r['lost'] for r in rs)} of {sum(r['acked'] for r in rs)} "
              f"acked over {len(rs)} kills (per kill: {[r['lost'] for r in rs]})")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "rounds": results}, indent=1))


if __name__ == "__main__":
    main()
