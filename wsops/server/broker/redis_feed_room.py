"""One watched room of the Redis broker's live feed: the position the node has delivered up to
and who waits for it (``Feed``), and reading rooms' positions and missed messages from Redis
(``positions``, ``fetch``), which the feed compares with its own (``redis_feed``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from wsops.server.broker import redis_scripts as lua
from wsops.server.broker.redis_link import Link
from wsops.server.core.broker import Published
from wsops.server.core.history import new_epoch
from wsops.server.core.protocol import Position, text_frame


def settled() -> asyncio.Future[bool]:
    """A future a feed's waiters wait on (True: done, False: the link broke)."""
    fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    return fut


def caught_up(last: Position | None, pos: Position) -> bool:
    return pos.offset == 0 or (
        last is not None and last.epoch == pos.epoch and last.offset >= pos.offset)


@dataclass(eq=False, slots=True)
class Feed:
    """One watched room: where its feed is and who waits for it."""

    ready: asyncio.Future[bool]  # True once subscribed and positioned; False if the link broke
    last: Position | None = None
    waiters: list[tuple[Position, asyncio.Future[bool]]] = field(default_factory=list)
    # Messages held while the room, moved here from another shard's feed, is levelled.
    held: list[tuple[bytes, bytes]] | None = None

    def release(self, ok: bool = False) -> None:
        """Answer everyone waiting (``ok``: the feed is there)."""
        if not self.ready.done():
            self.ready.set_result(ok)
        for _, fut in self.waiters:
            if not fut.done():
                fut.set_result(ok)
        self.waiters.clear()

    def wake(self) -> None:
        """Answer the waiters the feed has caught up with."""
        keep = []
        for pos, fut in self.waiters:
            if caught_up(self.last, pos):
                if not fut.done():
                    fut.set_result(True)
            else:
                keep.append((pos, fut))
        self.waiters = keep


def rows_to_messages(room: str, epoch: str, rows: list[Any]) -> list[Published]:
    """Stream entries (``[b"<offset>-0", [b"p", payload]]``) as replayable messages."""
    return [Published(room, int(entry_id.split(b"-", 1)[0]), epoch, text_frame(fields[1]))
            for entry_id, fields in rows]


async def positions(link: Link, keys: lua.Keys, ttl_ms: int, rooms: list[str]
                    ) -> list[Position]:
    """The rooms' positions in Redis (an epoch is made for a room that has none)."""
    rows = await link.run_many(
        "read", [((keys.meta(r), keys.log(r)), (new_epoch(), ttl_ms, "p", 0, "", 0,
                                                 link.lineage)) for r in rooms],
        probe=True)
    return [Position(int(row[1]), row[0].decode()) for row in rows]


async def fetch(link: Link, keys: lua.Keys, ttl_ms: int, room: str, since: Position
                ) -> tuple[Position, list[Published]] | None:
    """The room's position and every message after ``since``, or None if its log no longer
    has them all (or the epoch changed)."""
    res = await link.run("read", [keys.meta(room), keys.log(room)],
                         [new_epoch(), ttl_ms, "r", since.offset, since.epoch, 0, link.lineage],
                         probe=True)
    if not res[2]:
        return None
    pos = Position(int(res[1]), res[0].decode())
    return pos, rows_to_messages(room, pos.epoch, res[3])
