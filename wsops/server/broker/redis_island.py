"""Island mode: what a node does with publishes while Redis is unreachable.

Offsets come from Redis, so a node cut off from it cannot give a message its place in the
fleet's log. Rather than refuse every publish, the node becomes an island:

- a publish is delivered at once to the node's own subscribers of the room, under an *island
  epoch*: a fresh epoch whose offsets go on from the last one the node delivered, so a client
  sees an explicit ``Gap`` when its room switches to it (a new epoch not starting at 1). The
  publisher's ack says ``"local": true``;
- the message is kept, in order, encoded, in a buffer bounded in messages and bytes (a full
  buffer refuses with ``unavailable``: nothing is accepted that would be dropped);
- when Redis answers again, the buffered messages are stored in Redis in their order, as
  ordinary messages that every other node delivers. Meanwhile the node's feed holds the room's
  messages back from its local subscribers (they have the island's already) and a ``subscribe``
  of the room waits; then those subscribers are closed with 4001: they resume with ``since``
  and learn ``recovered: false`` (they missed what other nodes published during the outage),
  on any node, after the stored messages, so nobody sees one twice.

Island messages live in the node's memory until they are forwarded: a node that dies during an
outage loses them (its publishers were told ``local``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from wsops.server.core.broker import BrokerUnavailable, Published
from wsops.server.core.history import new_epoch
from wsops.server.core.protocol import message_payload, text_frame


@dataclass(frozen=True, slots=True)
class Pending:
    data: bytes  # JSON
    ts: int
    accepted_at: float
    traceparent: str | None
    sender: str | None = None
    tracestate: str | None = None


@dataclass(eq=False, slots=True)
class Island:
    """One room's messages published during the outage, not yet in Redis."""

    epoch: str
    offset: int = 0
    pending: deque[Pending] = field(default_factory=deque)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Islands:
    """The node's islands, bounded by ``max_pending`` messages and ``max_bytes`` of their data
    in all."""

    def __init__(self, max_pending: int, max_bytes: int = 64 << 20) -> None:
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.rooms: dict[str, Island] = {}
        self.pending = 0
        self.pending_bytes = 0
        self.published = 0
        self.forwarded = 0

    def has(self, room: str) -> bool:
        return room in self.rooms

    def publish(self, room: str, data: bytes, ts: int, accepted_at: float,
                traceparent: str | None, after: int = 0, sender: str | None = None,
                tracestate: str | None = None) -> Published:
        """Keep the message for Redis and return it as delivered locally (``local=True``);
        a new island's offsets start after ``after`` (the room's last offset seen here)."""
        if self.pending >= self.max_pending or self.pending_bytes + len(data) > self.max_bytes:
            raise BrokerUnavailable(
                f"broker down and {self.pending} messages ({self.pending_bytes} bytes) wait "
                "for it on this node")
        island = self.rooms.get(room)
        if island is None:
            island = self.rooms[room] = Island(new_epoch(), after)
        island.offset += 1
        island.pending.append(Pending(data, ts, accepted_at, traceparent, sender, tracestate))
        self.pending += 1
        self.pending_bytes += len(data)
        self.published += 1
        frame = text_frame(message_payload(room, island.offset, island.epoch, data, ts,
                                           traceparent, sender, tracestate))
        return Published(room, island.offset, island.epoch, frame, traceparent, accepted_at,
                         local=True, tracestate=tracestate)

    def forwarded_one(self, island: Island) -> None:
        done = island.pending.popleft()
        self.pending -= 1
        self.pending_bytes -= len(done.data)
        self.forwarded += 1

    def finish(self, room: str) -> None:
        island = self.rooms.pop(room, None)
        if island is not None:
            island.done.set()

    async def settled(self, room: str, within: float) -> None:
        """Until ``room`` has no message waiting for Redis (BrokerUnavailable after
        ``within`` seconds)."""
        island = self.rooms.get(room)
        if island is None:
            return
        try:
            await asyncio.wait_for(island.done.wait(), within)
        except TimeoutError:
            raise BrokerUnavailable(
                f"{len(island.pending)} messages of this room still wait for the broker"
            ) from None
