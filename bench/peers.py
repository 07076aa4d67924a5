"""Fan-out against five servers in one session: wsops and the broadcast loops users write instead.

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

All Python servers run on uvloop. Per server and mode the figures are the medians over the
repetitions of: server CPU (user + system, all threads) per delivered message, deliveries/s
(deliveries counted by the subscribers / wall time of the phase) and, in the paced mode,
publish-to-receive latency: each paced publish carries ``time.monotonic_ns()`` taken just
before the publisher writes it, and each subscriber subtracts it from its own clock when the
delivery frame is read (one machine, one CLOCK_MONOTONIC), for every delivery; p50/p99 are over
all deliveries of the run (2% histogram buckets). Burst latency is not reported (it is the
queue). Reading the stamps costs the loader, not the server.

Setup first: ``npm ci --prefix bench/peers/node_ws`` (Node 18+) and python-socketio
(``pip install -e '.[bench]'``).

Run: ``python bench/peers.py [--subscribers 1000 --messages 500 --repeat 3 --json out.json]``
(a markdown table at the end; ``--json`` adds every run, versions and spans received).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from benchprocs import BENCH, NODE_WS
from fanout import MODES, Result, arg_parser, check_args, machine, run_server, summarize
from overhead import Sink

# name: (server kind, extra arguments); run in this order.
PEERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "wsops-bare": ("wsops", ("--no-instrument",)),
    "wsops-instr": ("wsops", ("--instrument",)),
    "naive": ("naive", ()),
    "socketio": ("socketio", ()),
    "node-ws": ("node-ws", ()),
}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in ("python-socketio", "python-engineio", "opentelemetry-sdk"):
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
    out["wsops"] = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=BENCH, capture_output=True, text=True,
        check=False).stdout.strip() or None
    return out


async def run_peer(name: str, rep: int, args: argparse.Namespace, logdir: Path,
                   spans: dict[str, list[dict[str, int]]]) -> list[Result]:
    kind, extra = PEERS[name]
    sink = Sink(f"otlpsink-{rep}", logdir) if name == "wsops-instr" else None
    try:
        env = None
        if sink is not None:
            await sink.wait_ready()
            env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}
        results = await run_server(name, rep, args, logdir, kind=kind, extra_args=extra, env=env)
        if sink is not None:  # the server has stopped (and flushed its spans) by now
            spans.setdefault(name, []).append(await asyncio.to_thread(sink.stats))
        return results
    finally:
        if sink is not None:
            await asyncio.to_thread(sink.stop)


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


async def main_async(args: argparse.Namespace) -> int:
    for key in [k for k in os.environ if k.startswith(("OTEL_", "WSOPS_"))]:
        del os.environ[key]  # the servers run on their defaults (and the sink's endpoint)
    results: list[Result] = []
    errors: dict[str, list[str]] = {}
    spans: dict[str, list[dict[str, int]]] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wsops-peers-") as tmp:
        logdir = Path(tmp)
        for rep in range(1, args.repeat + 1):
            for name in args.peers:
                print(f"{name} #{rep}", flush=True)
                try:
                    results.extend(await run_peer(name, rep, args, logdir, spans))
                except (RuntimeError, OSError, TimeoutError) as exc:
                    print(f"  [{name} #{rep}] FAILED: {exc}", flush=True)
                    errors.setdefault(name, []).append(f"#{rep}: {exc}")
    elapsed = time.monotonic() - started
    rows = peer_rows(results, args.peers)
    print(f"\n{args.subscribers} subscribers, burst {args.messages} messages, paced "
          f"{args.paced_messages} messages with a {args.gap_ms:g} ms gap, "
          f"{args.repeat} repetitions, {elapsed:.0f}s\n")
    print(table(rows, errors))
    if args.json:
        doc = {"machine": {**machine(), **versions()}, "args": vars(args), "seconds": elapsed,
               "summary": rows, "fanout_summary": summarize(results), "spans": spans,
               "errors": errors, "runs": [asdict(r) for r in results]}
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(doc, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0 if not errors and all(r.losses == 0 for r in results) else 1


def main() -> None:
    parser = arg_parser("fan-out: wsops bare and instrumented, naive aiohttp, python-socketio, "
                        "Node ws", timeout=120.0)
    parser.add_argument("--peers", nargs="+", choices=list(PEERS), default=list(PEERS),
                        help="servers to run (default: all five, in this order)")
    parser.set_defaults(latency=True, profile=None)
    args = parser.parse_args()
    check_args(parser, args)
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
