"""Per-room message history: growing offsets, epochs, a bounded ring buffer with a TTL.

Pure: the caller passes the clock. The in-memory broker keeps one ``RoomHistory`` per room; a
room whose history has expired entirely is forgotten, and the next publish starts a new epoch,
so a client resuming from the old epoch learns ``recovered: false`` instead of a silent gap.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wsops.server.protocol import Position


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored message. ``payload`` is the encoded ``message`` frame body, reused on replay."""

    offset: int
    epoch: str
    data: Any
    ts: int
    payload: bytes
    stored_at: float


def new_epoch() -> str:
    return secrets.token_hex(4)


class RoomHistory:
    """The retained tail of one room's messages."""

    __slots__ = ("_entries", "epoch", "max_size", "top", "ttl")

    def __init__(self, max_size: int, ttl: float, epoch: str | None = None) -> None:
        if max_size < 0 or ttl <= 0:
            raise ValueError("history size must be >= 0 and ttl > 0")
        self.epoch = epoch or new_epoch()
        self.top = 0
        self.max_size = max_size
        self.ttl = ttl
        self._entries: deque[Entry] = deque(maxlen=max_size or None)

    def append(
        self, data: Any, ts: int, now: float, encode: Callable[[int, str], bytes]
    ) -> Entry:
        """Store a new message; ``encode(offset, epoch)`` builds its payload once."""
        # Encode first: data that cannot be encoded (nested too deep) must not leave a gap.
        payload = encode(self.top + 1, self.epoch)
        self.top += 1
        entry = Entry(self.top, self.epoch, data, ts, payload, now)
        if self.max_size:
            self._entries.append(entry)
        self.prune(now)
        return entry

    def prune(self, now: float) -> None:
        """Drop entries older than the TTL."""
        entries = self._entries
        limit = now - self.ttl
        while entries and entries[0].stored_at < limit:
            entries.popleft()

    @property
    def position(self) -> Position:
        return Position(self.top, self.epoch)

    def since(self, pos: Position, now: float) -> list[Entry] | None:
        """Entries after ``pos``, or None when the gap cannot be filled (other epoch, pruned)."""
        self.prune(now)
        if pos.epoch != self.epoch or pos.offset > self.top:
            return None
        if pos.offset == self.top:
            return []
        entries = self._entries
        if not entries or entries[0].offset > pos.offset + 1:
            return None
        start = pos.offset + 1 - entries[0].offset
        return [entries[i] for i in range(start, len(entries))]

    def latest(self, limit: int, now: float) -> list[Entry]:
        """Up to ``limit`` newest entries, oldest first."""
        self.prune(now)
        entries = self._entries
        n = min(limit, len(entries))
        return [entries[i] for i in range(len(entries) - n, len(entries))]

    def expired(self, now: float) -> bool:
        """True when nothing is retained and the last publish is older than the TTL."""
        self.prune(now)
        return not self._entries
