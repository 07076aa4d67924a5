"""What the fleet page costs a node holding many connections.

Starts ``wsops serve``, holds ``--connections`` idle connections with ``wsops loadtest idle``,
then measures two phases of ``--seconds`` each, side by side: the node alone, and the node
answering ``/admin/fleet`` as ``--viewers`` open fleet pages would (one request per viewer every
``--interval`` seconds, the page's default being 2 s). Reports the node's CPU per phase, the
request latency and the event-loop lag p99 the node itself measured.

    .venv/bin/python bench/fleetpage.py --connections 18000 --viewers 10 --interval 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import aiohttp
import psutil  # type: ignore[import-untyped]
from benchprocs import cpu_seconds, free_port
from prometheus_client.parser import text_string_to_metric_families


async def stats(session: aiohttp.ClientSession, admin: str) -> dict[str, Any]:
    async with session.get(f"{admin}/admin/stats") as resp:
        return dict(await resp.json())


async def lag_buckets(session: aiohttp.ClientSession, admin: str) -> list[tuple[float, float]]:
    """The node's event-loop lag histogram: cumulative (le, count) pairs from /metrics."""
    async with session.get(f"{admin}/metrics") as resp:
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        if family.name == "wsops_event_loop_lag_seconds":
            return sorted((float(s.labels["le"]), s.value) for s in family.samples
                          if s.name.endswith("_bucket"))
    raise SystemExit("no wsops_event_loop_lag_seconds on /metrics")


def p99(before: list[tuple[float, float]], after: list[tuple[float, float]]) -> float:
    """Upper bound of the bucket holding the 99th percentile of the lags between two reads."""
    counts = [(le, b - a) for (le, b), (_, a) in zip(after, before, strict=True)]
    total = counts[-1][1]
    return next(le for le, n in counts if n >= 0.99 * total) if total else 0.0


async def phase(session: aiohttp.ClientSession, admin: str, proc: psutil.Process,
                seconds: float, viewers: int, interval: float) -> dict[str, Any]:
    latencies: list[float] = []

    async def viewer(start_after: float) -> None:
        await asyncio.sleep(start_after)
        end = time.monotonic() + seconds - start_after
        while time.monotonic() < end:
            t0 = time.perf_counter()
            async with session.get(f"{admin}/admin/fleet") as resp:
                body = await resp.json()
                assert body["nodes"][0]["stats"]["connections"] > 0
            latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(interval)

    lag0 = await lag_buckets(session, admin)
    cpu0, t0 = cpu_seconds(proc), time.monotonic()
    await asyncio.gather(asyncio.sleep(seconds),
                         *(viewer(i * interval / max(viewers, 1)) for i in range(viewers)))
    cpu = cpu_seconds(proc) - cpu0
    wall = time.monotonic() - t0
    s = await stats(session, admin)
    out: dict[str, Any] = {
        "viewers": viewers, "requests": len(latencies), "cpu_share": round(cpu / wall, 4),
        "loop_lag_p99_ms": round(1000 * p99(lag0, await lag_buckets(session, admin)), 2),
        "connections": s["connections"],
    }
    if latencies:
        out["latency_p50_ms"] = round(1000 * statistics.median(latencies), 2)
        out["latency_max_ms"] = round(1000 * max(latencies), 2)
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=18000,
                    help="idle connections (the node has 20,000 fds here)")
    ap.add_argument("--viewers", type=int, default=10)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args()
    port, admin_port = free_port(), free_port()
    admin = f"http://127.0.0.1:{admin_port}"
    server = subprocess.Popen(  # noqa: ASYNC220 - before anything is measured
        [sys.executable, "-m", "wsops", "serve", "--allow-anonymous", "--port", str(port),
         "--admin-port", str(admin_port), "--max-connections", str(args.connections + 1000)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hold = 4 * args.seconds + 150
    load: subprocess.Popen[bytes] | None = None
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    await stats(session, admin)
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            load = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-m", "wsops", "loadtest", "idle", f"ws://127.0.0.1:{port}/ws",
                 "-c", str(args.connections), "-d", str(hold), "--sources",
                 "127.0.0.2-127.0.0.3"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            end = time.monotonic() + 120
            while (await stats(session, admin))["connections"] < args.connections:
                if time.monotonic() > end:
                    raise SystemExit("the connections did not all open")
                await asyncio.sleep(0.5)
            await asyncio.sleep(10)  # the connection storm's aftermath settles
            proc = psutil.Process(server.pid)
            phases = []
            for viewers in (0, args.viewers, 0, args.viewers):  # side by side, twice
                phases.append(await phase(session, admin, proc, args.seconds, viewers,
                                          args.interval))
                print(json.dumps(phases[-1]), file=sys.stderr)
        print(json.dumps(phases, indent=2))
    finally:
        for p in (load, server):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    asyncio.run(main())
