"""Publishing from a backend (issue #22): through the server API and through
``wsops.Publisher``: calls/s, publishes/s and the latency from the call to the subscriber,
against ``wsops serve --api-port`` (instrumented, defaults), on a private Redis
(``--broker redis``, the default) or the in-memory broker (``--broker memory``: no Publisher).

The node (and its redis-server) run pinned to CPU 0; this script (the backend calling the API
over keep-alive HTTP connections or publishing with one ``wsops.Publisher``, and one WebSocket
subscriber of the room) pinned to CPU 1. Phases, each against the same node, one after the
other:

- ``closed``: ``--concurrency`` callers publishing one message per call as fast as answers
  come (saturation): calls/s, call p50/p99, and the subscriber's delivery p50/p99 (from the
  moment the call was sent to the message's arrival: the whole path a backend sees);
- ``batch``: the same callers, 100 publishes per ``batch`` call: publishes/s;
- ``paced``: ``--rate`` single publishes per second, spread evenly: call and delivery latency
  below saturation;
- ``publisher`` and ``publisher-paced`` (Redis only): the same as ``closed`` and ``paced``
  with ``wsops.Publisher.publish`` instead of an API call.

Run: ``python bench/apicost.py [--seconds 10] [--broker redis|memory]
[--json bench/results/apicost.json]`` (about 60 s; only 127.0.0.1; the node and Redis are
stopped at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

import wsops

KEY = "bench-api-key-" + "0" * 24
ROOM = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_redis(where: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", where], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    os.sched_setaffinity(proc.pid, {0})
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def start_node(broker: str) -> tuple[subprocess.Popen[bytes], int, int]:
    port, admin, api = free_port(), free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsops", "serve", "--allow-anonymous", "--port", str(port),
         "--admin-port", str(admin), "--api-port", str(api), "--api-rate", "1000000",
         "--broker", broker],
        env={**os.environ, "WSOPS_API_KEYS": KEY}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    os.sched_setaffinity(proc.pid, {0})
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1):
                return proc, port, api
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the node did not start")


class Subscriber:
    """One WebSocket subscriber of ROOM: arrival time of each message, by its data's ``n``."""

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}

    async def run(self, url: str, ready: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"op": "subscribe", "room": ROOM, "id": 1}))
            async for msg in ws:
                data = json.loads(msg.data)
                if data.get("op") == "reply":
                    ready.set()
                elif data.get("op") == "message":
                    n = data["data"]
                    self.arrived[n[0] if isinstance(n, list) else n] = time.perf_counter()


Send = Callable[[list[int]], Awaitable[None]]


async def drive(sub: Subscriber, kind: str, send: Send, per_call: int, seconds: float,
                concurrency: int, rate: float, first: int) -> tuple[dict[str, Any], int]:
    """Calls of ``send`` (``per_call`` numbered publishes each): closed loops of
    ``concurrency`` callers, or ``rate`` calls/s when ``kind`` ends in ``paced``."""
    sent: dict[int, float] = {}
    calls: list[float] = []
    counter = [first]

    async def one(t0: float) -> None:
        ns = list(range(counter[0], counter[0] + per_call))
        counter[0] += per_call
        for n in ns:
            sent[n] = t0
        await send(ns)
        calls.append(time.perf_counter() - t0)

    start = time.perf_counter()
    end = start + seconds
    if kind.endswith("paced"):
        k = 0
        pending: set[asyncio.Task[None]] = set()
        while (due := start + k / rate) < end:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            task = asyncio.create_task(one(time.perf_counter()))
            pending.add(task)
            task.add_done_callback(pending.discard)
            k += 1
        await asyncio.gather(*pending)
    else:
        async def caller() -> None:
            while time.perf_counter() < end:
                await one(time.perf_counter())
        await asyncio.gather(*(caller() for _ in range(concurrency)))
    took = time.perf_counter() - start
    await asyncio.sleep(1.0)  # the last deliveries
    delivery = [sub.arrived[n] - t for n, t in sent.items() if n in sub.arrived]
    return {"phase": kind, "seconds": round(took, 2), "calls": len(calls),
            "calls_per_s": round(len(calls) / took), "publishes": len(sent),
            "publishes_per_s": round(len(sent) / took),
            "delivered": len(delivery), "lost": len(sent) - len(delivery),
            "call_p50_ms": round(1000 * pct(calls, 0.5), 2),
            "call_p99_ms": round(1000 * pct(calls, 0.99), 2),
            "delivery_p50_ms": round(1000 * pct(delivery, 0.5), 2),
            "delivery_p99_ms": round(1000 * pct(delivery, 0.99), 2)}, counter[0]


async def api_phase(api: str, sub: Subscriber, kind: str, args: argparse.Namespace,
                    first: int) -> tuple[dict[str, Any], int]:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    conn = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=conn) as s:

        async def send(ns: list[int]) -> None:
            if kind == "batch":
                body: dict[str, Any] = {"calls": [
                    {"method": "publish", "params": {"room": ROOM, "data": [n]}} for n in ns]}
                path = "/api/batch"
            else:
                body, path = {"room": ROOM, "data": ns[0]}, "/api/publish"
            async with s.post(api + path, data=json.dumps(body), headers=headers) as r:
                await r.read()
                assert r.status == 200, r.status

        return await drive(sub, kind, send, 100 if kind == "batch" else 1, args.seconds,
                           args.concurrency, args.rate, first)


async def publisher_phase(redis_url: str, sub: Subscriber, kind: str,
                          args: argparse.Namespace, first: int) -> tuple[dict[str, Any], int]:
    async with wsops.Publisher(redis_url) as pub:

        async def send(ns: list[int]) -> None:
            await pub.publish(ROOM, ns[0])

        return await drive(sub, kind, send, 1, args.seconds, args.concurrency, args.rate,
                           first)


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    where = tempfile.mkdtemp(prefix="wsops-bench-redis-")
    redis, redis_url = start_redis(where) if args.broker == "redis" else (None, "memory")
    try:
        proc, port, api_port = start_node(redis_url)
        os.sched_setaffinity(0, {1})
        try:
            sub = Subscriber()
            ready = asyncio.Event()
            reader = asyncio.create_task(sub.run(f"ws://127.0.0.1:{port}/ws", ready))
            await asyncio.wait_for(ready.wait(), 10)
            api = f"http://127.0.0.1:{api_port}"
            out: list[dict[str, Any]] = []
            first = 1
            for kind in ("closed", "batch", "paced"):
                row, first = await api_phase(api, sub, kind, args, first)
                out.append({"broker": args.broker, **row})
                print(json.dumps(out[-1]), flush=True)
            if redis is not None:
                for kind in ("publisher", "publisher-paced"):
                    row, first = await publisher_phase(redis_url, sub, kind, args, first)
                    out.append({"broker": args.broker, **row})
                    print(json.dumps(out[-1]), flush=True)
            reader.cancel()
            return out
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    finally:
        if redis is not None:
            redis.kill()
            redis.wait(10)
        shutil.rmtree(where, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument("--concurrency", type=int, default=16, help="callers at once")
    parser.add_argument("--rate", type=float, default=1000.0, help="paced publishes/s")
    parser.add_argument("--broker", choices=("redis", "memory"), default="redis",
                        help="the node's broker (a private redis-server on CPU 0, or memory)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args()
    rows = asyncio.run(main_async(args))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
