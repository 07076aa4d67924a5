"""The embedded single-node broker: history and presence in process memory."""

from __future__ import annotations

import time
from typing import Any

from wsops.server.broker.base import Broker, Published, Recovery
from wsops.server.history import Entry, RoomHistory
from wsops.server.presence import PresenceCounts
from wsops.server.protocol import Position, message_payload, text_frame


class MemoryBroker(Broker):
    """Keeps each room's history and presence here. Rooms idle past the TTL are forgotten."""

    name = "memory"

    def __init__(self, history_size: int = 1000, history_ttl: float = 300.0) -> None:
        super().__init__()
        self.history_size = history_size
        self.history_ttl = history_ttl
        self._rooms: dict[str, RoomHistory] = {}
        self._watched: set[str] = set()
        self._presence = PresenceCounts()
        self._published = 0

    def _room(self, room: str) -> RoomHistory:
        hist = self._rooms.get(room)
        if hist is None:
            hist = self._rooms[room] = RoomHistory(self.history_size, self.history_ttl)
        return hist

    @staticmethod
    def _published_of(room: str, entry: Entry) -> Published:
        return Published(
            room, entry.offset, entry.epoch, entry.data, entry.ts, text_frame(entry.payload)
        )

    async def publish(self, room: str, data: Any, traceparent: str | None = None) -> Published:
        now = time.monotonic()
        ts = int(time.time() * 1000)
        hist = self._room(room)
        entry = hist.append(
            data, ts, now, lambda off, ep: message_payload(room, off, ep, data, ts, traceparent)
        )
        msg = Published(room, entry.offset, entry.epoch, data, ts, text_frame(entry.payload),
                        traceparent, time.time())
        self._published += 1
        if room in self._watched and self.listener is not None:
            self.listener.on_message(msg)
        return msg

    async def watch(self, room: str) -> None:
        self._watched.add(room)

    async def unwatch(self, room: str) -> None:
        self._watched.discard(room)

    async def recover(self, room: str, since: Position | None) -> Recovery:
        now = time.monotonic()
        hist = self._room(room)
        if since is None:
            return Recovery(hist.position, [], None)
        entries = hist.since(since, now)
        if entries is None:
            return Recovery(hist.position, [], False)
        return Recovery(hist.position, [self._published_of(room, e) for e in entries], True)

    async def history(self, room: str, limit: int) -> tuple[Position, list[Published]]:
        now = time.monotonic()
        hist = self._room(room)
        return hist.position, [self._published_of(room, e) for e in hist.latest(limit, now)]

    async def join(self, room: str, user: str) -> None:
        if self._presence.join(room, user) and self.listener is not None:
            self.listener.on_presence(room, "join", user)

    async def leave(self, room: str, user: str) -> None:
        if self._presence.leave(room, user) and self.listener is not None:
            self.listener.on_presence(room, "leave", user)

    async def presence(self, room: str) -> list[str]:
        return sorted(self._presence.get(room, ()))

    def sweep(self) -> int:
        """Forget unwatched rooms whose history expired; returns how many were dropped."""
        now = time.monotonic()
        dead = [r for r, h in self._rooms.items() if r not in self._watched and h.expired(now)]
        for room in dead:
            del self._rooms[room]
        return len(dead)

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "rooms": len(self._rooms),
            "published": self._published,
        }
