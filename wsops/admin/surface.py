"""The one node surface the admin listener serves, whatever runs the node.

``wsops.server`` implements it for the bundled node (rooms, broker, its own drainer);
``wsops.instrumentation`` implements it for any aiohttp app wrapped with ``instrument(app)``
(its live connections); the ``--workers N`` supervisor serves its workers through the same
endpoints. The admin layer reads a node only through this interface: nothing sets attributes
on anything else. May import: ``wsops.admin.contract`` only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from wsops.admin.contract import (
    BatchCloses,
    Connections,
    DebugTarget,
    DrainOptions,
    DrainStatus,
    FlowSnapshot,
    Stats,
)

ReadinessCheck = Callable[[], str | None]
"""Returns a reason when the node must not receive traffic, else None."""

PeerLister = Callable[[], Awaitable[list[dict[str, Any]]]]
"""The fleet registry: every live node (this one too) as ``{"id", "admin_url", ...}``."""


class TapStream(Protocol):
    """One open tap: its events wait in ``queue`` (a ``{"event": "end"}`` one ends it)."""

    queue: asyncio.Queue[dict[str, Any]]
    sent: int
    dropped: int

    @property
    def id(self) -> str: ...


class DebugControl(Protocol):
    """A node's debug switch (``/admin/debug``): watched users, rooms or connections."""

    @property
    def traced(self) -> bool:
        """Watched publishes get spans (the node exports traces)."""

    def start(self, kind: str, value: str, seconds: float) -> DebugTarget:
        """Watch ``kind`` ``value`` for ``seconds``; ``ValueError`` says why not (with
        ``full`` true when the node keeps as many targets as it may)."""

    def stop(self, target_id: str | None) -> list[str]:
        """Turn one target off (None: every one); the ids turned off."""

    def listing(self) -> list[DebugTarget]: ...

    def open_tap(self, kind: str, value: str, *, payloads: bool, rate: float) -> TapStream:
        """Stream ``kind`` ``value``'s events; ``ValueError`` says why not (``full``: too many
        taps open)."""

    def close_tap(self, tap: TapStream) -> None: ...


class NodeSurface(Protocol):
    """One node as its admin API shows it."""

    @property
    def node_id(self) -> str:
        """This node's name in its fleet (a registry id, else ``host-pid``)."""

    @property
    def drain_defaults(self) -> DrainOptions:
        """The options of a drain started without any."""

    @property
    def readiness_checks(self) -> Sequence[ReadinessCheck]:
        """Why the node must not get traffic, one check per owner (draining, broker down)."""

    @property
    def peers(self) -> PeerLister | None:
        """The fleet's nodes (this one too) when the node is in a fleet registry, else None."""

    @property
    def debug_switch(self) -> DebugControl | None:
        """The node's debug switch, or None where there is none (a plain instrumented app has
        no users or rooms to watch)."""

    def stats(self) -> Stats:
        """The node's figures, without ``ready``/``not_ready_reasons``: those are the
        listener's (``api.node_stats``), from every readiness check, the surface's included."""

    def drain_status(self) -> DrainStatus: ...

    def drain_closes(self) -> list[BatchCloses]:
        """The closes the drain sent, batch by batch (``GET /admin/drain``; not in stats)."""

    def start_drain(self, options: DrainOptions) -> bool:
        """Begin a drain with ``options``; False if one was already under way (it keeps its
        own options)."""

    def cancel_drain(self) -> bool:
        """Stop a drain (the node takes connections again); False if none was running."""

    def flow(self, top: int) -> FlowSnapshot | None:
        """The ``top`` busiest rooms' traffic, or None where there are no rooms (a plain
        instrumented app)."""

    def connections(self, top: int) -> Connections:
        """Open connections, per route, and the ``top`` biggest rooms where there are rooms."""

    def open_connections(self) -> int:
        """Open WebSocket connections now (cheap: read per profiling sample)."""

    def leak_checks(self) -> dict[str, float]:
        """Figures that stay flat on a healthy node (``wsops leaks``): per-connection state
        left behind by closed connections, rooms nobody is in, ..."""
