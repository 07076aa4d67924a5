"""Fan-out and idle memory against six servers in one session: wsops and the broadcast loops
users write instead.

The same workload as ``bench/fanout.py`` (one room, ``--subscribers`` raw subscribers in a
``loadworker.py`` process, a burst of ``--messages`` publishes, then ``--paced-messages`` paced
ones, one in flight, ``--gap-ms`` apart), against, in this order, repeated ``--repeat`` times
(A B C D E A B C D E ...; each server is started, measured and stopped before the next):

- ``wsops-bare``: ``wsops serve --no-instrument``.
- ``wsops-instr``: ``wsops serve --instrument`` (metrics, runtime health, 1% head-sampled
  tracing: the default ratio), its spans exported over OTLP/HTTP to a ``bench/otlpsink.py`` of
  its own (a separate process, not counted).
- ``naive``: ``bench/peers/naive_aiohttp.py``, ``await ws.send_str(msg)`` to each other socket.
- ``socketio``: ``bench/peers/socketio_server.py``, python-socketio's ``AsyncServer`` on
  aiohttp, ``await sio.emit("message", data, skip_sid=sid)``. Its clients speak Engine.IO v4 on
  the WebSocket transport; the publish is the same JSON object as the argument of a
  ``publish`` event, and only ``42[...]`` event frames count as deliveries.
- ``node-ws``: ``bench/peers/node_ws/server.js``, Node's ``ws``, for each client: if OPEN, send.
- ``picows``: ``bench/peers/picows_server.py``, picows' core API as in its broadcast example
  (a ``WSListener`` per connection, a set of weak references), each other client's
  ``transport.send(WSMsgType.TEXT, payload)``.

All Python servers run on uvloop. Per server and mode the figures are the medians over the
repetitions of: server CPU (user + system, all threads) per delivered message, deliveries/s
(deliveries counted by the subscribers / wall time of the phase) and, in the paced mode,
publish-to-receive latency: each paced publish carries ``time.monotonic_ns()`` taken just
before the publisher writes it, and each subscriber subtracts it from its own clock when the
delivery frame is read (one machine, one CLOCK_MONOTONIC), for every delivery; p50/p99 are over
all deliveries of the run (2% histogram buckets). Burst latency is not reported (it is the
queue). Reading the stamps costs the loader, not the server.

Then, for every server once (``--idle-repeat``), idle memory per connection (``idlemem.py``):
the server pinned to the last CPU, one load worker pinned to the others, ``--idle-warmup``
connections opened first (not counted), RSS read once settled, ``--idle-connections`` more
opened and held ``--idle-hold`` seconds (wsops: each subscribed to a room, one room per
``--idle-per-room``, heartbeats on as ``wsops serve`` defaults; socket.io: Engine.IO open and
namespace connect done; the others: upgraded), RSS read again: (after - before) / N in KiB, and
its ratio to Node ``ws``. ``--phases`` picks ``fanout`` and/or ``idle``.

``--wsops-commit REV`` runs the wsops servers on ``git archive REV`` (extracted to a temporary
directory, with ``PYTHONPATH`` and ``PYTHONSAFEPATH=1`` so the work tree is not imported
instead) rather than on the work tree.

Setup first: ``npm ci --prefix bench/peers/node_ws`` (Node 18+), python-socketio and picows
(``pip install -e '.[bench]'``).

Run: ``python bench/peers.py [--subscribers 1000 --messages 500 --repeat 3 --json out.json]``
(markdown tables at the end; ``--json`` adds every run, versions and spans received).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from benchprocs import BENCH, NODE_WS
from fanout import MODES, Result, arg_parser, check_args, machine, run_server, summarize
from idlemem import IdleResult, measure_idle, pinning
from overhead import Sink

# name: (server kind, extra arguments); run in this order.
PEERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "wsops-bare": ("wsops", ("--no-instrument",)),
    "wsops-instr": ("wsops", ("--instrument",)),
    "naive": ("naive", ()),
    "socketio": ("socketio", ()),
    "node-ws": ("node-ws", ()),
    "picows": ("picows", ()),
}
PHASES = ("fanout", "idle")


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in ("python-socketio", "python-engineio", "opentelemetry-sdk", "picows",
                 "aiofastnet", "psutil"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    try:
        out["ws"] = json.loads((NODE_WS / "node_modules" / "ws" / "package.json").read_text())[
            "version"]
    except (OSError, ValueError, KeyError):
        out["ws"] = None
    node = shutil.which("node")
    out["node"] = (subprocess.run([node, "--version"], capture_output=True, text=True,
                                  check=False).stdout.strip() if node else None)
    out["wsops"] = git("describe", "--always", "--dirty")
    out["wsops_commit"] = git("rev-parse", "HEAD")
    return out


def git(*argv: str) -> str | None:
    return subprocess.run(["git", *argv], cwd=BENCH, capture_output=True, text=True,
                          check=False).stdout.strip() or None


def wsops_source(rev: str | None, tmp: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """What the wsops servers run: the work tree, or ``git archive REV`` extracted under
    ``tmp``; (a description for the JSON, the environment the servers get)."""
    dirty = (git("status", "--porcelain", "--", ":/wsops") or "").splitlines()
    if rev is None:
        return {"tree": "work tree", "commit": git("rev-parse", "HEAD"),
                "dirty_files": dirty}, {}
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    if commit is None:
        raise SystemExit(f"--wsops-commit {rev}: not a commit")
    src = tmp / f"wsops-{commit[:12]}"
    src.mkdir()
    archive = subprocess.run(["git", "archive", commit, "wsops"], cwd=BENCH.parent,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    env = {"PYTHONPATH": str(src), "PYTHONSAFEPATH": "1"}
    # The servers are started from this process's directory: check which wsops they import.
    imported = subprocess.run(
        [sys.executable, "-c", "import wsops; print(wsops.__file__)"],
        env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout.strip()
    if not imported.startswith(str(src)):
        raise SystemExit(f"--wsops-commit: the servers would import {imported}, not {src}")
    return {"tree": f"git archive {rev}", "commit": commit, "imported": imported,
            "work_tree_dirty_files_not_measured": dirty}, env


@contextlib.asynccontextmanager
async def peer_env(name: str, label: str, logdir: Path, base: dict[str, str],
                   spans: dict[str, list[dict[str, int]]]) -> AsyncIterator[dict[str, str] | None]:
    """The server's environment: ``base`` for wsops, plus its own OTLP sink for
    ``wsops-instr`` (whose stats go to ``spans`` once the server has stopped)."""
    sink = Sink(f"otlpsink-{label}", logdir) if name == "wsops-instr" else None
    env = dict(base) if PEERS[name][0] == "wsops" else {}
    try:
        if sink is not None:
            await sink.wait_ready()
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.endpoint
        yield env or None
        if sink is not None:  # the server has stopped (and flushed its spans) by now
            spans.setdefault(name, []).append(await asyncio.to_thread(sink.stats))
    finally:
        if sink is not None:
            await asyncio.to_thread(sink.stop)


async def run_peer(name: str, rep: int, args: argparse.Namespace, logdir: Path,
                   spans: dict[str, list[dict[str, int]]]) -> list[Result]:
    kind, extra = PEERS[name]
    async with peer_env(name, str(rep), logdir, args.wsops_env, spans) as env:
        return await run_server(name, rep, args, logdir, kind=kind, extra_args=extra, env=env)


async def run_idle(name: str, rep: int, args: argparse.Namespace, logdir: Path,
                   spans: dict[str, list[dict[str, int]]]) -> IdleResult:
    kind, extra = PEERS[name]
    server_cpus, loader_cpus = pinning(args.no_pin)
    async with peer_env(name, f"idle-{rep}", logdir, args.wsops_env, spans) as env:
        return await measure_idle(name, kind, extra, args, logdir, rep, env=env,
                                  server_cpus=server_cpus, loader_cpus=loader_cpus)


def peer_rows(results: list[Result], names: list[str]) -> list[dict[str, Any]]:
    """One row per server: medians over its runs."""
    rows = []
    for name in names:
        row: dict[str, Any] = {"server": name}
        for mode in MODES:
            rs = [r for r in results if r.server == name and r.mode == mode]
            row[f"{mode}_runs"] = len(rs)
            row[f"{mode}_us_per_delivery"] = (
                statistics.median(r.us_per_delivery for r in rs) if rs else None)
            row[f"{mode}_deliveries_per_s"] = (
                statistics.median(r.deliveries_per_s for r in rs) if rs else None)
            row[f"{mode}_losses"] = sum(r.losses for r in rs)
        paced = [r.latency for r in results
                 if r.server == name and r.mode == "paced" and r.latency and r.latency["count"]]
        for q in ("p50", "p99"):
            row[f"paced_{q}_ms"] = (statistics.median(lat[f"{q}_ms"] for lat in paced)
                                    if paced else None)
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]], errors: dict[str, list[str]]) -> str:
    def f(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    out = ["| server | us CPU/delivery, burst | us CPU/delivery, paced | deliveries/s, burst "
           "| deliveries/s, paced | paced p50 (ms) | paced p99 (ms) | losses |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        losses = row["burst_losses"] + row["paced_losses"]
        note = f" ({len(errors[row['server']])} runs failed)" if errors.get(row["server"]) else ""
        out.append(
            f"| {row['server']}{note} | {f(row['burst_us_per_delivery'], '.2f')} "
            f"| {f(row['paced_us_per_delivery'], '.2f')} "
            f"| {f(row['burst_deliveries_per_s'], ',.0f')} "
            f"| {f(row['paced_deliveries_per_s'], ',.0f')} | {f(row['paced_p50_ms'], '.2f')} "
            f"| {f(row['paced_p99_ms'], '.2f')} | {losses} |")
    return "\n".join(out)


def idle_rows(idle: list[IdleResult], names: list[str]) -> list[dict[str, Any]]:
    """One row per server: medians over its idle runs, and the ratio to Node ws."""
    rows: list[dict[str, Any]] = []
    for name in names:
        rs = [r for r in idle if r.server == name]
        if not rs:
            continue
        rows.append({
            "server": name, "runs": len(rs), "connections": rs[0].connections,
            "opened": min(r.opened for r in rs), "open_at_end": min(r.open_at_end for r in rs),
            "server_established": min((r.server_established for r in rs
                                       if r.server_established is not None), default=None),
            "rss_before_mib": statistics.median(r.rss_before for r in rs) / 2**20,
            "rss_after_mib": statistics.median(r.rss_after for r in rs) / 2**20,
            "kib_per_connection": statistics.median(r.kib_per_connection for r in rs),
            "kib_per_connection_all": [round(r.kib_per_connection, 3) for r in rs],
            "uss_kib_per_connection": statistics.median(
                [r.uss_kib_per_connection for r in rs if r.uss_kib_per_connection is not None]
                or [float("nan")]),
            "seconds_to_open": statistics.median(r.seconds_to_open for r in rs),
            "server_cpu_us_per_open": statistics.median(
                r.server_cpu_open_s / max(r.opened, 1) * 1e6 for r in rs),
            "settled": all(r.settled for r in rs),
        })
    node = next((r["kib_per_connection"] for r in rows if r["server"] == "node-ws"), None)
    for row in rows:
        row["vs_node_ws"] = row["kib_per_connection"] / node if node else None
    return rows


def idle_table(rows: list[dict[str, Any]], errors: dict[str, list[str]]) -> str:
    out = ["| server | idle connections held (server sees) | RSS before -> after (MiB) "
           "| KiB RSS per connection | vs Node `ws` | KiB USS per connection "
           "| server CPU per connect (us) |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        note = f" ({len(errors[row['server']])} runs failed)" if errors.get(row["server"]) else ""
        ratio = "-" if row["vs_node_ws"] is None else f"{row['vs_node_ws']:.2f}x"
        unsettled = "" if row["settled"] else " (not settled)"
        seen = row["server_established"]
        out.append(
            f"| {row['server']}{note} | {row['open_at_end']:,}/{row['connections']:,} "
            f"({'-' if seen is None else format(seen, ',')}) "
            f"| {row['rss_before_mib']:.1f} -> {row['rss_after_mib']:.1f} "
            f"| {row['kib_per_connection']:.2f}{unsettled} | {ratio} "
            f"| {row['uss_kib_per_connection']:.2f} | {row['server_cpu_us_per_open']:.0f} |")
    return "\n".join(out)


async def main_async(args: argparse.Namespace) -> int:
    for key in [k for k in os.environ if k.startswith(("OTEL_", "WSOPS_"))]:
        del os.environ[key]  # the servers run on their defaults (and the sink's endpoint)
    results: list[Result] = []
    idle: list[IdleResult] = []
    errors: dict[str, list[str]] = {}
    idle_errors: dict[str, list[str]] = {}
    spans: dict[str, list[dict[str, int]]] = {}
    started = time.monotonic()
    fanout_s = idle_s = 0.0
    with tempfile.TemporaryDirectory(prefix="wsops-peers-") as tmp:
        logdir = Path(tmp)
        source, args.wsops_env = await asyncio.to_thread(wsops_source, args.wsops_commit, logdir)
        print(f"wsops servers run on: {source['tree']} ({source['commit']})", flush=True)
        if "fanout" in args.phases:
            for rep in range(1, args.repeat + 1):
                for name in args.peers:
                    print(f"{name} #{rep}", flush=True)
                    try:
                        results.extend(await run_peer(name, rep, args, logdir, spans))
                    except (RuntimeError, OSError, TimeoutError) as exc:
                        print(f"  [{name} #{rep}] FAILED: {exc}", flush=True)
                        errors.setdefault(name, []).append(f"#{rep}: {exc}")
            fanout_s = time.monotonic() - started
        if "idle" in args.phases:
            t0 = time.monotonic()
            for rep in range(1, args.idle_repeat + 1):
                for name in args.peers:
                    print(f"{name} idle #{rep}", flush=True)
                    try:
                        idle.append(await run_idle(name, rep, args, logdir, spans))
                    except (RuntimeError, OSError, TimeoutError) as exc:
                        print(f"  [{name} idle #{rep}] FAILED: {exc!r}", flush=True)
                        idle_errors.setdefault(name, []).append(f"#{rep}: {exc!r}")
            idle_s = time.monotonic() - t0
    elapsed = time.monotonic() - started
    rows = peer_rows(results, args.peers) if results or errors else []
    irows = idle_rows(idle, args.peers)
    if rows:
        print(f"\n{args.subscribers} subscribers, burst {args.messages} messages, paced "
              f"{args.paced_messages} messages with a {args.gap_ms:g} ms gap, "
              f"{args.repeat} repetitions, {fanout_s:.0f}s\n")
        print(table(rows, errors))
    if irows or idle_errors:
        print(f"\nIdle memory: {args.idle_connections} connections after {args.idle_warmup} "
              f"warm-up ones, held >= {args.idle_hold:g}s, server pinned to CPU "
              f"{pinning(args.no_pin)[0] or 'any'}, {args.idle_repeat} repetition(s), "
              f"{idle_s:.0f}s\n")
        print(idle_table(irows, idle_errors))
    print(f"\n{elapsed:.0f}s in all")
    if args.json:
        doc = {"machine": {**machine(), **versions()}, "wsops_source": source,
               "args": {k: v for k, v in vars(args).items() if k != "wsops_env"},
               "seconds": elapsed, "fanout_seconds": fanout_s, "idle_seconds": idle_s,
               "summary": rows, "fanout_summary": summarize(results), "spans": spans,
               "errors": errors, "runs": [asdict(r) for r in results],
               "idle_summary": irows, "idle_errors": idle_errors,
               "idle_runs": [asdict(r) for r in idle]}
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(doc, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    ok = (not errors and not idle_errors and all(r.losses == 0 for r in results)
          and all(r.open_at_end == r.connections and r.settled for r in idle))
    return 0 if ok else 1


def main() -> None:
    parser = arg_parser("fan-out and idle memory: wsops bare and instrumented, naive aiohttp, "
                        "python-socketio, Node ws, picows", timeout=120.0)
    parser.add_argument("--peers", nargs="+", choices=list(PEERS), default=list(PEERS),
                        help="servers to run (default: all six, in this order)")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES),
                        help="fan-out CPU, idle memory per connection, or both (default)")
    parser.add_argument("--idle-connections", type=int, default=5000,
                        help="idle connections measured per server")
    parser.add_argument("--idle-warmup", type=int, default=100,
                        help="connections opened (and kept) before the baseline RSS")
    parser.add_argument("--idle-per-room", type=int, default=5,
                        help="wsops: idle connections per room (each subscribes to one)")
    parser.add_argument("--idle-hold", type=float, default=30.0,
                        help="seconds the idle connections are held at least before the RSS "
                        "is read (past the first heartbeats: wsops 20 s, Engine.IO 25 s)")
    parser.add_argument("--idle-timeout", type=float, default=180.0,
                        help="bound of each server's idle phase, seconds")
    parser.add_argument("--idle-repeat", type=int, default=1, help="idle runs per server")
    parser.add_argument("--no-pin", action="store_true",
                        help="idle phase: do not pin the server to the last CPU and the load "
                        "worker to the others")
    parser.add_argument("--wsops-commit", metavar="REV",
                        help="run the wsops servers on `git archive REV` instead of the work tree")
    parser.set_defaults(latency=True, profile=None)
    args = parser.parse_args()
    check_args(parser, args)
    if not 1 <= args.idle_connections + args.idle_warmup <= 19000 or args.idle_warmup < 0:
        parser.error("--idle-connections + --idle-warmup must be in 1..19000 (20000 open files "
                     "per process)")
    if args.idle_per_room < 1 or args.idle_repeat < 1 or args.idle_hold < 0:
        parser.error("--idle-per-room and --idle-repeat must be >= 1, --idle-hold >= 0")
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
