"""What watching costs a busy node: delivery latency under ``wsops loadtest fanout`` with and
without a tap on its busiest room and the fleet page's polling of ``/admin/flow`` (issue #18:
at most +10% on delivery p99).

Runs alternate (off, on, off, on, ...), each against a fresh ``wsops serve`` pinned to the last
CPU with the load generator and this script's readers on the others. "On" opens
``GET /admin/tap?room=<busiest>&rate=20`` as soon as the load runs (reading every line, as
``wsops tap`` does) and polls ``/admin/flow?top=10`` and ``/admin/fleet`` every 2 s (the fleet
page's interval). The figures: the load generator's publish-to-receive p50/p99/p99.9 and the
node's own p99 bucket (``wsops_delivery_latency_seconds``), per run, and the median ratio.

Run: ``python bench/tapcost.py [--repeat 3] [--json bench/results/tapcost.json]``
(about 40 s per run on 2 cores; only 127.0.0.1; every process started is stopped).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import targets
from targets import Server, loadtest, scrape, server_p99


def _watch(server: Server, stop: threading.Event, seen: dict[str, Any]) -> None:
    """The tap on the busiest room (read line by line) and the page's polls, until ``stop``."""
    base = f"http://127.0.0.1:{server.admin}"
    room = None
    while room is None and not stop.wait(0.5):
        with urllib.request.urlopen(base + "/admin/flow?top=1", timeout=5) as r:
            rooms = json.load(r)["rooms"]
        room = rooms[0]["room"] if rooms and rooms[0]["msgs_out"] else None
    if room is None:
        return
    seen["room"] = room

    def poll() -> None:
        while not stop.wait(2.0):
            for path in ("/admin/flow?top=10", "/admin/fleet"):
                with urllib.request.urlopen(base + path, timeout=5) as r:
                    r.read()
                seen["polls"] = seen.get("polls", 0) + 1

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    with urllib.request.urlopen(f"{base}/admin/tap?room={room}&rate=20", timeout=30) as r:
        for line in r:
            event = json.loads(line)
            seen["events"] = seen.get("events", 0) + 1
            if event.get("event") == "stats":
                seen["dropped"] = event["dropped"]
            if stop.is_set():
                break
    poller.join()


def run(watched: bool, args: argparse.Namespace) -> dict[str, Any]:
    server = Server()
    stop = threading.Event()
    seen: dict[str, Any] = {}
    watcher = threading.Thread(target=_watch, args=(server, stop, seen), daemon=True)
    try:
        before = scrape(server)
        if watched:
            watcher.start()
        r = loadtest("fanout", server, "-c", str(args.connections), "--rooms", str(args.rooms),
                     "--rate", str(args.rate), "-d", str(args.duration), "-p", "1",
                     "--connect-timeout", "120", "--settle", "3")
        after = scrape(server)
    finally:
        stop.set()
        server.stop()
        if watched:
            watcher.join(10)
    m = r["messages"]
    out = {"watched": watched, "published": m["published"], "deliveries": m["received"],
           "lost": m["lost"], "p50_ms": m["latency"]["p50_ms"],
           "p99_ms": m["latency"]["p99_ms"], "p999_ms": m["latency"]["p999_ms"],
           "server_p99": server_p99(before, after),
           "server_cpu_us_per_delivery": r["server"]["cpu_us_per_delivery"]}
    if watched:
        out["tap"] = seen
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cpus = os.sched_getaffinity(0)
    if len(cpus) >= 2:
        targets.PIN = (max(cpus), cpus - {max(cpus)})
        os.sched_setaffinity(0, cpus - {max(cpus)})  # the readers share the load's CPUs
    os.environ.pop("WSOPS_ADMIN_TOKEN", None)
    runs = [run(watched, args) for _ in range(args.repeat) for watched in (False, True)]

    def med(watched: bool, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["watched"] == watched)

    summary = {key: {"off": med(False, key), "on": med(True, key),
                     "ratio": round(med(True, key) / med(False, key), 3)}
               for key in ("p50_ms", "p99_ms", "p999_ms", "server_cpu_us_per_delivery")}
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "pinned": True,
              "command": " ".join(["python", "bench/tapcost.py", *sys.argv[1:]]),
              "load": vars(args) | {"json": None}, "summary": summary, "runs": runs}
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
