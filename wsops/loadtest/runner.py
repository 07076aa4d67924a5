"""Run a plan: start one process per shard, start them together, merge what they report.

``execute`` returns the JSON report (see ``report``); ``on_progress`` gets one merged snapshot
per second while the test runs.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import queue
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import psutil  # type: ignore[import-untyped]

from wsops.loadtest.latency import Latencies
from wsops.loadtest.plan import Plan, shards
from wsops.loadtest.shard import run_shard
from wsops.loadtest.timeline import histogram_bins, opened_over_time, per_second, server_over_time
from wsops.memory_per_connection import memory_per_connection

Progress = Callable[[str, dict[str, Any]], None]


class LoadTestError(RuntimeError):
    """The run could not complete (a process failed or went silent)."""


def server_stats(admin_url: str | None, token: str | None = None,
                 pid: int | None = None, timeout: float = 5.0) -> dict[str, Any] | None:
    """The target's CPU, RSS and connections: from its process (``pid``, any server on this
    machine, children included) or its ``/admin/stats``; None with neither."""
    if pid is not None:
        return {**process_stats(pid), "at": time.monotonic()}
    if not admin_url:
        return None
    req = urllib.request.Request(admin_url.rstrip("/") + "/admin/stats")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body: dict[str, Any] = json.loads(r.read())
            return {**body, "at": time.monotonic()}
    except (OSError, ValueError) as exc:
        return {"error": repr(exc)}


def process_stats(pid: int) -> dict[str, Any]:
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        cpu = rss = 0.0
        for p in procs:
            with p.oneshot():
                t = p.cpu_times()
                cpu += t.user + t.system
                rss += p.memory_info().rss
        return {"cpu_seconds": cpu, "rss_bytes": rss, "processes": len(procs)}
    except psutil.Error as exc:
        return {"error": repr(exc)}


WAITING = "waiting"
"""What ``_collect`` tells its progress callback after a second with no message (while the
connections open): a chance to read the server."""


def execute(plan: Plan, on_progress: Progress | None = None,
            admin_token: str | None = None) -> dict[str, Any]:
    plan.check()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    go = ctx.Event()
    parts = shards(plan)
    procs = [ctx.Process(target=run_shard, args=(s, out, go), daemon=True,
                         name=f"wsops-loadtest-{s.index}") for s in parts]
    server = {"start": server_stats(plan.admin_url, admin_token, plan.server_pid)}
    readings: list[dict[str, Any]] = []  # the server once a second, opening included
    read_at = [0.0]
    start = server["start"]
    watch = start is not None and "error" not in start

    def progressed(kind: str, body: dict[str, Any]) -> None:
        # (every shard's progress comes once a second, and while connections open a wait of
        # a second with no news says "waiting": one reading for all of them, none if the
        # server could not be read at the start, each bounded to 1 s)
        if kind in ("progress", WAITING) and watch and time.monotonic() - read_at[0] >= 0.9:
            read_at[0] = time.monotonic()
            reading = server_stats(plan.admin_url, admin_token, plan.server_pid, timeout=1.0)
            if reading is not None and "error" not in reading:
                readings.append(reading)
        if on_progress and kind != WAITING:
            on_progress(kind, body)

    for p in procs:
        p.start()
    ready: dict[int, dict[str, Any]] = {}
    results: dict[int, dict[str, Any]] = {}
    progress: dict[int, dict[str, Any]] = {}
    try:
        deadline = time.monotonic() + plan.connect_timeout + 60  # opening is bounded too
        _collect(out, ready, results, progress, procs, deadline, "ready", len(parts), progressed)
        server["before"] = server_stats(plan.admin_url, admin_token, plan.server_pid)
        if on_progress:
            on_progress("ready", {"opened": sum(r["opened"] for r in ready.values()),
                                  "seconds": max(r["seconds"] for r in ready.values())})
        go.set()
        deadline = time.monotonic() + plan.duration + plan.settle + 60
        _collect(out, ready, results, progress, procs, deadline, "result", len(parts),
                 progressed)
        server["after"] = server_stats(plan.admin_url, admin_token, plan.server_pid)
    finally:
        go.set()
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
    readings = [r for r in (start, *readings, server.get("after"))
                if r is not None and "error" not in r]
    before = server.get("before")
    if before is not None and "error" not in before:  # in time order among the others
        readings = sorted([*readings, before], key=lambda r: float(r.get("at", 0)))
    return report(plan, [results[i] for i in sorted(results)], server, readings)


def _collect(out: Any, ready: dict[int, Any], results: dict[int, Any],
             progress: dict[int, Any], procs: list[Any], deadline: float, want: str,
             count: int, on_progress: Progress | None) -> None:
    target = ready if want == "ready" else results
    while len(target) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise LoadTestError(f"{count - len(target)} load processes did not report {want}")
        try:
            kind, index, body = out.get(timeout=min(left, 1.0))
        except queue.Empty:
            dead = [p.name for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
            if dead:
                raise LoadTestError(f"load process died: {', '.join(dead)}") from None
            if on_progress:
                on_progress(WAITING, {})
            continue
        if kind == "error":
            raise LoadTestError(f"load process {index} failed: {body}")
        if kind == "progress":
            progress[index] = body
            if on_progress and len(progress) == count:
                on_progress("progress", _merge_progress(list(progress.values())))
        elif kind == "ready":
            ready[index] = body
        elif kind == "result":
            results[index] = body


def _merge_progress(parts: list[dict[str, Any]]) -> dict[str, Any]:
    p99s = [p["p99_ms"] for p in parts if p.get("p99_ms") is not None]
    return {"elapsed": max(p["elapsed"] for p in parts),
            "open": sum(p["open"] for p in parts),
            "published": sum(p["published"] for p in parts),
            "received": sum(p["received"] for p in parts),
            "p99_ms": max(p99s) if p99s else None}  # (the worst process: a live hint only)


def report(plan: Plan, results: list[dict[str, Any]],
           server: dict[str, dict[str, Any] | None],
           readings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Merge the processes' results into one report; ``readings``: the server's stats over
    the run (its timeline)."""
    rooms: dict[str, dict[str, int]] = {}
    errors: dict[str, int] = {}
    closes: dict[str, int] = {}
    for r in results:
        for room, v in r["rooms"].items():
            acc = rooms.setdefault(room, {})
            for k, n in v.items():
                acc[k] = acc.get(k, 0) + n
        for k, n in r["errors"].items():
            errors[k] = errors.get(k, 0) + n
        for k, n in r["close_codes"].items():
            closes[k] = closes.get(k, 0) + n
    latency = Latencies.merged(Latencies.from_wire(r["latency"]) for r in results)
    connect = Latencies.merged(Latencies.from_wire(r["connect_latency"]) for r in results)
    opened = sum(r["opened"] for r in results)
    elapsed = max((r["elapsed"] for r in results), default=0.0)
    opened_in = max((r["opened_in"] for r in results), default=0.0)
    expected = sum(v.get("acked", 0) * v.get("subscribers", 0) for v in rooms.values())
    received = sum(v.get("received", 0) for v in rooms.values())
    out: dict[str, Any] = {
        "plan": plan.to_dict(),
        "connections": {"requested": plan.connections, "opened": opened,
                        "open_at_end": sum(r["open_at_end"] for r in results),
                        "reconnects": sum(r.get("reconnects", 0) for r in results),
                        "failed": plan.connections - opened, "seconds_to_open": opened_in,
                        "per_second": round(opened / opened_in, 1) if opened_in else None,
                        "connect_latency": connect.summary(), "errors": errors,
                        "close_codes": closes,
                        "opened_over_time": opened_over_time(results)},
        "elapsed_seconds": elapsed,
        "timeline": per_second(results),
    }
    if plan.scenario in ("fanout", "echo"):
        published = sum(v.get("published", 0) for v in rooms.values())
        acked = sum(v.get("acked", 0) for v in rooms.values())
        out["messages"] = {
            "published": published, "acked": acked,
            "refused_or_unanswered": published - acked,
            "expected_deliveries": expected, "received": received,
            "lost": max(0, expected - received), "extra": max(0, received - expected),
            "sequence_gaps": sum(v.get("gaps", 0) for v in rooms.values()),
            "sequence_out_of_order": sum(v.get("out_of_order", 0) for v in rooms.values()),
            "deliveries_per_second": round(received / elapsed, 1) if elapsed else None,
            "latency": {**latency.summary(), "histogram": histogram_bins(latency)},
        }
        if plan.scenario == "fanout" and len(rooms) <= 100:
            out["rooms"] = rooms
    out["server"] = _server_figures(server, opened, received)
    if out["server"] is not None:
        out["server"]["timeline"] = server_over_time(readings or [])
        # Where the load began on that timeline: readings before it are the opening's.
        before, first = server.get("before"), readings[0] if readings else None
        out["server"]["load_started"] = (
            round(float(before["at"]) - float(first["at"]), 2)
            if before and first and "at" in before and "at" in first else None)
    return out


def _server_figures(server: dict[str, dict[str, Any] | None], opened: int,
                    received: int) -> dict[str, Any] | None:
    start, before, after = server.get("start"), server.get("before"), server.get("after")
    if not start or not before or not after or any("error" in s for s in (start, before, after)):
        return {"error": next((s["error"] for s in (start, before, after)
                               if s and "error" in s), None)} if start else None
    cpu = after["cpu_seconds"] - before["cpu_seconds"]
    # wsops.memory_per_connection's figure, the baseline being the RSS before the test's
    # connections opened (people see it from MIN_CONNECTIONS opened up).
    per_conn = memory_per_connection(before["rss_bytes"], start["rss_bytes"], opened)
    return {
        "cpu_seconds": round(cpu, 3),
        "window_seconds": round(after["at"] - before["at"], 3),
        "cpu_seconds_connecting": round(before["cpu_seconds"] - start["cpu_seconds"], 3),
        "cpu_us_per_delivery": round(cpu * 1e6 / received, 3) if received else None,
        "rss_bytes_before_connect": start["rss_bytes"], "rss_bytes_connected": before["rss_bytes"],
        "rss_bytes_end": after["rss_bytes"],
        "rss_bytes_per_connection": round(per_conn) if opened else None,
        "connections_opened": opened, "connections_seen": before.get("connections"),
        "version": before.get("version"),
    }


def capacity_observation(result: dict[str, Any]) -> dict[str, Any] | None:
    """What ``wsops plan`` can learn from this run (``wsops.capacity.profiles``), or None
    without the server's figures (no --admin or --pid)."""
    s = result.get("server")
    if not s or "cpu_seconds" not in s:
        return None
    plan, m = result["plan"], result.get("messages", {})
    opened = result["connections"]["opened"]
    return {
        "source": f"wsops loadtest {plan['scenario']} -c {plan['connections']} "
                  f"--rooms {plan['rooms']} --rate {plan['rate']:g} "
                  f"--duration {plan['duration']:g} --size {plan['size']}",
        "seconds": s["window_seconds"], "cpu_seconds": s["cpu_seconds"],
        "publishes": m.get("acked", 0), "deliveries": m.get("received", 0),
        "connections": opened, "accepted": opened,
        "accept_cpu_seconds": s["cpu_seconds_connecting"],
        "rss_bytes_per_connection": s["rss_bytes_per_connection"],
        "delivery_p99_ms": m.get("latency", {}).get("p99_ms"),
        "rss_bytes_end": s["rss_bytes_end"],
    }
