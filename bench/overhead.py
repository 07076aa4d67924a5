"""Instrumentation overhead: server CPU per message of ``wsops serve`` bare and instrumented.

Three configurations of the same bundled server:

- ``bare``: ``--no-instrument`` (no metrics, no runtime sampling, no tracing).
- ``instrumented``: ``--instrument --trace-sample-ratio 0.01``: metrics, runtime health and 1%
  head-sampled tracing, exported over OTLP/HTTP to an ``otlpsink.py`` of its own (a separate
  process that answers like a collector and counts the spans it receives).
- ``traced100``: the same with ``--trace-sample-ratio 1.0``.

All three servers are started and connected first, then measured one at a time, alternating
round by round: burst A B C, paced A B C, echo A B C, and again, ``--repeat`` times. This
machine's speed drifts by tens of percent within seconds (a fixed Python loop takes 0.55-1.1 s
from one second to the next), so configurations measured minutes apart are not comparable;
rounds of about a second, interleaved, are. Each server's admin listener is scraped every
``--scrape-interval`` seconds all along, like a Prometheus would (``/metrics``; the bare server
has none, so ``/healthz`` there, for a similar request load).

Workloads:

1. fan-out (``fanout.py``'s ``Session``, reused): ``--subscribers`` in one room held by a
   ``loadworker.py`` per server; a burst of ``--messages`` publishes, and a paced run of
   ``--paced-messages`` (one in flight, ``--gap-ms`` apart). Figure: server CPU per delivered
   message.
2. echo: ``--echo-connections`` raw clients per server (in this process), client ``i``
   subscribed to its own room ``echo-i`` and publishing to it with exactly one publish in flight
   (the next goes out when the room's ``message`` frame for the previous one arrives), for
   ``--echo-seconds`` (then the ones in flight are awaited). Figure: server CPU per publish;
   each publish costs the server a parse, a history append, a reply and a delivery.

Server CPU is user + system time of the server process (all threads, so the span exporter too)
from psutil, summed over that configuration's measured windows only (setup, warm-up and the
other servers' windows excluded). With 2+ CPUs the servers are pinned to the last CPU and the
load generators to the others (``--no-pin`` to not). Only 127.0.0.1 is used; every process
started is stopped in ``finally`` blocks.

Run: ``python bench/overhead.py [--repeat 10 --json bench/results/overhead.json]`` (about 3
minutes on 2 cores). ``--configs bare instrumented metrics-only`` adds ``--instrument
--no-tracing`` to split metrics from tracing. ``--profile DIR [--profile-blocking]`` writes
py-spy collapsed stacks of every echo round (``bench/hotspots.py`` summarizes them); profiling
distorts the figures, so do not mix it with a measuring run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil  # type: ignore[import-untyped]
from benchprocs import ManagedProcess, Profiler, ServerProcess, cpu_seconds, free_port, sys_seconds
from fanout import MODES, ROOM, Result, Session, fanout_session, machine, publish_frames
from wsload import EchoClient, connect

BENCH = Path(__file__).resolve().parent
CONFIGS: dict[str, list[str]] = {
    "bare": ["--no-instrument"],
    "instrumented": ["--instrument", "--trace-sample-ratio", "0.01"],
    "traced100": ["--instrument", "--trace-sample-ratio", "1.0"],
    # Not in the default run: splits the instrumented figure into metrics vs 1% tracing.
    "metrics-only": ["--instrument", "--no-tracing"],
}
DEFAULT_CONFIGS = ["bare", "instrumented", "traced100"]
BASE = "@base"  # suffix of the --baseline copies of the configs
SAMPLE_RATIO = {"bare": 0.0, "instrumented": 0.01, "traced100": 1.0, "metrics-only": 0.0}
WORKLOADS = (*(f"fan-out {m}" for m in MODES), "echo")
TARGETS = {("instrumented", w): 1.05 for w in WORKLOADS} | {
    ("traced100", "fan-out paced"): 1.2, ("traced100", "echo"): 1.5}
"""Ratio to bare each configuration must stay within, per workload (issues #17 and #18)."""
UNITS = {**{f"fan-out {m}": "us of server CPU per delivered message" for m in MODES},
         "echo": "us of server CPU per publish"}


@dataclass
class EchoResult:
    """One measured echo round of one server."""

    config: str
    rep: int
    connections: int
    messages: int
    complete: bool
    seconds: float
    server_cpu_s: float
    server_sys_s: float
    loader_cpu_s: float
    us_per_message: float
    messages_per_s: float
    scrapes: int


class Scraper:
    """GETs ``url`` every ``interval`` seconds until stopped, like a Prometheus scrape."""

    def __init__(self, url: str, interval: float) -> None:
        self.url = url
        self.interval = interval
        self.count = 0
        self.errors = 0
        self.last_bytes = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=5.0)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                try:
                    async with http.get(self.url) as resp:
                        body = await resp.read()
                    if resp.status == 200:
                        self.count += 1
                        self.last_bytes = len(body)
                    else:
                        self.errors += 1
                except (aiohttp.ClientError, TimeoutError):
                    self.errors += 1
                await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class Sink(ManagedProcess):
    """``otlpsink.py`` in its own process; ``stats()`` reads its counters."""

    def __init__(self, name: str, logdir: Path) -> None:
        self.port = free_port()
        super().__init__(
            name, [sys.executable, str(BENCH / "otlpsink.py"), "--port", str(self.port)],
            logdir / f"{name}-{self.port}.log", f"http://127.0.0.1:{self.port}/healthz")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.endpoint}/stats", timeout=5) as r:
            answer: dict[str, int] = json.loads(r.read())
            return answer


@dataclass
class Node:
    """One configuration: its server, scraper, sink, fan-out session and echo clients."""

    config: str
    server: ServerProcess
    scraper: Scraper
    sink: Sink | None
    fan: Session | None = None
    echo: list[EchoClient] = field(default_factory=list)
    echo_published: int = 0
    next_id: int = 1000
    spans: dict[str, int] = field(default_factory=dict)


def machine_busy_seconds() -> float:
    """User and system CPU time of every process on the machine so far (``/proc/stat``, all
    CPUs). Interrupt time is left out: loopback traffic is handled there and charged to no
    process, so it would count our own traffic as someone else's."""
    t = psutil.cpu_times()
    return float(sum(getattr(t, k, 0.0) for k in ("user", "nice", "system")))


def own_seconds() -> float:
    """CPU time of this driver and every process it started (servers, workers, sinks)."""
    me = psutil.Process()
    total = cpu_seconds(me)
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += cpu_seconds(child)
    return total


async def quiesce(ps: psutil.Process, step: float = 0.1, below: float = 0.05,
                  time_limit: float = 5.0) -> None:
    """Wait until the process used less than ``below`` of a CPU over ``step`` seconds: a
    server finishing work of its own window (exporting spans) must not overlap the next."""
    end = time.monotonic() + time_limit
    last = cpu_seconds(ps)
    while time.monotonic() < end:
        await asyncio.sleep(step)
        now = cpu_seconds(ps)
        if now - last < below * step:
            return
        last = now


async def open_echo_clients(port: int, n: int, time_limit: float = 30.0) -> list[EchoClient]:
    """``n`` clients, client ``i`` subscribed to room ``echo-i``."""
    clients: list[EchoClient] = []
    gate = asyncio.Semaphore(50)

    async def one(i: int) -> None:
        async with gate, asyncio.timeout(10.0):
            ws = await connect("127.0.0.1", port, factory=lambda: EchoClient(
                "127.0.0.1", port, "/ws", f"echo-{i}"))
            assert isinstance(ws, EchoClient)
            clients.append(ws)
            await ws.subscribe()

    try:
        async with asyncio.timeout(time_limit):
            await asyncio.gather(*(one(i) for i in range(n)))
    except BaseException:
        await close_echo_clients(clients)
        raise
    return clients


async def close_echo_clients(clients: list[EchoClient]) -> None:
    for c in clients:
        c.close()
    if clients:
        await asyncio.wait([asyncio.ensure_future(c.closed) for c in clients], timeout=5.0)
    for c in clients:
        if c.transport is not None:
            c.transport.abort()


def echo_frames(node: Node, cap: int) -> list[list[bytes]]:
    """``cap`` publish frames for each echo client of ``node``, ids not used before."""
    frames = [publish_frames(node.next_id, cap, c.room) for c in node.echo]
    node.next_id += cap
    return frames


async def echo_round(node: Node, frames: list[list[bytes]], seconds: float,
                     time_limit: float) -> tuple[bool, int]:
    """Every client publishes its ``frames``, one at a time, for ``seconds``, then the
    publishes in flight are awaited; (all came back, publishes echoed)."""
    clients = node.echo
    done = [c.start(f) for c, f in zip(clients, frames, strict=True)]
    await asyncio.wait(done, timeout=seconds)
    for c in clients:
        c.stop()
    _, pending = await asyncio.wait(done, timeout=time_limit)
    echoed = sum(c.echoed for c in clients)
    node.echo_published += echoed
    return not pending, echoed


async def measure_echo(node: Node, rep: int, args: argparse.Namespace,
                       profiler: Profiler) -> EchoResult:
    server, scraper, me = node.server, node.scraper, psutil.Process()
    frames = echo_frames(node, args.echo_cap)
    profiler.start(f"{node.config}-echo-{rep}")
    try:
        scrapes0 = scraper.count
        loader0 = cpu_seconds(me)
        cpu0, sys0 = cpu_seconds(server.ps), sys_seconds(server.ps)
        t0 = time.perf_counter()
        complete, echoed = await echo_round(node, frames, args.echo_seconds, args.echo_timeout)
        seconds = time.perf_counter() - t0
        cpu = cpu_seconds(server.ps) - cpu0
        sys_s = sys_seconds(server.ps) - sys0
        loader = cpu_seconds(me) - loader0
    finally:
        profiler.stop()
    return EchoResult(
        config=node.config, rep=rep, connections=len(node.echo), messages=echoed,
        complete=complete, seconds=seconds, server_cpu_s=cpu, server_sys_s=sys_s,
        loader_cpu_s=loader, us_per_message=cpu / echoed * 1e6 if echoed else math.nan,
        messages_per_s=echoed / seconds if seconds > 0 else 0.0,
        scrapes=scraper.count - scrapes0,
    )


def expected_spans(node: Node, args: argparse.Namespace) -> float:
    """Spans a server should have exported at its ratio: one per WebSocket handshake, two per
    publish (``publish {room}`` and the linked ``process {room}`` of its delivery)."""
    handshakes = int(args.subscribers) + 1 + int(args.echo_connections)
    fan_publishes = node.fan.next_id - 10 if node.fan is not None else 0
    return SAMPLE_RATIO[node.config] * (handshakes + 2 * (fan_publishes + node.echo_published))


async def setup(nodes: list[Node], args: argparse.Namespace, stack: contextlib.AsyncExitStack,
                ) -> None:
    """Servers ready, scrapers running, subscribers and echo clients connected and warm."""
    for node in nodes:
        if node.sink is not None:
            await node.sink.wait_ready()
        await node.server.wait_ready()
    for node in nodes:
        node.scraper.start()
        stack.push_async_callback(node.scraper.stop)
    for node in nodes:
        print(f"{node.config}: connecting", flush=True)
        node.fan = await stack.enter_async_context(
            fanout_session(node.server, args, Profiler(None, node.server.proc.pid), 0))
        node.echo = await open_echo_clients(node.server.port, args.echo_connections)
        stack.push_async_callback(close_echo_clients, node.echo)
        await echo_round(node, echo_frames(node, args.echo_cap), args.echo_seconds,
                         args.echo_timeout)


async def measure(nodes: list[Node], args: argparse.Namespace, fan: list[Result],
                  echo: list[EchoResult], window_scrapes: dict[str, int]) -> None:
    """``--repeat`` rounds of every workload, alternating the servers within each."""
    for rep in range(1, args.repeat + 1):
        line = [f"#{rep}"]
        for mode in MODES:
            for node in nodes:
                assert node.fan is not None
                scrapes0 = node.scraper.count
                r = await node.fan.measure(mode, rep)
                window_scrapes[node.config] += node.scraper.count - scrapes0
                fan.append(r)
                line.append(f"{node.config} {mode} {r.us_per_delivery:.2f}"
                            f"{'' if r.losses == 0 else f' (LOST {r.losses})'}")
                await node.fan.settle()
                await quiesce(node.server.ps)
        profiler = Profiler(args.profile, 0, args.profile_rate,
                            nonblocking=not args.profile_blocking)
        for node in nodes:
            profiler.pid = node.server.proc.pid
            e = await measure_echo(node, rep, args, profiler)
            await quiesce(node.server.ps)
            window_scrapes[node.config] += e.scrapes
            echo.append(e)
            line.append(f"{node.config} echo {e.us_per_message:.1f} ({e.messages_per_s:,.0f}/s)"
                        f"{'' if e.complete else ' (TIMEOUT)'}")
        print("  " + " | ".join(line), flush=True)


# -- report ---------------------------------------------------------------------------------


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def summarize(configs: list[str], fan: list[Result], echo: list[EchoResult]) -> dict[str, Any]:
    """Per workload and config: median and per-rep values, pooled CPU per message, and ratios
    to bare (of medians, of pooled figures, and per repetition)."""
    runs: dict[str, dict[str, list[tuple[float, float, int]]]] = {}  # (us, cpu_s, messages)
    for mode in MODES:
        runs[f"fan-out {mode}"] = {c: [(r.us_per_delivery, r.server_cpu_s, r.received)
                                       for r in fan if r.server == c and r.mode == mode]
                                   for c in configs}
    runs["echo"] = {c: [(r.us_per_message, r.server_cpu_s, r.messages)
                        for r in echo if r.config == c] for c in configs}
    out: dict[str, Any] = {}
    for workload, by in runs.items():
        rows: dict[str, Any] = {}
        for c in configs:
            vals = [u for u, _, _ in by[c]]
            cpu, msgs = sum(x for _, x, _ in by[c]), sum(n for _, _, n in by[c])
            rows[c] = {"median": statistics.median(vals) if vals else math.nan, "runs": vals,
                       "pooled": cpu / msgs * 1e6 if msgs else math.nan, "messages": msgs}
        base = rows.get("bare")
        for c, row in rows.items():
            if base is None or c == "bare":
                continue
            row["ratio"] = row["median"] / base["median"] if base["median"] else math.nan
            row["ratio_pooled"] = row["pooled"] / base["pooled"] if base["pooled"] else math.nan
            paired = [v / b for v, b in zip(row["runs"], base["runs"], strict=False) if b]
            row["paired_ratios"] = paired
            row["paired_median"] = statistics.median(paired) if paired else math.nan
            row["target"] = TARGETS.get((c, workload))
        out[workload] = rows
    return out


def table(summary: dict[str, Any], spans: dict[str, dict[str, float]]) -> str:
    lines = []
    for workload in WORKLOADS:
        rows = summary[workload]
        lines += [f"**{workload}** ({UNITS[workload]})", "",
                  "| config | median | per repetition | pooled | ratio to bare (median) "
                  "| pooled ratio | paired ratios (median, range) | target |",
                  "|---|---:|---|---:|---:|---:|---|---|"]
        for c, row in rows.items():
            if c == "bare":
                lines.append(f"| {c} | {row['median']:.2f} | {_fmt(row['runs'])} "
                             f"| {row['pooled']:.2f} | 1 | 1 | - | - |")
                continue
            target = row["target"]
            verdict = "-" if target is None else (
                f"<= {target:.2f}: {'met' if row['ratio'] <= target else '**missed**'}")
            paired = row["paired_ratios"]
            spread = (f"{row['paired_median']:.3f} ({min(paired):.2f}-{max(paired):.2f})"
                      if paired else "-")
            lines.append(
                f"| {c} | {row['median']:.2f} | {_fmt(row['runs'])} | {row['pooled']:.2f} "
                f"| **{row['ratio']:.3f}** | {row['ratio_pooled']:.3f} | {spread} | {verdict} |")
        lines.append("")
    lines += ["| config | spans received | expected at its sample ratio | export requests "
              "| scrapes in measured windows (all, errors) | scrape size |",
              "|---|---:|---:|---:|---|---:|"]
    for c, s in spans.items():
        lines.append(f"| {c} | {s['received']:,.0f} | ~{s['expected']:,.0f} | {s['exports']:.0f} "
                     f"| {s['window_scrapes']:.0f} ({s['scrapes']:.0f}, {s['scrape_errors']:.0f}) "
                     f"| {s['scrape_bytes']:,.0f} B |")
    return "\n".join(lines)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


async def main_async(args: argparse.Namespace) -> int:
    fan: list[Result] = []
    echo: list[EchoResult] = []
    window_scrapes = dict.fromkeys(args.configs, 0)
    spans: dict[str, dict[str, float]] = {}
    others: dict[str, float] = {}
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        del os.environ[key]  # only the endpoint set below may steer the servers
    if args.server_cpus:
        # This driver and what it starts later (loadworkers, sinks) keep off the server's CPU.
        others = sorted(set(psutil.Process().cpu_affinity()) - set(args.server_cpus))
        psutil.Process().cpu_affinity(others)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wsops-overhead-") as tmp:
        logdir = Path(tmp)
        async with contextlib.AsyncExitStack() as procs:
            nodes: list[Node] = []
            for config in args.configs:
                traced = SAMPLE_RATIO[config] > 0
                sink = Sink(f"otlpsink-{config}", logdir) if traced else None
                if sink is not None:
                    procs.push_async_callback(asyncio.to_thread, sink.stop)
                env = None if sink is None else {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}
                if config.endswith(BASE):  # the same flags on the baseline's code
                    env = {**(env or {}), **baseline_env(args.baseline)}
                server = ServerProcess("wsops", args.subscribers, logdir, ROOM, name=config,
                                       extra_args=CONFIGS[config], env=env,
                                       cpus=args.server_cpus)
                procs.push_async_callback(asyncio.to_thread, server.stop)
                assert server.admin_port is not None
                path = "/healthz" if config.removesuffix(BASE) == "bare" else "/metrics"
                scraper = Scraper(f"http://127.0.0.1:{server.admin_port}{path}",
                                  args.scrape_interval)
                nodes.append(Node(config, server, scraper, sink))
            async with contextlib.AsyncExitStack() as conns:
                await setup(nodes, args, conns)
                print(f"ready after {time.monotonic() - started:.0f}s; measuring", flush=True)
                busy0, own0, t0 = machine_busy_seconds(), own_seconds(), time.monotonic()
                await measure(nodes, args, fan, echo, window_scrapes)
                # Other processes on the machine while we measured: a noise diagnostic.
                elapsed = time.monotonic() - t0
                foreign = max(0.0, machine_busy_seconds() - busy0 - (own_seconds() - own0))
                others = {"cpu_s": foreign, "seconds": elapsed,
                          "share": foreign / (elapsed * (os.cpu_count() or 1))}
            for node in nodes:
                # wsops exports what its span processor still holds on the way out.
                await asyncio.to_thread(node.server.stop)
                stats = await asyncio.to_thread(node.sink.stats) if node.sink else {}
                spans[node.config] = {
                    "received": stats.get("spans", 0), "expected": expected_spans(node, args),
                    "exports": stats.get("requests", 0), "export_errors": stats.get("errors", 0),
                    "window_scrapes": window_scrapes[node.config],
                    "scrapes": node.scraper.count, "scrape_errors": node.scraper.errors,
                    "scrape_bytes": node.scraper.last_bytes,
                }
    summary = summarize(args.configs, fan, echo)
    print(f"\n{args.subscribers} subscribers: burst {args.messages}, paced {args.paced_messages} "
          f"({args.gap_ms:g} ms gap); echo {args.echo_connections} connections for "
          f"{args.echo_seconds:g}s; scrape every {args.scrape_interval:g}s; {args.repeat} "
          f"repetitions; server CPUs {args.server_cpus or 'any'}; "
          f"{time.monotonic() - started:.0f}s\n")
    print(table(summary, spans))
    print(f"\nOther processes used {others['cpu_s']:.1f} s of CPU during the "
          f"{others['seconds']:.0f} s of measurement ({others['share']:.1%} of the machine).")
    if args.json:
        doc = {"machine": machine(),
               "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "summary": summary, "spans": spans, "other_processes": others,
               "fanout_runs": [asdict(r) for r in fan],
               "echo_runs": [asdict(r) for r in echo]}
        await asyncio.to_thread(write_json, Path(args.json), doc)
        print(f"\nwrote {args.json}")
    ok = (all(r.losses == 0 for r in fan) and all(r.complete for r in echo)
          and all(s["scrape_errors"] == 0 and s["export_errors"] == 0 for s in spans.values()))
    return 0 if ok else 1


def baseline_env(tree: Path) -> dict[str, str]:
    """What makes ``python -m wsops`` run ``tree``'s code: PYTHONPATH first, and PYTHONSAFEPATH
    so that the current directory (this checkout, when run from its root) is not put before it
    (without it, every "@base" server imported the work tree: #14's and #16's first
    before/after tables compared a tree with itself)."""
    return {"PYTHONPATH": str(tree.resolve()), "PYTHONSAFEPATH": "1"}


def imported_wsops(env: dict[str, str]) -> Path:
    """The ``wsops/__init__.py`` a server started with ``env`` from here imports."""
    out = subprocess.run([sys.executable, "-c", "import wsops; print(wsops.__file__)"],
                         env={**os.environ, **env}, capture_output=True, text=True, check=True)
    return Path(out.stdout.strip()).resolve()


def main() -> None:
    parser = argparse.ArgumentParser(description="wsops instrumentation overhead benchmark")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=500, help="fan-out burst messages")
    parser.add_argument("--paced-messages", type=int, default=100)
    parser.add_argument("--gap-ms", type=float, default=2.0, help="pause between paced publishes")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured fan-out messages")
    parser.add_argument("--workers", type=int, default=1, help="subscriber processes per server")
    parser.add_argument("--timeout", type=float, default=30.0, help="per fan-out measurement")
    parser.add_argument("--echo-connections", type=int, default=100)
    parser.add_argument("--echo-seconds", type=float, default=1.0, help="per echo round")
    parser.add_argument("--echo-cap", type=int, default=300,
                        help="most publishes per connection and round")
    parser.add_argument("--echo-timeout", type=float, default=30.0)
    parser.add_argument("--scrape-interval", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the servers to the last CPU and the rest to the others")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=DEFAULT_CONFIGS,
                        help="servers to compare, bare first (metrics-only: --no-tracing)")
    parser.add_argument("--json", help="write results to this file")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy each echo round into DIR (distorts the figures)")
    parser.add_argument("--profile-rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--profile-blocking", action="store_true",
                        help="pause the server per sample: exact stacks, more overhead")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also run every config on the wsops source tree in DIR (e.g. "
                        "`git worktree add DIR main`), as CONFIG@base, in the same rounds")
    args = parser.parse_args()
    if args.baseline is not None:
        if not (args.baseline / "wsops" / "__init__.py").is_file():
            parser.error(f"--baseline {args.baseline}: no wsops/__init__.py there")
        imported = imported_wsops(baseline_env(args.baseline))
        if imported.parent.parent != args.baseline.resolve():
            parser.error(f"--baseline {args.baseline}: the servers would import {imported}")
        for config in list(args.configs):
            CONFIGS[config + BASE] = CONFIGS[config]
            SAMPLE_RATIO[config + BASE] = SAMPLE_RATIO[config]
            args.configs.append(config + BASE)
    if not 1 <= args.subscribers <= 6000:
        parser.error("--subscribers must be in 1..6000 (three servers, 20000 files a process)")
    if not 1 <= args.echo_connections <= 1000 or args.echo_cap < 1:
        parser.error("--echo-connections must be in 1..1000 and --echo-cap >= 1")
    if args.configs[0] != "bare" or len(set(args.configs)) != len(args.configs):
        parser.error("--configs must start with bare (the ratios are to it), without repeats")
    cpus = sorted(psutil.Process().cpu_affinity())
    args.server_cpus = None if args.no_pin or len(cpus) < 2 else [cpus[-1]]
    try:
        import uvloop
    except ImportError:
        sys.exit(asyncio.run(main_async(args)))
    sys.exit(uvloop.run(main_async(args)))


if __name__ == "__main__":
    main()
