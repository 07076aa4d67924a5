"""The performance issue's targets, measured with ``wsops loadtest`` against ``wsops serve``.

    python bench/targets.py [--only storm,idle50k,sustained] [--json bench/results/targets.json]

One scenario at a time (never two loads at once), each against a fresh, instrumented server:

- ``storm``: connection storm, 20,000 connections as fast as they come (2 load processes, 2
  source addresses), against 1 worker and against ``--workers 2``: accepted connections/s.
- ``idle50k``: 50,000 connections held 60 s with heartbeats on (``--workers 4``, 4 load
  processes, 4 source addresses): server RSS per idle connection (supervisor, workers and their
  private Redis together) and how many stayed open.
- ``sustained``: 10,010 connections, 10 rooms of 1,000 subscribers and one publisher each,
  50 publishes/s in all = 50,000 deliveries/s for 60 s (1 worker): p99 publish-to-receive and
  losses.
- ``chat``: 10,000 connections in 2,000 rooms of 5 (one publisher, four subscribers) at
  ``--chat-rates`` publishes/s in all (default 2,000 and 10,000; 40K deliveries/s at 10,000)
  for 20 s each, against a fresh server each: p99, losses, and the node's own GC figures
  (longest single pause, collections, frozen objects) from its /metrics: under the load
  (from the first scrape with every connection open to the last one, scrapes 3 s apart), and
  apart from it while the connections opened and while they closed.

``--tree DIR`` runs the servers from another checkout (``git archive REV | tar -x -C DIR``),
the load generator from this one: before/after runs of the same scenario.

The load generator shares the machine (2 cores here) with the server: its CPU is in the figures'
way, as the issue says ("load generator included").
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TREE: Path | None = None  # --tree: the servers' checkout


class Server:
    def __init__(self, *args: str) -> None:
        self.port, self.admin = free_port(), free_port()
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (lives as long as the server)
            "w+", prefix="wsops-target-", suffix=".log")
        env = dict(os.environ)
        if TREE is not None:  # import that tree's wsops, not this one's (PYTHONSAFEPATH)
            env.update(PYTHONPATH=str(TREE), PYTHONSAFEPATH="1")
        self.proc = subprocess.Popen(
            [PY, "-m", "wsops", "serve", "--allow-anonymous", "--port", str(self.port),
             "--admin-port", str(self.admin), "--max-connections", "60000",
             "--rate-limit", "100000", "--rate-burst", "100000", *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=TREE)
        if PIN is not None:
            os.sched_setaffinity(self.proc.pid, {PIN[0]})
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/readyz", timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.2)
        self.stop()
        self.log.seek(0)
        raise SystemExit(f"server did not start:\n{self.log.read()[-2000:]}")

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def loadtest(scenario: str, server: Server, *args: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [PY, "-m", "wsops", "loadtest", scenario, server.url, "--pid",
               str(server.proc.pid), "--json", out.name, *args]
        print("$", " ".join(["wsops", *cmd[3:]]), flush=True)
        others = PIN[1] if PIN is not None else None
        done = subprocess.run(cmd, stderr=subprocess.PIPE, text=True, preexec_fn=(
            (lambda: os.sched_setaffinity(0, others)) if others is not None else None))
        if done.returncode not in (0, 3):
            raise SystemExit(f"loadtest failed ({done.returncode}):\n{done.stderr[-3000:]}")
        report: dict[str, Any] = json.loads(Path(out.name).read_text())
        return report


def storm(workers: int, sources: str) -> dict[str, Any]:
    server = Server("--workers", str(workers))
    try:
        r = loadtest("connect", server, "-c", "20000", "-p", "2", "-d", "1",
                     "--sources", sources, "--connect-timeout", "120")
    finally:
        server.stop()
    c = r["connections"]
    return {"workers": workers, "opened": c["opened"], "per_second": c["per_second"],
            "connect_p50_ms": c["connect_latency"]["p50_ms"],
            "connect_p99_ms": c["connect_latency"]["p99_ms"], "errors": c["errors"]}


def idle50k() -> dict[str, Any]:
    server = Server("--workers", "4", "--heartbeat", "30")
    try:
        r = loadtest("idle", server, "-c", "50000", "-p", "4", "-d", "60",
                     "--sources", "127.0.0.6-127.0.0.9", "--connect-timeout", "300")
    finally:
        server.stop()
    c, s = r["connections"], r["server"]
    return {"opened": c["opened"], "open_at_end": c["open_at_end"],
            "seconds_to_open": round(c["seconds_to_open"], 1),
            "rss_bytes_per_connection": s["rss_bytes_per_connection"],
            "rss_mib_connected": round(s["rss_bytes_connected"] / 2**20, 1),
            "close_codes": c["close_codes"], "errors": c["errors"]}


def sustained() -> dict[str, Any]:
    server = Server()
    try:
        r = loadtest("fanout", server, "-c", "10010", "--rooms", "10", "--rate", "50",
                     "-d", "60", "-p", "2", "--connect-timeout", "120", "--settle", "5")
    finally:
        server.stop()
    m, s = r["messages"], r["server"]
    return {"connections": r["connections"]["opened"], "published": m["published"],
            "deliveries": m["received"], "lost": m["lost"],
            "deliveries_per_second": m["deliveries_per_second"],
            "p50_ms": m["latency"]["p50_ms"], "p99_ms": m["latency"]["p99_ms"],
            "p999_ms": m["latency"]["p999_ms"], "max_ms": m["latency"]["max_ms"],
            "server_cpu_us_per_delivery": s["cpu_us_per_delivery"]}


def scrape(server: Server) -> dict[str, float]:
    """The node's /metrics samples, by name with labels (``name{a="b"}``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.admin}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("wsops_") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def server_p99(before: dict[str, float], after: dict[str, float]) -> str:
    """The bucket holding the p99 of the node's own publish-to-socket latency between two
    scrapes (``wsops_delivery_latency_seconds``: accepted by the broker to written to every
    subscriber's socket), as ``<= X ms``."""
    prefix = "wsops_delivery_latency_seconds_bucket{"
    buckets = sorted((float(k.split('le="')[1].rstrip('"}')), v - before.get(k, 0.0))
                     for k, v in after.items() if k.startswith(prefix))
    if not buckets or not buckets[-1][1]:
        return "no deliveries"
    total = buckets[-1][1]
    for le, n in buckets:
        if n >= 0.99 * total:
            return f"<= {le * 1e3:g} ms"
    return "?"


def gc_pauses(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Collections between two scrapes, by generation: how many, how many paused > 10 ms, and
    the bucket of the longest (``wsops_gc_pause_duration_seconds``)."""
    def n(sample: dict[str, float], gen: str, name: str, le: str | None = None) -> float:
        labels = f'generation="{gen}"' + (f',le="{le}"' if le else "")
        return sample.get(f"wsops_gc_pause_duration_seconds_{name}{{{labels}}}", 0.0)

    out: dict[str, Any] = {}
    for gen in "012":
        count = n(after, gen, "count") - n(before, gen, "count")
        if not count:
            continue
        buckets = sorted(
            (float(k.split('le="')[1].rstrip('"}')), v - before.get(k, 0.0))
            for k, v in after.items()
            if k.startswith("wsops_gc_pause_duration_seconds_bucket") and f'"{gen}"' in k)
        quick = n(after, gen, "bucket", "0.01") - n(before, gen, "bucket", "0.01")
        out[f"gen{gen}"] = {
            "collections": count, "over_10ms": count - quick,
            "longest_at_most_s": next((le for le, c in buckets if c >= count), float("inf")),
            "seconds": round(n(after, gen, "sum") - n(before, gen, "sum"), 4)}
    return out


SERVE_ARGS: list[str] = []  # --serve-args: extra `wsops serve` flags for the chat scenario
PIN: tuple[int, set[int]] | None = None  # --pin: (the server's CPU, the load generator's)


def chat(rate: int, connections: int = 10000) -> dict[str, Any]:
    """Chat-shaped rooms; the node's GC pauses while all connections are open (the load), and
    while they were being opened, from its own histogram."""
    server = Server(*SERVE_ARGS)
    marks: dict[str, dict[str, float]] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(3.0):  # a scrape at 10K connections costs the node ~4 ms
            try:
                sample = scrape(server)
            except OSError:
                continue
            marks.setdefault("start", sample)
            if sample.get('wsops_connections_open{route="/ws"}', 0) >= connections:
                marks.setdefault("loaded", sample)
                marks["still_loaded"] = sample  # the last one before they close

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        r = loadtest("fanout", server, "-c", str(connections), "--rooms", str(connections // 5),
                     "--rate", str(rate), "-d", "20", "-p", "2", "--connect-timeout", "120",
                     "--settle", "5")
        stop.set()
        watcher.join()
        end = scrape(server)
    finally:
        stop.set()
        server.stop()
    m, s = r["messages"], r["server"]
    loaded = marks.get("loaded", end)
    unloaded = marks.get("still_loaded", end)
    return {"rate": rate, "connections": r["connections"]["opened"],
            "published": m["published"], "deliveries": m["received"], "lost": m["lost"],
            "deliveries_per_second": m["deliveries_per_second"],
            "p50_ms": m["latency"]["p50_ms"], "p99_ms": m["latency"]["p99_ms"],
            "p999_ms": m["latency"]["p999_ms"], "max_ms": m["latency"]["max_ms"],
            "server_cpu_us_per_delivery": s["cpu_us_per_delivery"],
            "server_p99": server_p99(loaded, unloaded),
            "gc_during_load": gc_pauses(loaded, unloaded),
            "gc_while_connecting": gc_pauses(marks.get("start", {}), loaded),
            "gc_while_closing": gc_pauses(unloaded, end),
            "gc_totals": {k.replace("wsops_gc_", ""): v for k, v in end.items()
                          if k.startswith(("wsops_gc_collections", "wsops_gc_pause_seconds",
                                           "wsops_gc_frozen"))}}


def main() -> None:
    global TREE, PIN
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--only", default="storm,idle50k,sustained")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--tree", type=Path, help="run the servers from this checkout")
    parser.add_argument("--chat-rates", default="2000,10000")
    parser.add_argument("--serve-args", default="", help="extra wsops serve flags (chat)")
    parser.add_argument("--pin", action="store_true",
                        help="pin each server to the last CPU and the load generator to the "
                             "others (one-process servers: the chat scenario)")
    args = parser.parse_args()
    cpus = os.sched_getaffinity(0)
    if args.pin and len(cpus) >= 2:
        PIN = (max(cpus), cpus - {max(cpus)})
    TREE = args.tree.resolve() if args.tree else None
    SERVE_ARGS[:] = args.serve_args.split()
    os.environ.pop("WSOPS_ADMIN_TOKEN", None)
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "tree": str(TREE) if TREE else ".", "pinned": PIN is not None}
    for name in args.only.split(","):
        if name == "storm":
            # Fresh source addresses for each run: the previous run's ports sit in TIME_WAIT
            # on the client side, and connect() crawls looking for free ones (542/s vs 3265/s).
            results["storm"] = [storm(1, "127.0.0.2-127.0.0.3"), storm(2, "127.0.0.4-127.0.0.5")]
        elif name == "idle50k":
            results["idle50k"] = idle50k()
        elif name == "sustained":
            results["sustained"] = sustained()
        elif name == "chat":
            results["chat"] = [chat(int(rate)) for rate in args.chat_rates.split(",")]
        else:
            parser.error(f"unknown target {name!r}")
        print(json.dumps({name: results[name]}, indent=1), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
