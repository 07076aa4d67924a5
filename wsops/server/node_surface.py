"""The bundled node's surface for the admin listener (``wsops.admin.surface.NodeSurface``).

Its connections are the hub's, its drain is the node's own (batched 1012 closes of hub
connections, upgrades refused at admission), its readiness is "started" (the broker and, when
the node runs its own listener, the WebSocket port), "not draining" and "broker up",
its rooms are the hub's, and in a fleet its peers are the broker registry's nodes. The
instrumentation's figures (rates, quantiles, runtime health) are included when the app is
instrumented.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import Any, cast

from wsops.admin.contract import (
    BatchCloses,
    Connections,
    DrainOptions,
    DrainStatus,
    FlowSnapshot,
    RoomCount,
    RoomTraffic,
    Stats,
)
from wsops.admin.fleetpage import default_node_id
from wsops.admin.surface import DebugControl, PeerLister, ReadinessCheck
from wsops.config import Settings
from wsops.instrumentation.app_surface import (
    drain_status,
    run_leak_checks,
    start_drain,
)
from wsops.instrumentation.drainer import Drainer
from wsops.instrumentation.middleware import Instrumentation
from wsops.server.core.broker import Broker
from wsops.server.core.control import CONTROL_ROOM
from wsops.server.core.flow import MAX_PUBLISHERS
from wsops.server.core.hub import Hub
from wsops.server.core.protocol import Close
from wsops.server.observe import NodeObserver
from wsops.version import __version__


@dataclass(frozen=True, slots=True)
class NodeParts:
    """What a node is made of, as its surface reads it."""

    settings: Settings
    hub: Hub
    broker: Broker
    drainer: Drainer
    instrumentation: Instrumentation | None
    started_at: float
    debug: DebugControl | None = None
    observer: NodeObserver | None = None
    starting: Callable[[], str | None] = lambda: None  # why it is not serving yet, if so


class BundledSurface:
    """``NodeSurface`` of one bundled server node."""

    def __init__(self, node: NodeParts) -> None:
        self.node = node

    @property
    def node_id(self) -> str:
        return self.node.broker.node_id or default_node_id()

    @property
    def drain_defaults(self) -> DrainOptions:
        s = self.node.settings
        return DrainOptions(batch=s.drain_batch, interval=s.drain_interval,
                            deadline=s.drain_deadline, code=Close.SERVICE_RESTART,
                            spread=s.drain_spread)

    @property
    def readiness_checks(self) -> Sequence[ReadinessCheck]:
        return (self.node.starting, self.draining_reason, self.broker_reason)

    def draining_reason(self) -> str | None:
        return "draining" if self.node.drainer.draining else None

    def broker_reason(self) -> str | None:
        broker = self.node.broker
        return None if broker.healthy else (broker.problem or "broker down")

    @property
    def debug_switch(self) -> DebugControl | None:
        return self.node.debug

    @property
    def peers(self) -> PeerLister | None:
        broker = self.node.broker
        return broker.fleet_nodes if broker.node_id is not None else None

    def stats(self) -> Stats:
        node = self.node
        inst = node.instrumentation
        out: dict[str, Any] = inst.figures() if inst is not None else {
            "version": __version__, "started_at": node.started_at,
            "connections": len(node.hub.conns)}
        out.update({  # ready / not_ready_reasons: the listener's (admin.api.node_stats)
            "node_id": self.node_id, "draining": node.drainer.draining,
            "drain": self.drain_status(),
            "rooms": len(node.hub.rooms), "connections_max": node.settings.max_connections,
            "broker": node.broker.stats(), "hub": dict(node.hub.stats.__dict__),
        })
        if node.observer is not None:  # what wsops rollout's gates read
            obs = node.observer
            limited = obs.stats.rate_limited  # refused frames are answered with an error too
            out["operations"] = {"served": sum(h.count for h in obs.ops.values()) + limited,
                                 "errors": sum(obs.op_errors.values()) + limited,
                                 "published": sum(obs.published.values())}
            out["resumes"] = {"recovered": obs.resumes[True], "failed": obs.resumes[False]}
        return cast(Stats, out)

    def drain_status(self) -> DrainStatus:
        return drain_status(self.node.drainer, len(self.node.hub.conns))

    def drain_closes(self) -> list[BatchCloses]:
        return self.node.drainer.status.closes.as_list()

    def start_drain(self, options: DrainOptions) -> bool:
        return start_drain(self.node.drainer, options)

    def cancel_drain(self) -> bool:
        return self.node.drainer.cancel()

    def connections(self, top: int) -> Connections:
        inst = self.node.instrumentation
        total = len(self.node.hub.conns)
        return Connections(
            total=inst.live.total() if inst is not None else total,
            by_route=inst.live.counts() if inst is not None else {"/ws": total},
            top_rooms=[RoomCount(room=r, connections=n)
                       for r, n in self.node.hub.room_sizes(top)])

    def flow(self, top: int) -> FlowSnapshot | None:
        hub = self.node.hub
        rooms = []
        for name, f in hub.flow.top(top):
            r = hub.rooms.get(name)
            rooms.append(RoomTraffic(
                room=name, since=f.since, msgs_in=f.msgs_in, bytes_in=f.bytes_in,
                msgs_out=f.msgs_out, bytes_out=f.bytes_out, publishers=len(f.publishers),
                publishers_capped=len(f.publishers) >= MAX_PUBLISHERS,
                subscribers=len(r.conns) + len(r.syncing) if r is not None else 0))
        return FlowSnapshot(generated_at=time.time(), tracked=len(hub.flow.rooms),
                            forgotten=hub.flow.forgotten, rooms=rooms)

    def open_connections(self) -> int:
        inst = self.node.instrumentation
        return inst.live.total() if inst is not None else len(self.node.hub.conns)

    def leak_checks(self) -> dict[str, float]:
        inst = self.node.instrumentation
        checks = [*(inst.leak_checks if inst is not None else ()), self.room_leaks]
        return run_leak_checks(checks)

    def room_leaks(self) -> dict[str, float]:
        """Per-room state kept for rooms no local connection is in: 0 on a healthy node.

        History is left out on purpose: it outlives subscribers by design (resume, TTL).
        """
        rooms = self.node.hub.rooms
        return {"hub_rooms_without_subscribers":
                float(sum(1 for r in rooms.values() if not r.conns and not r.syncing)),
                **self.node.broker.leak_checks(_WatchedByTheNode(rooms))}


class _WatchedByTheNode:
    """The rooms this node has a reason to watch: its connections' and the fleet's orders."""

    def __init__(self, rooms: Container[str]) -> None:
        self.rooms = rooms

    def __contains__(self, room: object) -> bool:
        return room == CONTROL_ROOM or room in self.rooms
