"""Instrumentation overhead: server CPU per message of ``wsops serve`` bare and instrumented.

Three configurations of the same bundled server, run one at a time and alternating
(A B C A B C ...), each ``--repeat`` times:

- ``bare``: ``--no-instrument`` (no metrics, no runtime sampling, no tracing).
- ``instrumented``: ``--instrument --trace-sample-ratio 0.01``: metrics, runtime health and 1%
  head-sampled tracing, exported over OTLP/HTTP to ``otlpsink.py`` (a process of its own that
  counts the spans it receives).
- ``traced100``: the same with ``--trace-sample-ratio 1.0``.

While a server runs, its admin listener is scraped every ``--scrape-interval`` seconds like a
Prometheus would (``/metrics``; the bare server has no ``/metrics``, so ``/healthz`` there, for a
similar request load). Workloads, on the same server instance:

1. fan-out (``fanout.py``'s, reused): ``--subscribers`` in one room held by ``loadworker.py``,
   a burst of ``--messages`` publishes and a paced run of ``--paced-messages``. Figure: server
   CPU per delivered message.
2. echo: ``--echo-connections`` raw clients in this process, each subscribed to its own room
   ``echo-i`` and publishing to it with exactly one publish in flight (the next goes out when
   the room's ``message`` frame for the previous one arrives), ``--echo-count`` each. Figure:
   server CPU per publish (each publish costs the server a parse, a reply and a delivery).

Server CPU is user + system time of the server process (all its threads, so the span exporter
too) from psutil, over each workload's window only (connection setup excluded). Only 127.0.0.1
is used; every process started is stopped in ``finally`` blocks.

Run: ``python bench/overhead.py [--repeat 3 --json bench/results/overhead.json]`` (about 3
minutes on 2 cores). ``--profile DIR`` writes py-spy collapsed stacks of each server's echo
phase (``bench/hotspots.py`` summarizes them); profiling distorts the figures, so do not mix
it with a measuring run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil  # type: ignore[import-untyped]
from benchprocs import ManagedProcess, Profiler, ServerProcess, cpu_seconds, free_port, sys_seconds
from fanout import MODES, ROOM, Result, fanout_session, machine, publish_frames, run_modes
from wsload import EchoClient, connect

BENCH = Path(__file__).resolve().parent
CONFIGS: dict[str, list[str]] = {
    "bare": ["--no-instrument"],
    "instrumented": ["--instrument", "--trace-sample-ratio", "0.01"],
    "traced100": ["--instrument", "--trace-sample-ratio", "1.0"],
}
RATIOS = {"bare": 0.0, "instrumented": 0.01, "traced100": 1.0}
TARGETS = {"instrumented": 1.05, "traced100": 1.15}


@dataclass
class EchoResult:
    """One measured echo run."""

    config: str
    rep: int
    connections: int
    messages: int
    expected: int
    complete: bool
    seconds: float
    server_cpu_s: float
    server_sys_s: float
    loader_cpu_s: float
    us_per_message: float
    messages_per_s: float
    scrapes: int


@dataclass
class SessionInfo:
    """What one server instance did besides the measured windows."""

    config: str
    rep: int
    spans_received: int
    spans_expected: float
    export_requests: int
    export_errors: int
    scrapes: int
    scrape_errors: int
    scrape_bytes: int


class Scraper:
    """GETs ``url`` every ``interval`` seconds until cancelled, like a Prometheus scrape."""

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

    def __init__(self, logdir: Path) -> None:
        self.port = free_port()
        super().__init__(
            "otlpsink", [sys.executable, str(BENCH / "otlpsink.py"), "--port", str(self.port)],
            logdir / f"otlpsink-{self.port}.log", f"http://127.0.0.1:{self.port}/healthz")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stats(self) -> dict[str, int]:
        def get() -> dict[str, int]:
            with urllib.request.urlopen(f"{self.endpoint}/stats", timeout=5) as r:
                answer: dict[str, int] = json.loads(r.read())
                return answer

        return await asyncio.to_thread(get)


async def quiesce(ps: psutil.Process, step: float = 0.2, below: float = 0.05,
                  time_limit: float = 10.0) -> None:
    """Wait until the process used less than ``below`` of a core over ``step`` seconds."""
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

    async with asyncio.timeout(time_limit):
        await asyncio.gather(*(one(i) for i in range(n)))
    return clients


async def echo_round(clients: list[EchoClient], first_id: int, count: int,
                     time_limit: float) -> tuple[bool, int]:
    """Every client publishes ``count`` times, one at a time; (all done, publishes echoed)."""
    frames = [publish_frames(first_id, count, c.room) for c in clients]
    done = [c.start(f) for c, f in zip(clients, frames, strict=True)]
    _, pending = await asyncio.wait(done, timeout=time_limit)
    return not pending, sum(c.echoed for c in clients)


async def run_echo(server: ServerProcess, args: argparse.Namespace, rep: int,
                   scraper: Scraper, profiler: Profiler) -> EchoResult:
    """Connect the echo clients, warm up, measure one round; clients closed on exit."""
    clients: list[EchoClient] = []
    me = psutil.Process()
    try:
        clients = await open_echo_clients(server.port, args.echo_connections)
        await echo_round(clients, 10, args.echo_warmup, args.echo_timeout)
        await quiesce(server.ps)
        profiler.start(f"{server.name}-echo-{rep}")
        scrapes0 = scraper.count
        loader0 = cpu_seconds(me)
        cpu0, sys0 = cpu_seconds(server.ps), sys_seconds(server.ps)
        t0 = time.perf_counter()
        complete, echoed = await echo_round(clients, 1000, args.echo_count, args.echo_timeout)
        seconds = time.perf_counter() - t0
        cpu = cpu_seconds(server.ps) - cpu0
        sys_s = sys_seconds(server.ps) - sys0
        loader = cpu_seconds(me) - loader0
        profiler.stop()
        r = EchoResult(
            config=server.name, rep=rep, connections=len(clients), messages=echoed,
            expected=args.echo_count * args.echo_connections, complete=complete,
            seconds=seconds, server_cpu_s=cpu, server_sys_s=sys_s, loader_cpu_s=loader,
            us_per_message=cpu / echoed * 1e6 if echoed else float("nan"),
            messages_per_s=echoed / seconds if seconds > 0 else 0.0,
            scrapes=scraper.count - scrapes0,
        )
        print(f"  [{server.name} #{rep}] echo : {r.us_per_message:6.2f} us/publish, "
              f"{r.messages_per_s:>10,.0f} publishes/s, {r.messages}/{r.expected}, "
              f"{r.seconds:.2f}s, server CPU {r.server_cpu_s:.2f}s "
              f"({r.server_sys_s / r.server_cpu_s if r.server_cpu_s else 0:.0%} sys), "
              f"loader CPU {r.loader_cpu_s:.2f}s, {r.scrapes} scrapes"
              f"{'' if r.complete else ' (TIMEOUT)'}", flush=True)
        return r
    finally:
        profiler.stop()
        for c in clients:
            c.close()
        if clients:
            await asyncio.wait([asyncio.ensure_future(c.closed) for c in clients], timeout=5.0)
        for c in clients:
            if c.transport is not None:
                c.transport.abort()


def expected_spans(config: str, args: argparse.Namespace) -> float:
    """Spans a session should export at its ratio: one per handshake, two per publish
    (``publish {room}`` and the linked ``process {room}`` of its delivery)."""
    handshakes = args.subscribers + 1 + args.echo_connections
    publishes = (args.warmup + args.messages + args.paced_messages
                 + args.echo_connections * (args.echo_warmup + args.echo_count))
    return RATIOS[config] * (handshakes + 2 * publishes)


async def run_config(config: str, rep: int, args: argparse.Namespace, logdir: Path,
                     sink: Sink) -> tuple[list[Result], EchoResult, SessionInfo]:
    """One server instance: fan-out modes, then echo; everything stopped on exit."""
    env = None if config == "bare" else {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}
    before = await sink.stats()
    server = ServerProcess("wsops", args.subscribers, logdir, ROOM, name=config,
                           extra_args=CONFIGS[config], env=env, cpus=args.server_cpus)
    assert server.admin_port is not None
    path = "/healthz" if config == "bare" else "/metrics"
    scraper = Scraper(f"http://127.0.0.1:{server.admin_port}{path}", args.scrape_interval)
    profiler = Profiler(args.profile, server.proc.pid)
    try:
        await server.wait_ready()
        scraper.start()
        async with fanout_session(server, args, Profiler(None, server.proc.pid), rep) as session:
            fan = await run_modes(session, rep)
        await quiesce(server.ps)
        echo = await run_echo(server, args, rep, scraper, profiler)
    finally:
        await scraper.stop()
        profiler.stop()
        await asyncio.to_thread(server.stop)  # wsops flushes its spans on the way out
    after = await sink.stats()
    info = SessionInfo(
        config=config, rep=rep, spans_received=after["spans"] - before["spans"],
        spans_expected=expected_spans(config, args),
        export_requests=after["requests"] - before["requests"],
        export_errors=after["errors"] - before["errors"],
        scrapes=scraper.count, scrape_errors=scraper.errors, scrape_bytes=scraper.last_bytes,
    )
    print(f"  [{config} #{rep}] spans received {info.spans_received} "
          f"(expected ~{info.spans_expected:.0f}) in {info.export_requests} exports, "
          f"{info.scrapes} scrapes of {path} ({info.scrape_bytes} bytes), "
          f"{info.scrape_errors} scrape errors", flush=True)
    return fan, echo, info


# -- report ---------------------------------------------------------------------------------


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def summarize(configs: list[str], fan: list[Result], echo: list[EchoResult],
              infos: list[SessionInfo]) -> dict[str, Any]:
    """Medians, per-run values and ratios to bare, per workload and config."""
    workloads: dict[str, dict[str, list[float]]] = {}
    for mode in MODES:
        workloads[f"fan-out {mode}"] = {
            c: [r.us_per_delivery for r in fan if r.server == c and r.mode == mode]
            for c in configs}
    workloads["echo"] = {c: [r.us_per_message for r in echo if r.config == c] for c in configs}
    out: dict[str, Any] = {}
    for name, by in workloads.items():
        rows = {}
        base = statistics.median(by["bare"]) if by.get("bare") else None
        for c in configs:
            vals = by[c]
            if not vals:
                continue
            med = statistics.median(vals)
            paired = ([v / b if b else float("nan") for v, b in zip(vals, by["bare"], strict=False)]
                      if base and c != "bare" else [])
            rows[c] = {"median": med, "runs": vals,
                       "ratio": med / base if base else None,
                       "paired_ratios": paired}
        out[name] = rows
    spans = {c: {"received": sum(i.spans_received for i in infos if i.config == c),
                 "expected": sum(i.spans_expected for i in infos if i.config == c),
                 "exports": sum(i.export_requests for i in infos if i.config == c),
                 "export_errors": sum(i.export_errors for i in infos if i.config == c),
                 "scrapes": sum(i.scrapes for i in infos if i.config == c),
                 "scrape_errors": sum(i.scrape_errors for i in infos if i.config == c),
                 "scrape_bytes": max((i.scrape_bytes for i in infos if i.config == c),
                                     default=0)}
             for c in configs}
    out["sessions"] = spans
    return out


def table(summary: dict[str, Any], unit: dict[str, str]) -> str:
    lines = []
    for name, rows in summary.items():
        if name == "sessions":
            continue
        lines += [f"**{name}** ({unit[name]})", "",
                  "| config | us/msg (median) | per run (us) | ratio to bare | paired ratios "
                  "| target | spans received |",
                  "|---|---:|---|---:|---|---:|---:|"]
        for c, row in rows.items():
            ratio = "1.00" if c == "bare" else (
                f"{row['ratio']:.3f}" if row["ratio"] is not None else "-")
            target = TARGETS.get(c)
            verdict = ("-" if target is None or row["ratio"] is None else
                       f"<= {target:.2f} {'ok' if row['ratio'] <= target else 'MISSED'}")
            s = summary["sessions"][c]
            lines.append(
                f"| {c} | {row['median']:.2f} | {_fmt(row['runs'])} | {ratio} "
                f"| {_fmt(row['paired_ratios']) or '-'} | {verdict} | {s['received']:,} |")
        lines.append("")
    lines += ["| config | spans received (all runs) | expected at its ratio | export requests "
              "| scrapes (errors) | scrape size |", "|---|---:|---:|---:|---|---:|"]
    for c, s in summary["sessions"].items():
        lines.append(f"| {c} | {s['received']:,} | ~{s['expected']:,.0f} | {s['exports']} "
                     f"| {s['scrapes']} ({s['scrape_errors']}) | {s['scrape_bytes']:,} B |")
    return "\n".join(lines)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


async def main_async(args: argparse.Namespace) -> int:
    fan: list[Result] = []
    echo: list[EchoResult] = []
    infos: list[SessionInfo] = []
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        del os.environ[key]  # only the endpoint set below may steer the servers
    if args.server_cpus:
        # Everything else (this driver, loadworker, the sink) inherits the other CPUs.
        others = sorted(set(psutil.Process().cpu_affinity()) - set(args.server_cpus))
        psutil.Process().cpu_affinity(others)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wsops-overhead-") as tmp:
        logdir = Path(tmp)
        sink = Sink(logdir)
        try:
            await sink.wait_ready()
            for rep in range(1, args.repeat + 1):
                for config in args.configs:
                    print(f"{config} #{rep}", flush=True)
                    f, e, i = await run_config(config, rep, args, logdir, sink)
                    fan.extend(f)
                    echo.append(e)
                    infos.append(i)
        finally:
            await asyncio.to_thread(sink.stop)
    summary = summarize(args.configs, fan, echo, infos)
    unit = {f"fan-out {m}": "server CPU us per delivered message" for m in MODES}
    unit["echo"] = "server CPU us per publish"
    print(f"\n{args.subscribers} subscribers: burst {args.messages}, paced {args.paced_messages} "
          f"({args.gap_ms:g} ms gap); echo {args.echo_connections} connections x "
          f"{args.echo_count}; scrape every {args.scrape_interval:g}s; {args.repeat} repetitions; "
          f"{time.monotonic() - started:.0f}s\n")
    print(table(summary, unit))
    if args.json:
        doc = {"machine": machine(),
               "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "summary": summary, "fanout_runs": [asdict(r) for r in fan],
               "echo_runs": [asdict(r) for r in echo], "sessions": [asdict(i) for i in infos]}
        await asyncio.to_thread(write_json, Path(args.json), doc)
        print(f"\nwrote {args.json}")
    ok = (all(r.losses == 0 for r in fan) and all(r.complete for r in echo)
          and all(i.scrape_errors == 0 and i.export_errors == 0 for i in infos))
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description="wsops instrumentation overhead benchmark")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=500, help="fan-out burst messages")
    parser.add_argument("--paced-messages", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=2.0, help="pause between paced publishes")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured fan-out messages")
    parser.add_argument("--workers", type=int, default=1, help="subscriber processes (1-2)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per fan-out measurement")
    parser.add_argument("--echo-connections", type=int, default=100)
    parser.add_argument("--echo-count", type=int, default=200, help="publishes per connection")
    parser.add_argument("--echo-warmup", type=int, default=10, help="unmeasured, per connection")
    parser.add_argument("--echo-timeout", type=float, default=60.0)
    parser.add_argument("--scrape-interval", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the server to the last CPU and the rest to the others")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--json", help="write results to this file")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy each server's echo phase into DIR (distorts the figures)")
    args = parser.parse_args()
    if not 1 <= args.subscribers <= 18000:
        parser.error("--subscribers must be in 1..18000 (20000 open files per process)")
    if not 1 <= args.echo_connections <= 1000 or args.echo_count < 1:
        parser.error("--echo-connections must be in 1..1000 and --echo-count >= 1")
    if "bare" not in args.configs:
        parser.error("--configs must include bare (the ratios are to it)")
    cpus = sorted(psutil.Process().cpu_affinity())
    args.server_cpus = None if args.no_pin or len(cpus) < 2 else [cpus[-1]]
    try:
        import uvloop
    except ImportError:
        sys.exit(asyncio.run(main_async(args)))
    sys.exit(uvloop.run(main_async(args)))


if __name__ == "__main__":
    main()
