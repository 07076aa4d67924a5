"""Idle memory per connection of one server: RSS growth over N idle connections, divided by N.

``measure_idle`` starts the server pinned to ``server_cpus`` and one ``loadworker.py`` pinned
to ``loader_cpus`` (psutil's ``cpu_affinity``, what ``taskset`` does), then:

1. opens ``warmup`` connections and keeps them (first-connection costs: lazy imports, code
   caches, Node's JIT, allocator arenas, are paid here, not by the N below), waits until the
   server's RSS settles and reads it: ``rss_before``;
2. opens ``connections`` more, idle: wsops subscribers each send one ``subscribe`` first, one
   room per ``per_room`` connections, and wait for the reply; socket.io clients complete the
   Engine.IO open and the namespace connect; the others only do the upgrade;
3. holds them at least ``hold`` seconds (heartbeats run: wsops pings every 20 s by default,
   Engine.IO every 25 s; the clients answer) and until the RSS moved less than
   ``max(256 KiB, 0.5%)`` over the last ``quiet`` seconds: ``rss_after``.

The figure is ``(rss_after - rss_before) / opened`` in KiB (``opened``: of the
``connections``, those that opened), RSS of the server process and
its children (psutil ``memory_info().rss``). USS (``memory_full_info().uss``) is recorded too.
The phase is bounded by ``time_limit``; the worker closes its connections before the server is
stopped (wsops drains on SIGTERM 100 connections per 0.5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
from benchprocs import ServerProcess, WorkerProcess, cpu_seconds

KIB = 1024


@dataclass
class IdleResult:
    """One server's idle-memory measurement."""

    server: str
    rep: int
    connections: int
    warmup: int
    per_room: int | None
    opened: int
    open_at_end: int
    server_established: int | None
    failures: list[str]
    seconds_to_open: float
    server_cpu_open_s: float
    rss_start: int
    rss_before: int
    rss_after: int
    uss_before: int | None
    uss_after: int | None
    settled: bool
    held_s: float
    kib_per_connection: float
    uss_kib_per_connection: float | None
    server_cpus: list[int] | None
    loader_cpus: list[int] | None
    rss_samples: list[tuple[float, int]] = field(default_factory=list)  # (s, KiB) while held


def tree(ps: psutil.Process) -> list[psutil.Process]:
    try:
        return [ps, *ps.children(recursive=True)]
    except psutil.Error:
        return [ps]


def rss_bytes(ps: psutil.Process) -> int:
    return int(sum(p.memory_info().rss for p in tree(ps)))


def uss_bytes(ps: psutil.Process) -> int | None:
    try:
        return int(sum(p.memory_full_info().uss for p in tree(ps)))
    except psutil.Error:
        return None


def established(ps: psutil.Process, port: int) -> int | None:
    """Established TCP connections of the server on its listening ``port``."""
    try:
        return sum(1 for p in tree(ps) for c in p.net_connections(kind="tcp")
                   if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port)
    except psutil.Error:
        return None


async def settle(ps: psutil.Process, hold: float, quiet: float, time_limit: float,
                 samples: list[tuple[float, int]] | None = None) -> tuple[int, bool, float]:
    """Poll the RSS every 0.5 s until ``hold`` seconds passed and it moved less than
    ``max(256 KiB, 0.5%)`` over the last ``quiet`` seconds (or ``time_limit``): (RSS, settled,
    seconds waited)."""
    t0 = time.monotonic()
    seen: list[tuple[float, int]] = []
    while True:
        now = time.monotonic() - t0
        rss = await asyncio.to_thread(rss_bytes, ps)
        seen.append((now, rss))
        if samples is not None:
            samples.append((round(now, 1), rss // KIB))
        window = [r for t, r in seen if t >= now - quiet]
        steady = (now - seen[0][0] >= quiet
                  and max(window) - min(window) <= max(256 * KIB, rss // 200))
        if now >= hold and steady:
            return rss, True, now
        if now >= time_limit:
            return rss, False, now
        await asyncio.sleep(0.5)


async def open_idle(worker: WorkerProcess, server: ServerProcess, n: int, first: int,
                    per_room: int | None, time_limit: float) -> dict[str, Any]:
    cmd: dict[str, Any] = {"cmd": "open", "n": n, "subscribe": server.subscribe,
                           "time_limit": time_limit}
    if server.subscribe is not None and per_room:
        cmd.update(per_room=per_room, first=first)
    return await worker.call(cmd, time_limit + 30)


async def measure_idle(name: str, kind: str, extra_args: Sequence[str], args: Any, logdir: Path,
                       rep: int, *, env: dict[str, str] | None = None,
                       server_cpus: list[int] | None = None,
                       loader_cpus: list[int] | None = None) -> IdleResult:
    """See the module docstring. ``args``: ``idle_connections``, ``idle_warmup``,
    ``idle_per_room``, ``idle_hold``, ``idle_timeout``."""
    n, warm = args.idle_connections, args.idle_warmup
    # "{room}" is replaced by room-<index // per_room> in each subscriber's frame.
    server = ServerProcess(kind, n + warm, logdir, "{room}", name=f"{name}-idle",
                           extra_args=extra_args, env=env, cpus=server_cpus)
    worker: WorkerProcess | None = None
    label = f"{name} idle #{rep}"
    try:
        async with asyncio.timeout(args.idle_timeout):
            await server.wait_ready()
            rss_start = await asyncio.to_thread(rss_bytes, server.ps)
            worker = await WorkerProcess.start(server.port, warm, server.path, server.dialect)
            if loader_cpus:
                worker.ps.cpu_affinity(loader_cpus)
            failures: list[str] = []
            warm_opened = 0
            if warm:
                got = await open_idle(worker, server, warm, 0, args.idle_per_room, 60.0)
                failures += got["failures"]
                warm_opened = got["opened"]
            rss_before, _, _ = await settle(server.ps, 2.0, 2.0, 20.0)
            uss_before = await asyncio.to_thread(uss_bytes, server.ps)
            cpu0 = cpu_seconds(server.ps)
            got = await open_idle(worker, server, n, warm, args.idle_per_room, 120.0)
            opened = got["opened"] - warm_opened
            failures += got["failures"]
            cpu_open = cpu_seconds(server.ps) - cpu0
            print(f"  [{label}] {opened}/{n} idle connections open in {got['seconds']:.1f}s "
                  f"(+{warm} warm-up), server CPU {cpu_open:.2f}s; holding {args.idle_hold:g}s",
                  flush=True)
            samples: list[tuple[float, int]] = []
            rss_after, settled, held = await settle(
                server.ps, args.idle_hold, 3.0, args.idle_hold + 30, samples)
            uss_after = await asyncio.to_thread(uss_bytes, server.ps)
            await worker.call({"cmd": "arm"}, 10.0)
            report = await worker.call({"cmd": "wait", "each": 0, "time_limit": 0.1}, 10.0)
            closed = sum(report["closed"].values())
            est = await asyncio.to_thread(established, server.ps, server.port)
    finally:
        if worker is not None:
            await worker.stop()
        await asyncio.to_thread(server.stop)
    per = max(opened, 1)
    kib = (rss_after - rss_before) / per / KIB
    uss_kib = ((uss_after - uss_before) / per / KIB
               if uss_after is not None and uss_before is not None else None)
    result = IdleResult(
        server=name, rep=rep, connections=n, warmup=warm,
        per_room=args.idle_per_room if server.subscribe is not None else None,
        opened=opened, open_at_end=report["subscribers"] - closed - warm_opened,
        server_established=None if est is None else est - warm_opened, failures=failures,
        seconds_to_open=got["seconds"], server_cpu_open_s=cpu_open, rss_start=rss_start,
        rss_before=rss_before, rss_after=rss_after, uss_before=uss_before, uss_after=uss_after,
        settled=settled, held_s=held, kib_per_connection=kib, uss_kib_per_connection=uss_kib,
        server_cpus=server_cpus, loader_cpus=loader_cpus, rss_samples=samples)
    print(f"  [{label}] RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB: "
          f"{kib:.2f} KiB per connection (USS "
          f"{'-' if uss_kib is None else format(uss_kib, '.2f')}), {result.open_at_end} open at "
          f"the end, server sees {result.server_established}"
          f"{'' if settled else ', RSS NOT SETTLED'}", flush=True)
    return result


def pinning(no_pin: bool) -> tuple[list[int] | None, list[int] | None]:
    """(server CPUs, loader CPUs): the last CPU for the server, the others for the loader."""
    with contextlib.suppress(AttributeError, psutil.Error):
        cpus = sorted(psutil.Process().cpu_affinity())
        if not no_pin and len(cpus) >= 2:
            return [cpus[-1]], cpus[:-1]
    return None, None
