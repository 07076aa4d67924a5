"""The broker interface the hub talks to.

A broker owns everything that may span nodes: assigning offsets, history, presence, and
delivering published messages to every node that watches a room. The hub owns local
connections only. ``MemoryBroker`` is the embedded default; a Redis broker implements the same
interface for a fleet, so the hub never changes.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from wsops.server.core.protocol import Position


@dataclass(slots=True)
class Published:
    """A message as delivered: ``frame`` is the complete WebSocket frame, built once.

    Deliveries and replays only use ``frame``: no broker keeps a message's data decoded.
    Read-only by convention (not ``frozen``: made once per publish, see ``Request``).
    """

    room: str
    offset: int
    epoch: str
    frame: bytes
    traceparent: str | None = None
    accepted_at: float = 0.0  # time.time() when the broker accepted it (0 for replays)
    local: bool = False  # delivered on this node only so far (the Redis broker's island mode)
    tracestate: str | None = None  # W3C tracestate, carried with ``traceparent``


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Answer to ``history``: the room's position and the newest messages as reply items
    (``protocol.history_items``, oldest first); ``truncated`` when the byte budget left older
    ones of the requested count out."""

    position: Position
    items: list[bytes]
    truncated: bool


@dataclass(frozen=True, slots=True)
class Recovery:
    """Answer to a subscribe: the room's position and, with ``since``, what to replay.
    ``more``: the messages stop at the byte budget; ask again from the last of them."""

    position: Position
    messages: list[Published]
    recovered: bool | None
    more: bool = False


class BrokerListener(Protocol):
    """What a broker calls back on the node (the hub implements it)."""

    def on_message(self, msg: Published) -> None: ...

    def on_presence(self, room: str, kind: str, user: str) -> None: ...

    def on_resync(self, room: str) -> None:
        """The broker lost messages of ``room`` that it cannot deliver here: the room's local
        subscribers must resume by themselves (the hub closes them with 4001)."""


class BrokerUnavailable(Exception):
    """The broker cannot serve the operation now; the client gets ``unavailable``."""


class Broker(abc.ABC):
    """Rooms' shared state. Implementations must deliver each room's messages in offset order."""

    name: str = "broker"
    node_id: str | None = None
    """This node's id in a fleet registry (None: a single-node broker)."""
    inline: bool = False
    """Its operations never wait on I/O and never use ``asyncio.timeout`` or a ``TaskGroup``
    (an in-process broker): a connection's work on it may start outside a task
    (``wsops.server.eager``), where the current task is None or aiohttp's handler."""

    def __init__(self) -> None:
        self.listener: BrokerListener | None = None
        self.node_info: Callable[[], Mapping[str, object]] | None = None
        self._revoked: dict[tuple[str, str], float] = {}  # revoke()'s default: this node's

    def set_node_info(self, info: Callable[[], Mapping[str, object]]) -> None:
        """How to describe this node to the fleet (admin URL, version, draining, ...); a fleet
        broker publishes it with its heartbeat."""
        self.node_info = info

    @property
    def healthy(self) -> bool:
        return True

    @property
    def problem(self) -> str | None:
        """Why the broker is not healthy, when it knows more than "down" (readiness shows it)."""
        return None

    async def start(self) -> None:  # noqa: B027 (optional hook)
        """Connect; called once when the node starts."""

    async def close(self) -> None:  # noqa: B027 (optional hook)
        """Release resources; called once when the node stops."""

    @abc.abstractmethod
    async def publish(
        self, room: str, data: bytes, traceparent: str | None = None, sender: str | None = None,
        tracestate: str | None = None,
    ) -> Published:
        """Append to history (assigning the offset) and deliver to every watching node.
        ``data`` is the message's data as compact JSON (``Request.data``); ``sender`` is the
        publishing connection's user, sent as the message's ``from``; ``traceparent`` and
        ``tracestate`` (W3C trace context, the latter only with the former) go in its
        envelope."""

    @abc.abstractmethod
    async def watch(self, room: str) -> None:
        """This node has local subscribers of ``room``: deliver its messages here."""

    @abc.abstractmethod
    async def unwatch(self, room: str) -> None:
        """This node has no more local subscribers of ``room``."""

    @abc.abstractmethod
    async def recover(
        self, room: str, since: Position | None, budget: int = 0
    ) -> Recovery:
        """The room's position, plus the messages after ``since`` when they are all retained:
        with a ``budget`` (bytes; 0: none), those that fit it (at least one) and ``more``."""

    @abc.abstractmethod
    async def history(self, room: str, limit: int, budget: int) -> HistoryPage:
        """Up to ``limit`` newest retained messages whose reply items fit ``budget`` bytes,
        oldest first. Reads and decodes nothing it does not return."""

    @abc.abstractmethod
    async def join(self, room: str, user: str) -> None:
        """One more connection of ``user`` is in ``room``; emits ``join`` on the first."""

    @abc.abstractmethod
    async def leave(self, room: str, user: str) -> None:
        """One connection of ``user`` left ``room``; emits ``leave`` after the last."""

    @abc.abstractmethod
    async def presence(self, room: str) -> list[str]:
        """Users present in ``room``, sorted."""

    async def revoke(self, kind: str, value: str, until: float) -> None:
        """Keep a revocation (``user`` or ``jti``) until ``until`` where every node of the
        fleet (and a node started later) reads it; this node only, by default."""
        store = self._revoked
        now = time.time()
        for key in [k for k, at in store.items() if at <= now]:
            del store[key]  # the node's own list bounds how many are in force
        store[(kind, value)] = max(until, store.get((kind, value), 0.0))

    async def revocations(self) -> list[tuple[str, str, float]]:
        """The revocations kept (some may have expired: the reader drops those)."""
        return [(kind, value, until) for (kind, value), until in self._revoked.items()]

    async def fleet_nodes(self) -> list[dict[str, Any]]:
        """The live nodes of the fleet, this one included (``id``, ``admin_url``, ...)."""
        return []

    def counters(self) -> dict[str, int]:
        """Cumulative event counts for metrics (``wsops_broker_events_total{event}``)."""
        return {}

    def leak_checks(self, local_rooms: Container[str]) -> dict[str, float]:
        """Per-room state this broker keeps for rooms not in ``local_rooms`` (the node's
        rooms with a local connection): 0 on a healthy node (``wsops leaks``)."""
        return {}

    def sweep(self) -> int:
        """Forget expired per-room state; returns how many rooms were dropped."""
        return 0

    def stats(self) -> dict[str, Any]:
        """Numbers for the admin API and metrics."""
        return {"name": self.name, "healthy": self.healthy}
