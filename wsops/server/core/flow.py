"""Where a node's messages go: per-room traffic of its busiest rooms, in bounded memory.

Rooms are never metric labels (a label per room is a time series per room); the flow view
(``/admin/flow``, the fleet page) reads this sketch instead. It keeps at most ``2 * capacity``
rooms: when that many are tracked, the ``capacity`` busiest stay and the rest are forgotten
(an amortised sort every ``capacity`` new rooms, never a scan per message). A room seen again
after it was forgotten starts from zero, with ``since`` saying so; a busy room is never
forgotten while ``capacity`` rooms are busier. Counters are cumulative: readers compute rates
from two readings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

DEFAULT_CAPACITY: Final = 64
MAX_PUBLISHERS: Final = 100
"""Distinct publishers counted per room; past it the room says ``publishers_capped``."""


class RoomFlow:
    """One tracked room's counters since ``since``."""

    __slots__ = ("bytes_in", "bytes_out", "msgs_in", "msgs_out", "publishers", "since")

    def __init__(self, since: float) -> None:
        self.since = since
        self.msgs_in = 0  # publishes by this node's clients
        self.bytes_in = 0
        self.msgs_out = 0  # frames written to this node's subscribers
        self.bytes_out = 0
        self.publishers: set[str] = set()

    @property
    def weight(self) -> int:
        return self.msgs_in + self.msgs_out


class FlowSketch:
    """The busiest rooms' traffic on one node."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY,
                 clock: Callable[[], float] = time.time) -> None:
        """``clock``: read when a room starts being tracked (never per message)."""
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.clock = clock
        self.rooms: dict[str, RoomFlow] = {}
        self.forgotten = 0  # rooms dropped to stay bounded, since the start

    def _entry(self, room: str) -> RoomFlow:
        entry = self.rooms.get(room)
        if entry is None:
            if len(self.rooms) >= 2 * self.capacity:
                self._shrink()
            entry = self.rooms[room] = RoomFlow(self.clock())
        return entry

    def _shrink(self) -> None:
        keep = sorted(self.rooms.items(), key=lambda kv: kv[1].weight, reverse=True)
        self.forgotten += len(keep) - self.capacity
        self.rooms = dict(keep[:self.capacity])

    def published(self, room: str, nbytes: int, user: str) -> None:
        """A client of this node published ``nbytes`` to ``room``."""
        entry = self.rooms.get(room) or self._entry(room)  # per publish: no call when tracked
        entry.msgs_in += 1
        entry.bytes_in += nbytes
        if len(entry.publishers) < MAX_PUBLISHERS:
            entry.publishers.add(user)

    def fanned_out(self, room: str, subscribers: int, frame_bytes: int) -> None:
        """A message of ``room`` was queued for ``subscribers`` connections of this node."""
        entry = self.rooms.get(room) or self._entry(room)
        entry.msgs_out += subscribers
        entry.bytes_out += subscribers * frame_bytes

    def top(self, n: int) -> list[tuple[str, RoomFlow]]:
        """The ``n`` busiest tracked rooms (messages in plus out), busiest first."""
        return sorted(self.rooms.items(), key=lambda kv: kv[1].weight, reverse=True)[:n]
