"""The capacity model (``wsops plan``) against measured runs on this machine.

    python bench/capacity.py [--write-default] [--json bench/results/capacity.json]

1. **Calibrate**: five ``wsops loadtest`` runs against a fresh ``wsops serve`` each (5,000 idle
   connections; echo at 3,000 and 6,000 publishes/s; 30 rooms of 50; one room of 1,000) and a
   two-node fleet on a private Redis (20 rooms of 48 across both), their observations fitted
   into a cost profile (``wsops.capacity.profiles.fit``, the same as ``wsops plan --profile``
   does). ``--write-default`` stores it as the profile shipped with wsops.
2. **Validate** at three other points: chat-shaped rooms (400 rooms of 5), rooms of 100, and a
   two-node fleet on a private Redis (both nodes' loads in the same 50 rooms, so every message
   crosses Redis): the model's CPU, memory and delivery p99 for that workload against what the
   runs measured, and the error.

The server (or both nodes) and Redis run pinned to CPU 0, the load generators to CPU 1. One
scenario at a time. ``--seconds`` sets each load window (default 15).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent))
import targets
from targets import Server, free_port

from wsops.capacity import model, profiles
from wsops.loadtest.runner import capacity_observation

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "wsops" / "capacity" / profiles.DEFAULT_NAME


def run(scenario: str, server: Server, *args: str) -> dict[str, Any]:
    report = targets.loadtest(scenario, server, *args)
    obs = capacity_observation(report)
    assert obs is not None
    return {"report": report, "observation": obs}


def calibrate(seconds: float) -> list[dict[str, Any]]:
    runs = []
    for scenario, args in (
            ("idle", ["-c", "5000", "-p", "2"]),
            ("echo", ["-c", "200", "--rate", "3000"]),
            ("echo", ["-c", "400", "--rate", "6000"]),
            ("fanout", ["-c", "1530", "--rooms", "30", "--rate", "400"]),
            ("fanout", ["-c", "1001", "--rooms", "1", "--rate", "50"])):
        server = Server()
        try:
            runs.append(run(scenario, server, *args, "-d", str(seconds)))
        finally:
            server.stop()
    return runs


def predicted(workload: model.Workload, profile: model.Profile, workers: int,
              nodes: int = 1) -> dict[str, float]:
    cpu = model.worker_cpu_us(workload, profile, nodes) / 1e6
    out = {"cpu_cores": cpu,
           "rss_growth_bytes": workload.connections * profile.rss_bytes_per_connection,
           "delivery_p99_ms": model.delivery_p99_ms(workload, profile, workers, cpu / workers)
           + (profile.broker_hop_p99_ms if nodes > 1 else 0.0)}
    if nodes > 1:
        shards, busy, _ = model.redis_load(workload, profile, nodes)
        out["redis_cpu_cores"] = busy * shards
    return out


def measured(report: dict[str, Any]) -> dict[str, float]:
    s, m = report["server"], report["messages"]
    return {"cpu_cores": s["cpu_seconds"] / s["window_seconds"],
            "rss_growth_bytes": s["rss_bytes_connected"] - s["rss_bytes_before_connect"],
            "delivery_p99_ms": m["latency"]["p99_ms"]}


def fanout_workload(connections: int, rooms: int, publishes: float) -> model.Workload:
    subscribers = (connections - rooms) // rooms
    return model.Workload(connections, publishes, (model.RoomShape(subscribers),))


def single_points(profile: model.Profile, seconds: float) -> list[dict[str, Any]]:
    out = []
    for name, connections, rooms, rate in (("chat: 400 rooms of 5", 2000, 400, 2500),
                                          ("rooms of 100", 3030, 30, 300)):
        server = Server()
        try:
            r = run("fanout", server, "-c", str(connections), "--rooms", str(rooms), "--rate",
                    str(rate), "-d", str(seconds))["report"]
        finally:
            server.stop()
        window = r["server"]["window_seconds"]
        workload = fanout_workload(connections, rooms, r["messages"]["acked"] / window)
        out.append({"point": f"{name}, {rate} publishes/s", "command": r["plan"],
                    "predicted": predicted(workload, profile, 1), "measured": measured(r)})
    return out


class Redis:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.TemporaryDirectory(prefix="wsops-capacity-redis-")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", self.dir.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if targets.PIN is not None:
            psutil.Process(self.proc.pid).cpu_affinity([targets.PIN[0]])
        time.sleep(0.5)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.dir.cleanup()


def cpu_of(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def fleet_run(connections: int, rooms: int, rate: int, seconds: float) -> dict[str, Any]:
    """Two nodes on one Redis, a load generator on each with the same rooms: every room has a
    publisher and subscribers on both nodes, so each publish is a store and two pub/sub
    messages. Its observation and the workload it was."""
    redis = Redis()
    nodes = [Server("--broker", redis.url), Server("--broker", redis.url)]
    reports: list[dict[str, Any]] = []
    try:
        before = cpu_of(redis.proc.pid)
        began = time.monotonic()
        threads = [threading.Thread(target=lambda n=n: reports.append(targets.loadtest(
            "fanout", n, "-c", str(connections), "--rooms", str(rooms), "--rate", str(rate),
            "-d", str(seconds)))) for n in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        redis_cpu = cpu_of(redis.proc.pid) - before
        elapsed = time.monotonic() - began
    finally:
        for n in nodes:
            n.stop()
        redis.stop()
    window = max(r["server"]["window_seconds"] for r in reports)
    publishes = sum(r["messages"]["acked"] for r in reports)
    workload = model.Workload(2 * connections, publishes / window, (
        model.RoomShape(2 * (connections - rooms) // rooms),))
    observation = {
        "source": f"two nodes on Redis, each: wsops loadtest fanout -c {connections} --rooms "
                  f"{rooms} --rate {rate} -d {seconds:g}",
        "seconds": window, "cpu_seconds": sum(r["server"]["cpu_seconds"] for r in reports),
        "publishes": publishes, "deliveries": sum(r["messages"]["received"] for r in reports),
        "connections": 2 * connections, "broker_messages": 3 * publishes,
        "redis_cpu_seconds": redis_cpu * window / elapsed,  # its share over the load window
        "rss_bytes_per_connection": sum(r["server"]["rss_bytes_per_connection"]
                                        for r in reports) / 2,
        "delivery_p99_ms": max(r["messages"]["latency"]["p99_ms"] or 0 for r in reports)}
    measured_point = {
        "cpu_cores": observation["cpu_seconds"] / window,
        "rss_growth_bytes": sum(r["server"]["rss_bytes_connected"]
                                - r["server"]["rss_bytes_before_connect"] for r in reports),
        "delivery_p99_ms": observation["delivery_p99_ms"],
        "redis_cpu_cores": observation["redis_cpu_seconds"] / window}
    return {"observation": observation, "workload": workload, "measured": measured_point}


def errors(point: dict[str, Any]) -> dict[str, float]:
    return {k: round(point["predicted"][k] / v - 1, 3) for k, v in point["measured"].items()
            if v}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--write-default", action="store_true",
                        help=f"store the fitted profile as {DEFAULT.relative_to(ROOT)}")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cpus = sorted(psutil.Process().cpu_affinity())
    targets.PIN = (cpus[0], set(cpus[1:])) if len(cpus) > 1 else None
    runs = calibrate(args.seconds)
    observations = [r["observation"] for r in runs]
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    base, _ = profiles.load()
    floor = min(r["report"]["messages"]["latency"]["p99_ms"] for r in runs
                if r["report"].get("messages") and r["observation"]["publishes"])
    base = profiles.replace_costs(base, send_floor_p99_ms=round(floor, 2))
    single = profiles.fit(base, observations)
    # The fleet run: what crossing Redis adds to the p99, over the one-node model's.
    fleet = fleet_run(500, 20, 500, args.seconds)
    hop = fleet["observation"]["delivery_p99_ms"] - predicted(
        fleet["workload"], single, 2)["delivery_p99_ms"]
    observations.append({**fleet["observation"], "broker_hop_p99_ms": round(hop, 3)})
    profile = profiles.fit(base, observations, measured=" + ".join(
        o["source"] for o in observations), date=date,
        command="python bench/capacity.py --write-default", machine=f"{len(cpus)} cores")
    print(profiles.to_json(profile, observations))
    if args.write_default:
        DEFAULT.write_text(profiles.to_json(profile, observations))
    points = single_points(profile, args.seconds)
    check = fleet_run(1000, 50, 500, args.seconds)
    points.append({"point": "two nodes on Redis, 50 rooms of 38, 2 x 500 publishes/s",
                   "predicted": predicted(check["workload"], profile, 2, nodes=2),
                   "measured": check["measured"]})
    for p in points:
        p["error"] = errors(p)
        print(json.dumps(p))
    if args.json:
        args.json.write_text(json.dumps({"date": date, "profile": profiles.json_object(profile),
                                         "points": points}, indent=2) + "\n")


if __name__ == "__main__":
    main()
