"""Fan-out benchmark: server CPU per delivered message, ``wsops serve`` against naive aiohttp.

Each repetition starts one server at a time (wsops, then the naive peer: A B A B ...), opens the
subscribers in separate worker processes (``loadworker.py``), and measures two modes on the
same connections:

- ``burst``: the publisher writes all ``--messages`` publish frames back to back in one write.
- ``paced``: one publish in flight at a time: publish, wait until every subscriber has it, sleep
  ``--gap-ms``, repeat ``--paced-messages`` times.

Both servers get byte-identical publish frames (wsops ``publish`` JSON with a 64-character
``data`` string); the naive peer rebroadcasts the frame text unchanged to every other socket.
The figure is the server process's CPU time (user + system, psutil) from just before the first
publish until every subscriber counted every message (or the timeout), divided by the messages
the subscribers counted. Only 127.0.0.1 is used; every process started is killed on exit.

With ``--latency``, each paced publish carries its send time (``wsload.stamp_data``) and the
subscribers record every delivery's publish-to-receive latency (p50/p99 per paced run).
``--servers`` also takes the other peers (``socketio``, ``node-ws``, ``picows``);
``bench/peers.py`` runs them all, with wsops bare and instrumented.

Run: ``python bench/fanout.py [--subscribers 1000 --messages 500 --repeat 3 --json out.json]``
(the defaults keep the whole run under 2 minutes on 2 cores; the naive peer needs ~40 s of CPU
for a burst of 2000 messages to 1000 subscribers here, so raise ``--timeout`` with ``--messages``;
``--profile DIR`` writes py-spy collapsed stacks of the server for each phase)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import aiohttp
from benchprocs import (
    SERVER_KINDS,
    Profiler,
    ServerProcess,
    WorkerProcess,
    cpu_seconds,
    sys_seconds,
)
from wsload import RawWebSocket, SocketIOClient, client_frame, connect, stamp_data

from wsops.loadtest.latency import Latencies

ROOM = "bench"
SERVERS = ("wsops", "naive")  # the default pair
MODES = ("burst", "paced")


@dataclass
class Result:
    """One measured (server, mode, repetition)."""

    server: str
    mode: str
    rep: int
    messages: int
    subscribers: int
    expected: int
    received: int
    losses: int
    complete: bool
    seconds: float
    server_cpu_s: float
    server_sys_s: float
    loader_cpu_s: float
    us_per_delivery: float
    deliveries_per_s: float
    min_each: int
    closed: dict[str, int] = field(default_factory=dict)
    latency: dict[str, Any] | None = None  # paced with --latency: Latencies.summary() (ms)


def publish_frame(i: int, room: str = ROOM, dialect: str = "raw",
                  stamp_ns: int | None = None) -> bytes:
    """A masked client frame of publish ``i`` with a 64-character data string (carrying
    ``stamp_ns`` if given). ``raw``: the wsops publish JSON; ``socketio``: the same JSON object
    as the argument of a ``publish`` event."""
    data = f"{i:010d}-" + "x" * 53 if stamp_ns is None else stamp_data(stamp_ns, f"{i:010d}")
    text = json.dumps({"op": "publish", "room": room, "id": i, "data": data},
                      separators=(",", ":"))
    if dialect == "socketio":
        return SocketIOClient.event_frame("publish", text)
    return client_frame(text.encode())


def publish_frames(first_id: int, count: int, room: str = ROOM,
                   dialect: str = "raw") -> list[bytes]:
    """Masked client frames of ``count`` publishes (see ``publish_frame``)."""
    return [publish_frame(i, room, dialect) for i in range(first_id, first_id + count)]


class Session:
    """One server instance with its subscribers and publisher; runs the modes on it."""

    def __init__(self, server: ServerProcess, workers: list[WorkerProcess],
                 publisher: RawWebSocket, args: argparse.Namespace, profiler: Profiler) -> None:
        self.server = server
        self.workers = workers
        self.publisher = publisher
        self.args = args
        self.next_id = 10
        self.profiler = profiler

    async def all(self, cmd: dict[str, Any], wait: float) -> list[dict[str, Any]]:
        """The same command to every worker; their answers."""
        return list(await asyncio.gather(*(w.call(cmd, wait) for w in self.workers)))

    async def settle(self) -> None:
        await self.all({"cmd": "settle", "quiet": 0.3, "time_limit": 30.0}, 40.0)

    def frames(self, count: int) -> list[bytes]:
        frames = publish_frames(self.next_id, count, dialect=self.server.dialect)
        self.next_id += count
        return frames

    async def warm_up(self, count: int) -> None:
        frames = self.frames(count)
        await self.all({"cmd": "arm"}, 5.0)
        self.publisher.write_raw(b"".join(frames))
        await self.all({"cmd": "wait", "each": count, "time_limit": 30.0}, 40.0)
        await self.settle()

    async def measure(self, mode: str, rep: int) -> Result:
        args = self.args
        count = args.messages if mode == "burst" else args.paced_messages
        latency = mode == "paced" and getattr(args, "latency", False)
        first_id = self.next_id
        frames = self.frames(count)
        blob = b"".join(frames)
        await self.all({"cmd": "arm", "latency": latency}, 5.0)
        self.profiler.start(f"{self.server.name}-{mode}-{rep}")
        loader0 = sum(cpu_seconds(w.ps) for w in self.workers)
        cpu0 = cpu_seconds(self.server.ps)
        sys0 = sys_seconds(self.server.ps)
        t0 = time.perf_counter()
        answers: list[dict[str, Any]] = []
        if mode == "burst":
            self.publisher.write_raw(blob)
            answers = await self.all(
                {"cmd": "wait", "each": count, "time_limit": args.timeout}, args.timeout + 10)
        else:
            end = time.monotonic() + args.timeout
            gap = args.gap_ms / 1000
            for i, frame in enumerate(frames, 1):
                if latency:  # stamped as it goes out (same size as the prepared frame)
                    frame = publish_frame(first_id + i - 1, ROOM, self.server.dialect,
                                          time.monotonic_ns())
                self.publisher.write_raw(frame)
                left = end - time.monotonic()
                limit = max(min(left, 2.0), 0.01)
                answers = await self.all({"cmd": "wait", "each": i, "time_limit": limit},
                                         limit + 10)
                if time.monotonic() >= end:
                    break
                await asyncio.sleep(gap)
        seconds = time.perf_counter() - t0
        cpu = cpu_seconds(self.server.ps) - cpu0
        sys_s = sys_seconds(self.server.ps) - sys0
        self.profiler.stop()
        loader = sum(cpu_seconds(w.ps) for w in self.workers) - loader0
        lat = None
        if latency:
            lat = Latencies.merged(Latencies.from_wire(h)
                                   for h in await self.all({"cmd": "latency"}, 10.0)).summary()
        subs = sum(a["subscribers"] for a in answers)
        received = sum(a["received"] for a in answers)
        closed: dict[str, int] = {}
        for a in answers:
            for code, n in a["closed"].items():
                closed[code] = closed.get(code, 0) + n
        expected = count * args.subscribers
        return Result(
            server=self.server.name, mode=mode, rep=rep, messages=count,
            subscribers=subs, expected=expected, received=received,
            losses=expected - received, complete=all(a["done"] for a in answers),
            seconds=seconds, server_cpu_s=cpu, server_sys_s=sys_s, loader_cpu_s=loader,
            us_per_delivery=cpu / received * 1e6 if received else float("nan"),
            deliveries_per_s=received / seconds if seconds > 0 else 0.0,
            min_each=min(a["min_each"] for a in answers), closed=closed, latency=lat,
        )


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


@contextlib.asynccontextmanager
async def fanout_session(server: ServerProcess, args: argparse.Namespace, profiler: Profiler,
                         rep: int) -> AsyncIterator[Session]:
    """Subscribers (``args.subscribers`` in ``args.workers`` processes) and a publisher on a
    ready ``server``, warmed up with ``args.warmup`` messages; all closed on exit."""
    workers: list[WorkerProcess] = []
    publisher: RawWebSocket | None = None
    label = f"{server.name} #{rep}"
    try:
        for n in split(args.subscribers, args.workers):
            workers.append(await WorkerProcess.start(server.port, n, server.path,
                                                     server.dialect))
        profiler.start(f"{server.name}-connect-{rep}")
        t0 = time.monotonic()
        cpu0 = cpu_seconds(server.ps)
        opened = await asyncio.gather(
            *(w.call({"cmd": "open", "subscribe": server.subscribe, "time_limit": 60.0}, 90.0)
              for w in workers)
        )
        n_open = sum(o["opened"] for o in opened)
        fails = sum(o["failure_count"] for o in opened)
        if n_open < args.subscribers or fails:
            raise RuntimeError(f"only {n_open}/{args.subscribers} subscribers: "
                               f"{[o['failures'] for o in opened]}")
        async with asyncio.timeout(10.0):
            if server.dialect == "socketio":
                publisher = await connect("127.0.0.1", server.port, server.path,
                                          factory=lambda: SocketIOClient("127.0.0.1", server.port))
                await publisher.first_text  # connected to the namespace
            else:
                publisher = await connect("127.0.0.1", server.port, server.path)
        session = Session(server, workers, publisher, args, profiler)
        await session.settle()
        profiler.stop()
        print(f"  [{label}] {n_open} subscribers ready in {time.monotonic() - t0:.1f}s, "
              f"server CPU {cpu_seconds(server.ps) - cpu0:.2f}s (not measured below)", flush=True)
        await session.warm_up(args.warmup)
        yield session
    finally:
        profiler.stop()
        if publisher is not None:
            publisher.close()
        for w in workers:
            await w.stop()


async def run_modes(session: Session, rep: int) -> list[Result]:
    """Measure every mode once on ``session``, printing each result."""
    label = f"{session.server.name} #{rep}"
    results = []
    for mode in MODES:
        r = await session.measure(mode, rep)
        results.append(r)
        lat = (f", p50 {r.latency['p50_ms']} ms, p99 {r.latency['p99_ms']} ms"
               if r.latency else "")
        print(f"  [{label}] {mode:5}: {r.us_per_delivery:6.2f} us/delivery, "
              f"{r.deliveries_per_s:>10,.0f} deliveries/s{lat}, losses {r.losses}, "
              f"{r.seconds:.2f}s, server CPU {r.server_cpu_s:.2f}s "
              f"({r.server_sys_s / r.server_cpu_s if r.server_cpu_s else 0:.0%} sys), "
              f"loader CPU {r.loader_cpu_s:.2f}s{'' if r.complete else ' (TIMEOUT)'}",
              flush=True)
        await session.settle()
    return results


async def run_server(name: str, rep: int, args: argparse.Namespace, logdir: Path, *,
                     kind: str | None = None, extra_args: tuple[str, ...] = (),
                     env: dict[str, str] | None = None) -> list[Result]:
    """Start server ``name`` (of ``kind``, default ``name``; see ``ServerProcess``), connect
    everyone, run every mode, stop everything (always)."""
    server = ServerProcess(kind or name, args.subscribers, logdir, ROOM, name=name,
                           extra_args=extra_args, env=env)
    profiler = Profiler(args.profile, server.proc.pid)
    try:
        await server.wait_ready()
        async with fanout_session(server, args, profiler, rep) as session:
            return await run_modes(session, rep)
    finally:
        profiler.stop()
        await asyncio.to_thread(server.stop)


def summarize(results: list[Result]) -> list[dict[str, Any]]:
    rows = []
    names = list(dict.fromkeys(r.server for r in results))
    for mode in MODES:
        for name in names:
            rs = [r for r in results if r.server == name and r.mode == mode]
            if not rs:
                continue
            rows.append({
                "server": name, "mode": mode, "runs": len(rs),
                "us_per_delivery": statistics.median(r.us_per_delivery for r in rs),
                "us_per_delivery_all": [round(r.us_per_delivery, 3) for r in rs],
                "deliveries_per_s": statistics.median(r.deliveries_per_s for r in rs),
                "server_cpu_util": statistics.median(r.server_cpu_s / r.seconds for r in rs),
                "losses": sum(r.losses for r in rs),
            })
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| server | mode | us CPU/delivery (median) | per run (us) | deliveries/s (median) "
           "| server CPU util | losses (sum) |",
           "|---|---|---:|---|---:|---:|---:|"]
    for row in rows:
        out.append(
            f"| {row['server']} | {row['mode']} | {row['us_per_delivery']:.2f} "
            f"| {', '.join(f'{v:.2f}' for v in row['us_per_delivery_all'])} "
            f"| {row['deliveries_per_s']:,.0f} | {row['server_cpu_util']:.0%} "
            f"| {row['losses']} |"
        )
    by = {(r["server"], r["mode"]): r["us_per_delivery"] for r in rows}
    ratios = {}
    for mode in MODES:
        if ("wsops", mode) in by and ("naive", mode) in by and by[("naive", mode)] > 0:
            ratios[mode] = by[("wsops", mode)] / by[("naive", mode)]
    out.append("")
    out.append("wsops/naive CPU per delivery: "
               + ", ".join(f"{m} {v:.2f}x" for m, v in ratios.items()))
    return "\n".join(out)


def machine() -> dict[str, Any]:
    try:
        uvloop_version: str | None = version("uvloop")
    except PackageNotFoundError:
        uvloop_version = None
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(), "machine": platform.machine(),
        "python": platform.python_version(), "aiohttp": aiohttp.__version__,
        "uvloop": uvloop_version,
    }


async def main_async(args: argparse.Namespace) -> int:
    results: list[Result] = []
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wsops-fanout-") as tmp:
        logdir = Path(tmp)
        started = time.monotonic()
        for rep in range(1, args.repeat + 1):
            for name in args.servers:
                print(f"{name} #{rep}", flush=True)
                results.extend(await run_server(name, rep, args, logdir))
        rows = summarize(results)
        print(f"\n{args.subscribers} subscribers, burst {args.messages} messages, paced "
              f"{args.paced_messages} messages with a {args.gap_ms:g} ms gap, "
              f"{args.repeat} repetitions, {time.monotonic() - started:.0f}s\n")
        print(table(rows))
    if args.json:
        doc = {"machine": machine(), "args": {k: str(v) if isinstance(v, Path) else v
                                              for k, v in vars(args).items()},
               "summary": rows,
               "runs": [asdict(r) for r in results]}
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(doc, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0 if all(r.losses == 0 for r in results) else 1


def arg_parser(description: str, timeout: float = 30.0) -> argparse.ArgumentParser:
    """The workload's options (shared with ``bench/peers.py``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=500, help="messages in the burst")
    parser.add_argument("--paced-messages", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=2.0, help="pause between paced publishes")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured messages first")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="subscriber processes (1-2)")
    parser.add_argument("--timeout", type=float, default=timeout,
                        help="per measurement, seconds")
    parser.add_argument("--json", help="write results to this file")
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 1 <= args.subscribers <= 18000:
        parser.error("--subscribers must be in 1..18000 (20000 open files per process)")
    if not 1 <= args.workers <= 4:
        parser.error("--workers must be in 1..4")


def main() -> None:
    parser = arg_parser("wsops vs naive aiohttp fan-out CPU benchmark")
    parser.add_argument("--servers", nargs="+", choices=SERVER_KINDS, default=list(SERVERS))
    parser.add_argument("--latency", action="store_true",
                        help="record publish-to-receive latency of each paced delivery")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy each phase of the server into DIR (adds overhead)")
    args = parser.parse_args()
    check_args(parser, args)
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
