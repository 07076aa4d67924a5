"""The embedded single-node broker: history and presence in process memory.

History lives in a ``HistoryStore``: encoded frames only, bounded per room and node-wide in
bytes, with a TTL that holds whether or not a room has subscribers (see
``wsops.server.core.history``).
"""

from __future__ import annotations

import time
from collections.abc import Container
from typing import Any

from wsops.server.core.broker import Broker, HistoryPage, Published, Recovery
from wsops.server.core.history import Entry, HistoryStore
from wsops.server.core.presence import PresenceCounts
from wsops.server.core.protocol import (
    Position,
    frame_payload,
    history_items,
    message_payload,
    text_frame,
)


class MemoryBroker(Broker):
    """Keeps each room's history and presence here."""

    name = "memory"
    inline = True

    def __init__(
        self, history_size: int = 1000, history_ttl: float = 300.0, *,
        room_bytes: int = 8 << 20, max_bytes: int = 256 << 20,
    ) -> None:
        super().__init__()
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.store = HistoryStore(history_size, history_ttl, room_bytes, max_bytes)
        self._presence = PresenceCounts()
        self._published = 0

    def leak_checks(self, local_rooms: Container[str]) -> dict[str, float]:
        """Rooms with presence, and rooms watched, that no local connection is in."""
        watched = (name for name, hist in self.store.rooms.items() if hist.watched)
        return {
            "broker_presence_rooms_without_subscribers":
                float(sum(1 for room in self._presence if room not in local_rooms)),
            "broker_watched_rooms_without_subscribers":
                float(sum(1 for room in watched if room not in local_rooms)),
        }

    async def publish(
        self, room: str, data: bytes, traceparent: str | None = None, sender: str | None = None,
        tracestate: str | None = None,
    ) -> Published:
        now = time.monotonic()
        accepted_at = time.time()
        ts = int(accepted_at * 1000)
        hist, offset, frame = self.store.append(
            room, now,
            lambda off, ep: text_frame(message_payload(room, off, ep, data, ts, traceparent,
                                                       sender, tracestate)))
        msg = Published(room, offset, hist.epoch, frame, traceparent, accepted_at, False,
                        tracestate)
        self._published += 1
        if hist.watched and self.listener is not None:
            self.listener.on_message(msg)
        return msg

    async def watch(self, room: str) -> None:
        self.store.watch(room, time.monotonic())

    async def unwatch(self, room: str) -> None:
        self.store.unwatch(room, time.monotonic())

    async def recover(
        self, room: str, since: Position | None, budget: int = 0
    ) -> Recovery:
        # The replay shares the stored frames (no copy): no need to page it.
        now = time.monotonic()
        self.store.prune(now)
        hist = self.store.room(room, now)
        if since is None:
            return Recovery(hist.position, [], None)
        entries = hist.since(since)
        if entries is None:
            return Recovery(hist.position, [], False)
        return Recovery(hist.position,
                        [Published(room, e.offset, hist.epoch, e.frame) for e in entries], True)

    async def history(self, room: str, limit: int, budget: int) -> HistoryPage:
        now = time.monotonic()
        self.store.prune(now)
        hist = self.store.room(room, now)
        entries, truncated = hist.latest(limit, budget, _frame_len)
        return HistoryPage(hist.position,
                           history_items([frame_payload(e.frame) for e in entries], room),
                           truncated)

    async def join(self, room: str, user: str) -> None:
        if self._presence.join(room, user) and self.listener is not None:
            self.listener.on_presence(room, "join", user)

    async def leave(self, room: str, user: str) -> None:
        if self._presence.leave(room, user) and self.listener is not None:
            self.listener.on_presence(room, "leave", user)

    async def presence(self, room: str) -> list[str]:
        return sorted(self._presence.get(room, ()))

    def sweep(self) -> int:
        """Drop expired entries and forget rooms idle past the TTL; returns rooms dropped."""
        before = len(self.store.rooms)
        self.store.prune(time.monotonic())
        return before - len(self.store.rooms)

    def stats(self) -> dict[str, Any]:
        store = self.store
        return {
            **super().stats(),
            "rooms": len(store.rooms),
            "published": self._published,
            "history_entries": store.entries,
            "history_bytes": store.bytes,
            "history_max_bytes": store.max_bytes,
            "history_evicted": store.evicted,
        }


def _frame_len(entry: Entry) -> int:
    return len(entry.frame)
