"""Rooms' message history in process memory, bounded in bytes per room and node-wide.

Pure: the caller passes the clock. Each entry keeps the complete WebSocket frame of its message
(what replays send, and what history replies are cut from), never the decoded data: JSON such as
``[{},{},...]`` decodes to ~25x its size. Bounds, all enforced on append:

- per room: ``max_entries`` messages and ``room_bytes`` bytes (oldest dropped first);
- node-wide: ``max_bytes`` for every retained entry plus every idle room (a room nobody watches
  and that holds nothing, kept only so a client at its last offset resumes without a false gap);
  past it, idle rooms go first, then the oldest entries of the node, whichever room holds them;
- ``ttl``: an entry older than it is dropped whether or not its room has subscribers, and an
  idle room is forgotten ``ttl`` after it became idle.

A forgotten room starts a new epoch on its next publish, so a client resuming from the old one
learns ``recovered: false`` instead of a silent gap. Costs are counted as ``len(frame)`` plus a
fixed overhead per entry and per room (measured, see RELIABILITY.md).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from collections.abc import Callable

from wsops.server.core.protocol import Position

ENTRY_OVERHEAD = 200
"""Bytes an entry costs beyond its frame (measured with tracemalloc: 203): the entry object,
its time, the bytes header, two deque slots."""
ROOM_OVERHEAD = 1100
"""Bytes a room costs with nothing retained (measured: 1,100): its object, name, epoch, empty
deque (one 64-slot block) and dict slots."""
COMPACT_AFTER = 1024
"""Entries dropped by their room's bounds stay in the node-wide order, frame released, until
they are more than this many and more than the retained ones: then the order is compacted."""


class Entry:
    """One stored message: its offset, complete frame and room. ``size`` 0 marks an entry its
    room dropped (frame released) still in the node-wide order until compaction."""

    __slots__ = ("frame", "offset", "room", "size", "stored_at")

    def __init__(self, offset: int, frame: bytes, stored_at: float, room: RoomHistory) -> None:
        self.offset = offset
        self.frame = frame
        self.stored_at = stored_at
        self.room = room
        self.size = len(frame) + ENTRY_OVERHEAD


def new_epoch() -> str:
    return secrets.token_hex(4)


class RoomHistory:
    """The retained tail of one room's messages (entries in offset order)."""

    __slots__ = ("bytes", "entries", "epoch", "idle_since", "name", "top", "watched")

    def __init__(self, name: str, epoch: str | None = None) -> None:
        self.name = name
        self.epoch = epoch or new_epoch()
        self.top = 0
        self.entries: deque[Entry] = deque()
        self.bytes = 0
        self.watched = False
        self.idle_since: float  # set when the room becomes idle
    @property
    def position(self) -> Position:
        return Position(self.top, self.epoch)

    def since(self, pos: Position) -> list[Entry] | None:
        """Entries after ``pos``, or None when the gap cannot be filled (other epoch, dropped)."""
        if pos.epoch != self.epoch or pos.offset > self.top:
            return None
        if pos.offset == self.top:
            return []
        entries = self.entries
        if not entries or entries[0].offset > pos.offset + 1:
            return None
        start = pos.offset + 1 - entries[0].offset
        return [entries[i] for i in range(start, len(entries))]

    def latest(self, limit: int, budget: int, cost: Callable[[Entry], int]) -> tuple[
            list[Entry], bool]:
        """Up to ``limit`` newest entries, oldest first, whose ``cost`` sums to at most
        ``budget``; True as second item when the budget left some of them out."""
        out: list[Entry] = []
        used = 0
        truncated = False
        for entry in reversed(self.entries):
            if len(out) == limit:
                break
            used += cost(entry)
            if used > budget:
                truncated = True
                break
            out.append(entry)
        out.reverse()
        return out, truncated


class HistoryStore:
    """Every room's history on this node, under one byte budget (see the module doc)."""

    def __init__(
        self, max_entries: int = 1000, ttl: float = 300.0, room_bytes: int = 8 << 20,
        max_bytes: int = 256 << 20,
    ) -> None:
        if max_entries < 0 or ttl <= 0 or room_bytes < 0 or max_bytes < 0:
            raise ValueError("history bounds must be >= 0 and the ttl > 0")
        self.max_entries = max_entries
        self.ttl = ttl
        self.room_bytes = room_bytes
        self.max_bytes = max_bytes
        self.rooms: dict[str, RoomHistory] = {}
        self.bytes = 0  # retained entries' and idle rooms' cost
        self.evicted = 0  # entries dropped by the node-wide budget (not by TTL or room bounds)
        self._order: deque[Entry] = deque()  # every entry, node-wide, in the order stored
        self._dead = 0  # entries in _order that their room dropped
        self._idle: OrderedDict[str, RoomHistory] = OrderedDict()

    # -- rooms -------------------------------------------------------------------------------

    def room(self, name: str, now: float) -> RoomHistory:
        """The room's history, created (new epoch) if this node has none."""
        hist = self.rooms.get(name)
        if hist is None:
            hist = self.rooms[name] = RoomHistory(name)
            self._became_idle(hist, now)
        return hist

    def get(self, name: str) -> RoomHistory | None:
        return self.rooms.get(name)

    def watch(self, name: str, now: float) -> RoomHistory:
        hist = self.room(name, now)
        hist.watched = True
        self._not_idle(hist)
        return hist

    def unwatch(self, name: str, now: float) -> None:
        hist = self.rooms.get(name)
        if hist is not None:
            hist.watched = False
            if not hist.entries:
                self._became_idle(hist, now)
                self._enforce()

    def _became_idle(self, hist: RoomHistory, now: float) -> None:
        if hist.watched or hist.name in self._idle:
            return
        hist.idle_since = now
        self._idle[hist.name] = hist
        self.bytes += ROOM_OVERHEAD

    def _not_idle(self, hist: RoomHistory) -> None:
        if self._idle.pop(hist.name, None) is not None:
            self.bytes -= ROOM_OVERHEAD

    def _forget_idle(self) -> None:
        _, hist = self._idle.popitem(last=False)
        self.bytes -= ROOM_OVERHEAD
        del self.rooms[hist.name]

    # -- messages ----------------------------------------------------------------------------

    def append(self, name: str, now: float, build: Callable[[int, str], bytes]) -> tuple[
            RoomHistory, int, bytes]:
        """Give the room's next offset to a message; ``build(offset, epoch)`` makes its frame
        once. Returns the room, the offset and the frame. The frame is retained if it fits the
        room's bounds; the node-wide budget is enforced before returning."""
        hist = self.room(name, now)
        # Build first: a message that cannot be encoded must not leave a gap.
        frame = build(hist.top + 1, hist.epoch)
        hist.top += 1
        self._not_idle(hist)
        entry = Entry(hist.top, frame, now, hist)
        if self.max_entries and entry.size <= self.room_bytes:
            entries = hist.entries
            entries.append(entry)
            hist.bytes += entry.size
            self.bytes += entry.size
            self._order.append(entry)
            while len(entries) > self.max_entries or hist.bytes > self.room_bytes:
                self._drop_head(hist)
        if not hist.entries:
            self._became_idle(hist, now)
        self.prune(now)
        self._enforce()
        return hist, hist.top, frame

    def _drop_head(self, hist: RoomHistory) -> None:
        """Drop the room's oldest entry (it stays in ``_order``, dead, until compacted)."""
        entry = hist.entries.popleft()
        hist.bytes -= entry.size
        self.bytes -= entry.size
        entry.size = 0
        entry.frame = b""
        self._dead += 1

    def _pop_order(self) -> bool:
        """Retire the node's oldest entry: True if it was still retained (then it is its
        room's head: a room's retained entries are its newest, in the order they came)."""
        entry = self._order.popleft()
        if entry.size == 0:
            self._dead -= 1
            return False
        hist = entry.room
        self._drop_head(hist)
        self._dead -= 1  # _drop_head counted it dead, but it has left the order
        if not hist.entries:
            self._became_idle(hist, entry.stored_at)
        return True

    def _enforce(self) -> None:
        """Keep the node-wide budget: idle rooms go first, then the node's oldest entries."""
        while self.bytes > self.max_bytes:
            if self._idle:
                self._forget_idle()
            elif self._order:
                self.evicted += self._pop_order()
            else:
                break
        # Dead entries cost a slot each: compact when they outnumber the live ones.
        if self._dead > max(COMPACT_AFTER, len(self._order) - self._dead):
            self._order = deque(e for e in self._order if e.size)
            self._dead = 0

    def prune(self, now: float) -> None:
        """Drop entries older than the TTL, and idle rooms idle for longer than it."""
        limit = now - self.ttl
        order = self._order
        while order:
            head = order[0]
            if head.size and head.stored_at >= limit:
                break
            self._pop_order()
        idle = self._idle
        while idle:
            hist = next(iter(idle.values()))
            if hist.idle_since >= limit:
                break
            self._forget_idle()

    @property
    def entries(self) -> int:
        return len(self._order) - self._dead
