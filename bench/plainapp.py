"""A user's own aiohttp echo app, plain and wrapped with ``wsops.instrument(app)``: server CPU
per message, side by side (issue #17: wrapped / plain <= 1.05).

    python bench/plainapp.py [--connections 50 --seconds 3 --repeat 8 --json FILE]
    python bench/plainapp.py --instructions     # user-space instructions per message

The app is what a user writes (``async for msg in ws: await ws.send_str(msg.data)``), served by
``web.run_app``-style runners in two processes of their own: one plain, one instrumented with
the defaults (metrics, runtime health, an admin listener scraped every 5 s like a Prometheus
would; tracing has no exporter unless ``OTEL_*`` says so, as for a user who set none). Both run
on uvloop, pinned to the last CPU; the clients (this process) to the others. Each round sends
messages for ``--seconds`` on every connection, one in flight per connection, to one server;
rounds alternate plain, wrapped, plain, ... Figure: the server process' CPU time (user +
system) in its rounds divided by the messages echoed; ratio: median of the rounds' pairs.

``--instructions`` counts instead, with valgrind's callgrind, the instructions each server
executes in user space per echoed message (10 connections; collection switched on after a
warm-up; the difference of a 1,000- and a 4,000-message run, so start-up and timers cancel
out): repeatable to a few instructions whatever else the machine does, blind to the kernel's
share (about half of the CPU time here), so its ratio overstates the CPU time ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import psutil


def serve(port: int, admin_port: int, instrumented: bool) -> None:
    import uvloop
    from aiohttp import web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/echo", echo)
        if instrumented:
            import wsops

            wsops.instrument(app, admin_port=admin_port)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, name: str, instrumented: bool, cpu: int | None) -> None:
        self.name, self.port, self.admin = name, free_port(), free_port()
        self.instrumented = instrumented
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.port), str(self.admin),
             "1" if instrumented else "0"], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline() != b"ready\n":
            raise SystemExit(f"{name} did not start")
        self.ps = psutil.Process(self.proc.pid)
        if cpu is not None:
            self.ps.cpu_affinity([cpu])
        self.cpu_seconds = 0.0
        self.messages = 0
        self.rounds: list[float] = []

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


async def run_round(conns: list[aiohttp.ClientWebSocketResponse], seconds: float) -> int:
    end = time.monotonic() + seconds
    payload = json.dumps({"text": "x" * 40})

    async def one(ws: aiohttp.ClientWebSocketResponse) -> int:
        n = 0
        while time.monotonic() < end:
            await ws.send_str(payload)
            await ws.receive_str()
            n += 1
        return n

    return sum(await asyncio.gather(*(one(ws) for ws in conns)))


async def scraper(servers: list[Server], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        for s in servers:
            if s.instrumented:
                url = f"http://127.0.0.1:{s.admin}/metrics"
                await loop.run_in_executor(None, lambda u=url: urllib.request.urlopen(
                    u, timeout=5).read())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 5.0)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    cpus = os.sched_getaffinity(0)
    pin = len(cpus) >= 2 and not args.no_pin
    server_cpu = max(cpus) if pin else None
    if pin:
        os.sched_setaffinity(0, cpus - {server_cpu})
    servers = [Server("plain", False, server_cpu), Server("wrapped", True, server_cpu)]
    stop = asyncio.Event()
    try:
        async with aiohttp.ClientSession() as session:
            conns = {s.name: [await session.ws_connect(f"ws://127.0.0.1:{s.port}/echo")
                              for _ in range(args.connections)] for s in servers}
            scraping = asyncio.create_task(scraper(servers, stop))
            for s in servers:  # warm-up, unmeasured
                await run_round(conns[s.name], 1.0)
            for _ in range(args.repeat):
                for s in servers:
                    before = s.cpu()
                    n = await run_round(conns[s.name], args.seconds)
                    spent = s.cpu() - before
                    s.cpu_seconds += spent
                    s.messages += n
                    s.rounds.append(spent / n * 1e6)
            stop.set()
            await scraping
            for ws_list in conns.values():
                for ws in ws_list:
                    await ws.close()
    finally:
        for s in servers:
            s.stop()
    plain, wrapped = servers
    pairs = [w / p for p, w in zip(plain.rounds, wrapped.rounds, strict=True)]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "pinned": pin,
        "us_per_message": {s.name: {"median": statistics.median(s.rounds),
                                    "rounds": [round(r, 2) for r in s.rounds],
                                    "messages": s.messages} for s in servers},
        "ratio_median_of_pairs": statistics.median(pairs),
        "ratio_pairs": [round(r, 3) for r in pairs],
        "ratio_pooled": (wrapped.cpu_seconds / wrapped.messages)
        / (plain.cpu_seconds / plain.messages),
    }


def instructions(instrumented: bool, messages: int) -> int:
    """User-space instructions of one server while it echoes ``messages`` messages."""
    import tempfile

    from benchprocs import callgrind_total

    port, admin = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
             sys.executable, __file__, "--serve", str(port), str(admin),
             "1" if instrumented else "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        if proc.stdout.readline() != b"ready\n":
            raise SystemExit("the server did not start under valgrind")

        def toggle(state: str) -> None:
            subprocess.run(["callgrind_control", "-i", state, str(proc.pid)], check=True,
                           capture_output=True)

        async def drive() -> None:
            payload = json.dumps({"text": "x" * 40})
            async with aiohttp.ClientSession() as session:
                conns = [await session.ws_connect(f"ws://127.0.0.1:{port}/echo")
                         for _ in range(10)]

                async def one(ws: aiohttp.ClientWebSocketResponse, n: int) -> None:
                    for _ in range(n):
                        await ws.send_str(payload)
                        await ws.receive_str()

                await asyncio.gather(*(one(ws, 50) for ws in conns))  # warm-up
                toggle("on")
                await asyncio.gather(*(one(ws, messages // 10) for ws in conns))
                toggle("off")
                for ws in conns:
                    await ws.close()

        try:
            asyncio.run(drive())
        finally:
            proc.terminate()
            proc.wait()
        return callgrind_total(out)


def count_instructions() -> dict[str, float]:
    out: dict[str, float] = {}
    for name, instrumented in (("plain", False), ("wrapped", True)):
        small, large = instructions(instrumented, 1000), instructions(instrumented, 4000)
        out[name] = (large - small) / 3000
        print(f"{name:8s} {out[name]:9,.0f} instructions/message", flush=True)
    out["ratio"] = out["wrapped"] / out["plain"]
    print(f"wrapped / plain: {out['ratio']:.3f} (user space only)")
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1")
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=8)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--instructions", action="store_true",
                        help="count user-space instructions per message with callgrind instead")
    args = parser.parse_args()
    if args.instructions:
        counted = count_instructions()
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "instructions_per_message": counted}, indent=2) + "\n")
        return
    result = asyncio.run(bench(args))
    for name, r in result["us_per_message"].items():
        print(f"{name:8s} {r['median']:6.2f} us/message (rounds {r['rounds']}, "
              f"{r['messages']:,} messages)")
    print(f"wrapped / plain: {result['ratio_median_of_pairs']:.3f} (median of pairs "
          f"{result['ratio_pairs']}), pooled {result['ratio_pooled']:.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
