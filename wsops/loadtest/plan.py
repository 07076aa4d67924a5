"""What a load test will do, checked before anything connects, and split over processes.

Pure: no I/O but resolving the target's host name. A ``Plan`` is validated (bounded in count and
time, loopback only unless allowed) and ``shards`` cuts it into one ``Shard`` per process:
connections, publish rate and source addresses divided so that no process goes past the
per-process open-file cap and no source address past its ephemeral ports.
"""

from __future__ import annotations

import ipaddress
import math
import random
import socket
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

SCENARIOS = ("connect", "idle", "fanout", "echo")
MAX_CONNECTIONS = 200_000
MAX_DURATION = 3600.0
PER_PROCESS = 15_000  # connections per process: under the 20,000 open-file cap, with room
PER_SOURCE = 25_000  # connections per source address: under ~28K ephemeral ports
ARRIVALS = "poisson"
"""How publishes are paced (``next_publish``); until 2026-12-07 a burst per 5 ms tick, whose
reports have no ``plan.arrivals``."""
PACING_GAP = 0.001
"""The shortest pause between one process' sends: the event loop's timer resolution (libuv
counts in milliseconds). Each wake sends the publishes that fell due since the last one
(``next_publish``), so a publish leaves at most a millisecond after its moment."""


class PlanError(ValueError):
    """The plan is refused before anything connects (the message says why)."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str
    address: str  # the resolved IP


def parse_target(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "http"):
        raise PlanError(f"target must be a ws:// URL (wss is not supported), got {url!r}")
    if not parts.hostname:
        raise PlanError(f"no host in {url!r}")
    try:
        port = parts.port or 80
        address = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)[0][4][0]
    except (OSError, ValueError) as exc:
        raise PlanError(f"cannot resolve {parts.hostname!r}: {exc}") from None
    return Target(parts.hostname, port, parts.path or "/", str(address))


def is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def source_range(spec: str) -> list[str]:
    """``127.0.0.2-127.0.0.9`` or ``127.0.0.2,127.0.0.3`` as a list of loopback addresses."""
    out: list[str] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        first, _, last = part.partition("-")
        try:
            a = ipaddress.IPv4Address(first)
            b = ipaddress.IPv4Address(last) if last else a
        except ValueError:
            raise PlanError(f"bad source address range {part!r}") from None
        if b < a or int(b) - int(a) > 1023:
            raise PlanError(f"source range {part!r} is reversed or longer than 1024 addresses")
        out.extend(str(ipaddress.IPv4Address(i)) for i in range(int(a), int(b) + 1))
    return out


@dataclass(frozen=True)
class Plan:
    scenario: str
    url: str
    connections: int = 100
    duration: float = 10.0
    processes: int = 1
    rooms: int = 1
    rate: float = 100.0  # publishes per second in all (fanout, echo)
    size: int = 64  # bytes of payload per publish
    connect_rate: float = 0.0  # new connections per second in all (0: as fast as possible)
    sources: tuple[str, ...] = ()
    token: str | None = None
    admin_url: str | None = None
    allow_remote: bool = False
    settle: float = 5.0  # at most this long for deliveries after the last publish
    connect_timeout: float = 60.0  # seconds the opening of all connections may take
    server_pid: int | None = None  # the target's process, for CPU and RSS without an admin API
    reconnect: bool = False  # a closed connection reconnects and resumes (drains, rollouts)

    def check(self) -> Target:
        """Refuse a plan that is unbounded, malformed or aimed off this machine."""
        if self.scenario not in SCENARIOS:
            raise PlanError(f"unknown scenario {self.scenario!r} (one of {', '.join(SCENARIOS)})")
        if not 1 <= self.connections <= MAX_CONNECTIONS:
            raise PlanError(f"--connections must be 1..{MAX_CONNECTIONS}")
        if not 0 < self.duration <= MAX_DURATION:
            raise PlanError(f"--duration must be in (0, {MAX_DURATION:.0f}] seconds")
        if not 0 < self.connect_timeout <= MAX_DURATION or not 0 <= self.settle <= 600:
            raise PlanError("--connect-timeout must be in (0, 3600] and --settle in [0, 600]")
        if self.processes < 1 or self.processes > self.connections:
            raise PlanError("--processes must be 1..connections")
        if self.rooms < 1 or self.rate < 0 or not 16 <= self.size <= 1_000_000:
            raise PlanError("--rooms >= 1, --rate >= 0 and --size 16..1000000 bytes")
        if self.scenario == "fanout" and self.connections < 2 * self.rooms:
            raise PlanError("fanout needs at least 2 connections per room (publisher + subscriber)")
        target = parse_target(self.url)
        if not self.allow_remote:
            if not is_loopback(target.address):
                raise PlanError(f"{target.host} ({target.address}) is not a loopback address: "
                                "load tests go to 127.0.0.0/8 unless --allow-remote")
            for src in self.sources:
                if not is_loopback(src):
                    raise PlanError(f"source {src} is not a loopback address")
        need = -(-self.connections // PER_PROCESS)
        if self.processes < need:
            raise PlanError(f"{self.connections} connections need --processes >= {need} "
                            f"({PER_PROCESS} per process: the open-file cap is per process)")
        if self.connections > PER_SOURCE * max(1, len(self.sources)):
            raise PlanError(f"{self.connections} connections need at least "
                            f"{-(-self.connections // PER_SOURCE)} source addresses "
                            f"(--sources 127.0.0.2-127.0.0.N; ~{PER_SOURCE} each)")
        return target

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["token"] = "***" if self.token else None
        d["arrivals"] = ARRIVALS  # how the rate was paced (a report tells runs apart by it)
        return d


@dataclass(frozen=True)
class Shard:
    """One process' part: ``first`` is the index of its first connection overall."""

    index: int
    plan: Plan
    first: int
    connections: int
    rate: float
    sources: tuple[str, ...] = field(default=())


def shards(plan: Plan) -> list[Shard]:
    """Split connections and rate evenly over ``plan.processes``; each process gets its own
    slice of the source addresses (or all of them round-robin when there are fewer)."""
    n, k = plan.connections, plan.processes
    out, first = [], 0
    for i in range(k):
        count = n // k + (1 if i < n % k else 0)
        if plan.sources:
            mine = tuple(plan.sources[j] for j in range(len(plan.sources)) if j % k == i) or (
                plan.sources[i % len(plan.sources)],)
        else:
            mine = ()
        out.append(Shard(i, plan, first, count, plan.rate * count / n, mine))
        first += count
    return out


def next_publish(after: float, rate: float, rng: random.Random) -> float:
    """The moment of a process' next publish after the one at ``after``: many independent
    clients publish at random moments (a Poisson process at ``rate`` per second: exponential
    gaps), neither evenly spaced nor in bursts. Its tail is what a server serves in production:
    a burst of a fixed tick's publishes makes the last of them wait for the others; even
    spacing never queues at all."""
    return after + rng.expovariate(rate) if rate > 0 else math.inf


def with_defaults(plan: Plan) -> Plan:
    """A plan whose process count is raised to what its connections need."""
    need = -(-plan.connections // PER_PROCESS)
    return replace(plan, processes=max(plan.processes, need))
