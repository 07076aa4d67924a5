"""How many nodes, workers and Redis shards a workload needs, from measured costs. Pure.

A node runs one worker process per core (``wsops serve --workers N``); a worker is one event
loop on one core. The model adds up what the workload asks of the fleet's cores each second,

    cpu = churn * accept + publishes * publish + deliveries * delivery + connections * idle

(microseconds of one core, from a ``Profile``), and fits it, the connections' memory and their
file descriptors into as few nodes as the profile's usable share of a core, a node's memory
and a process's open-file cap allow; then adds a node while the fleet could not absorb the
loss of its largest one (its connections back at once on the others). Redis carries each
publish once (the store script) and once more per node that has subscribers of the room.

The delivery p99 is the measured floor (a send per socket) plus, on the busiest worker, the
fan-out of a room's local share and the queueing of publishes on its core: the waiting time's
99th percentile of an M/D/1 queue, taken as half that of M/M/1 at the same load
(``-ln(0.01 / rho) * service / (1 - rho) / 2``). It is a model: ``BENCHMARKS.md`` compares it
with measured runs and states its error.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

GIB = 1 << 30


@dataclass(frozen=True)
class RoomShape:
    """Rooms of ``subscribers`` receiving ``share`` of the publishes (shares add up to 1)."""

    subscribers: int
    share: float = 1.0


@dataclass(frozen=True)
class Workload:
    """What the fleet serves, at its busiest: ``connections`` open, ``publish_rate``
    publishes per second in all (into rooms shaped as ``rooms`` say), ``churn`` new connections
    per second (arrivals and reconnects), messages of ``payload_bytes``."""

    connections: int
    publish_rate: float
    rooms: tuple[RoomShape, ...] = (RoomShape(5),)
    payload_bytes: int = 64
    churn: float = 0.0

    def __post_init__(self) -> None:
        if self.connections < 0 or self.publish_rate < 0 or self.churn < 0:
            raise ValueError("connections, publish rate and churn cannot be negative")
        if self.payload_bytes < 0:
            raise ValueError("the payload size cannot be negative")
        if not self.rooms or any(r.subscribers < 0 or r.share < 0 for r in self.rooms):
            raise ValueError("rooms need a size (subscribers >= 0) and a share >= 0")
        total = sum(r.share for r in self.rooms)
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"room shares must add up to 1 (they add up to {total:g})")

    @property
    def deliveries_per_publish(self) -> float:
        return sum(r.share * r.subscribers for r in self.rooms)

    @property
    def delivery_rate(self) -> float:
        return self.publish_rate * self.deliveries_per_publish

    @property
    def largest_room(self) -> int:
        return max(r.subscribers for r in self.rooms if r.share > 0)


@dataclass(frozen=True)
class NodeSpec:
    """One machine of the fleet: ``cores`` (a worker each), memory, and the per-process cap on
    open files (each connection holds one)."""

    cores: int = 8
    memory_bytes: int = 16 * GIB
    max_fds_per_process: int = 20_000
    fd_reserve: int = 1_000  # files a worker keeps for itself (logs, Redis, admin, scrapes)
    memory_usable_share: float = 0.8  # the rest: the OS, page cache, a deploy's second copy

    def __post_init__(self) -> None:
        if self.cores < 1 or self.memory_bytes <= 0 or self.max_fds_per_process <= self.fd_reserve:
            raise ValueError("a node needs a core, memory, and more open files than its reserve")
        if not 0 < self.memory_usable_share <= 1:
            raise ValueError("the usable share of memory must be within (0, 1]")


@dataclass(frozen=True)
class Profile:
    """Measured costs (``profiles.py`` reads, writes and fits them)."""

    cpu_us_per_accept: float
    cpu_us_per_publish: float  # parse, store, reply: the publish without its deliveries
    cpu_us_per_delivery: float  # one message written to one subscriber
    cpu_us_per_connection_second: float  # an open connection's timers and heartbeats
    rss_bytes_per_connection: float
    rss_bytes_per_process: float  # a worker without connections
    send_floor_p99_ms: float  # the machine's own p99 of a send per socket, loaded
    redis_us_per_publish: float  # the store script, on Redis' one core
    redis_us_per_node_message: float  # one pub/sub message to one node
    cpu_us_per_broker_message: float = 0.0  # a node's side of a store or a pub/sub message
    broker_hop_p99_ms: float = 0.0  # what crossing Redis adds to the delivery p99
    usable_core_share: float = 0.7  # how busy a planned worker's core may be
    redis_usable_share: float = 0.5
    frame_overhead_bytes: int = 140  # a message's envelope and frame header around its data
    source: dict[str, Any] = field(default_factory=dict, compare=False)  # date, command, host

    def __post_init__(self) -> None:
        costs = {k: v for k, v in asdict(self).items() if k != "source"}
        bad = [k for k, v in costs.items() if not isinstance(v, (int, float)) or v < 0]
        if bad:
            raise ValueError(f"profile costs must be numbers >= 0: {', '.join(bad)}")
        if not 0 < self.usable_core_share <= 1 or not 0 < self.redis_usable_share <= 1:
            raise ValueError("usable shares must be within (0, 1]")


@dataclass(frozen=True)
class Plan:
    """The fleet for a workload; rates per second, CPU in cores, memory in bytes."""

    nodes: int
    workers_per_node: int
    cores_per_node: int
    memory_per_node: int
    redis_shards: int
    cpu_cores: float  # the whole workload, in busy cores
    cpu_cores_per_node: float
    memory_needed_per_node: float
    connections_per_node: float
    connections_per_worker: float
    delivery_rate: float
    bytes_out_per_node: float
    bytes_in_per_node: float
    redis_bytes_per_shard: float
    redis_cpu_per_shard: float  # busy share of a shard's core
    worker_utilization: float  # busy share of a worker's core
    delivery_p99_ms: float
    limited_by: str  # "cpu", "memory", "open files", "node loss" or "minimum"
    loss: dict[str, Any]  # what losing the largest node does to the others

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def worker_cpu_us(workload: Workload, profile: Profile, nodes: int = 1) -> float:
    """Microseconds of core time the whole workload takes per second on ``nodes`` nodes (the
    fleet's): more than one node adds the nodes' side of Redis, a store per publish and a
    pub/sub message per node reached."""
    cpu = (workload.churn * profile.cpu_us_per_accept
           + workload.publish_rate * profile.cpu_us_per_publish
           + workload.delivery_rate * profile.cpu_us_per_delivery
           + workload.connections * profile.cpu_us_per_connection_second)
    if nodes > 1:
        cpu += broker_messages(workload, nodes) * profile.cpu_us_per_broker_message
    return cpu


def broker_messages(workload: Workload, nodes: int) -> float:
    """Per second, the stores and pub/sub messages of a fleet of ``nodes`` (one store per
    publish, one message per node with subscribers of the room)."""
    return workload.publish_rate * (1 + sum(r.share * nodes_reached(r.subscribers, nodes)
                                            for r in workload.rooms))


def connections_per_worker_cap(node: NodeSpec, profile: Profile) -> int:
    """Connections one worker may hold: its open files, and its share of the node's memory."""
    by_files = node.max_fds_per_process - node.fd_reserve
    memory = node.memory_bytes * node.memory_usable_share / node.cores
    per = profile.rss_bytes_per_connection
    by_memory = int((memory - profile.rss_bytes_per_process) // per) if per else by_files
    return max(0, min(by_files, by_memory))


def nodes_needed(workload: Workload, profile: Profile, node: NodeSpec,
                 usable: float) -> tuple[int, str]:
    """The fewest nodes whose workers stay within ``usable`` of a core and within their
    connection cap, and what set that number."""
    cap = connections_per_worker_cap(node, profile)
    if cap <= 0:
        raise ValueError("a worker's share of the node's memory holds no connection: give the "
                         "nodes more memory or fewer cores")
    by_connections = math.ceil(workload.connections / (cap * node.cores) - 1e-9)
    files = cap == node.max_fds_per_process - node.fd_reserve
    nodes, limit = 1, "minimum"
    for _ in range(50):  # more nodes, more Redis traffic for each: until it settles
        by_cpu = math.ceil(worker_cpu_us(workload, profile, nodes) / (usable * 1e6)
                           / node.cores - 1e-9)
        by = {"cpu": by_cpu, "open files" if files else "memory": by_connections,
              "minimum": 1}
        limit = max(by, key=lambda k: (by[k], k == "minimum"))  # all at 1: the minimum
        if by[limit] <= nodes:
            break
        nodes = by[limit]
    return nodes, limit


def nodes_reached(subscribers: float, nodes: int) -> float:
    """Expected nodes holding at least one of a room's ``subscribers`` (spread evenly)."""
    if nodes <= 1:
        return 1.0 if subscribers else 0.0
    return float(nodes * (1 - (1 - 1 / nodes) ** subscribers))


def p99_wait(utilization: float, service_us: float) -> float:
    """99th percentile of the wait of a publish on a core this busy (M/D/1, as above), in us."""
    if utilization <= 0.01:
        return 0.0
    if utilization >= 1:
        return math.inf
    return -math.log(0.01 / utilization) * service_us / (1 - utilization) / 2


def plan(workload: Workload, profile: Profile, node: NodeSpec | None = None,
         spare: bool = True) -> Plan:
    """The fleet that serves ``workload`` at ``profile``'s costs on nodes like ``node``; with
    ``spare``, one that also survives the loss of its largest node."""
    node = node or NodeSpec()
    nodes, limit = nodes_needed(workload, profile, node, profile.usable_core_share)
    # Survive the loss of a node: its connections come back at once on the others, which must
    # hold them within their caps and a whole core per worker.
    while spare and not _absorbs_loss(workload, profile, node, nodes):
        nodes += 1
        limit = "node loss"
    cpu_us = worker_cpu_us(workload, profile, nodes)
    workers = nodes * node.cores
    per_node = workload.connections / nodes
    deliveries = workload.delivery_rate
    message = workload.payload_bytes + profile.frame_overhead_bytes
    shards, redis_cpu, redis_bytes = redis_load(workload, profile, nodes)
    utilization = cpu_us / 1e6 / workers
    return Plan(
        nodes=nodes, workers_per_node=node.cores, cores_per_node=node.cores,
        memory_per_node=node.memory_bytes, redis_shards=shards,
        cpu_cores=cpu_us / 1e6, cpu_cores_per_node=cpu_us / 1e6 / nodes,
        memory_needed_per_node=node.cores * profile.rss_bytes_per_process
        + per_node * profile.rss_bytes_per_connection,
        connections_per_node=per_node, connections_per_worker=per_node / node.cores,
        delivery_rate=deliveries, bytes_out_per_node=deliveries / nodes * message,
        bytes_in_per_node=workload.publish_rate / nodes * message,
        redis_bytes_per_shard=redis_bytes, redis_cpu_per_shard=redis_cpu,
        worker_utilization=utilization,
        delivery_p99_ms=delivery_p99_ms(workload, profile, workers, utilization)
        + (profile.broker_hop_p99_ms if nodes > 1 else 0.0),
        limited_by=limit, loss=_loss(workload, profile, node, nodes))


def delivery_p99_ms(workload: Workload, profile: Profile, workers: int,
                    utilization: float) -> float:
    """Publish-to-delivery p99 on the busiest worker: floor + the largest room's local fan-out
    + the wait behind other publishes."""
    if workload.publish_rate <= 0:
        return profile.send_floor_p99_ms
    local_share = workload.largest_room / workers  # its subscribers spread over the workers
    fanout_us = max(1.0, local_share) * profile.cpu_us_per_delivery
    # The mean job on a worker's core: its publishes, and its part of each room's fan-out.
    jobs = workload.publish_rate / workers + workload.publish_rate * sum(
        r.share * min(1.0, r.subscribers / workers) for r in workload.rooms)
    service_us = utilization * 1e6 / jobs if jobs else 0.0
    wait = p99_wait(utilization, service_us)
    return profile.send_floor_p99_ms + (fanout_us + wait) / 1000


def redis_load(workload: Workload, profile: Profile, nodes: int) -> tuple[int, float, float]:
    """Shards (0 for one node: the in-process broker), each shard's busy share of its core and
    bytes per second."""
    if nodes <= 1:
        return 0, 0.0, 0.0
    per_publish_nodes = sum(r.share * nodes_reached(r.subscribers, nodes) for r in workload.rooms)
    busy_us = workload.publish_rate * (profile.redis_us_per_publish
                                       + per_publish_nodes * profile.redis_us_per_node_message)
    shards = max(1, math.ceil(busy_us / 1e6 / profile.redis_usable_share - 1e-9))
    message = workload.payload_bytes + profile.frame_overhead_bytes
    return (shards, busy_us / 1e6 / shards,
            workload.publish_rate * message * (1 + per_publish_nodes) / shards)


def _absorbs_loss(workload: Workload, profile: Profile, node: NodeSpec, nodes: int) -> bool:
    if nodes <= 1:
        return False  # a lone node's loss is an outage whatever its size
    survivors = nodes - 1
    cap = connections_per_worker_cap(node, profile)
    if workload.connections > cap * node.cores * survivors:
        return False
    return worker_cpu_us(workload, profile, survivors) / 1e6 <= survivors * node.cores


def _loss(workload: Workload, profile: Profile, node: NodeSpec, nodes: int) -> dict[str, Any]:
    """Losing the largest node: its connections reconnect on the others."""
    moved = workload.connections / nodes
    if nodes <= 1:
        return {"absorbed": False, "connections_moved": moved, "reason": "a single node"}
    survivors = nodes - 1
    cpu_after = worker_cpu_us(workload, profile, survivors) / 1e6 / (survivors * node.cores)
    spare_cores = max(0.0, survivors * node.cores * (1 - cpu_after))
    wave = moved * profile.cpu_us_per_accept / 1e6 / spare_cores if spare_cores else math.inf
    return {"absorbed": _absorbs_loss(workload, profile, node, nodes),
            "connections_moved": moved, "worker_utilization_after": cpu_after,
            "connections_per_worker_after": workload.connections / (survivors * node.cores),
            "reconnect_wave_seconds": wave}
