"""The embedded broker on its own (no node, no sweeper): history reads drop what expired."""

from __future__ import annotations

import asyncio
import time

from wsops.server.broker.memory import MemoryBroker
from wsops.server.core.protocol import Position


async def _expired(ttl: float) -> tuple[MemoryBroker, str]:
    """A broker (no node, so no sweeper) whose one message in room ``r`` has expired."""
    broker = MemoryBroker(history_size=10, history_ttl=ttl)
    await broker.watch("r")
    first = await broker.publish("r", b'"old"')
    expires = time.monotonic() + ttl
    while time.monotonic() <= expires:  # time must pass; nothing else is being waited for
        await asyncio.sleep(ttl / 5)
    return broker, first.epoch


async def test_history_drops_expired_entries_without_waiting_for_the_sweeper() -> None:
    broker, epoch = await _expired(0.05)
    page = await broker.history("r", 10, 1 << 20)
    assert page.items == [] and page.position == Position(1, epoch)


async def test_a_resume_past_expired_entries_is_not_recovered() -> None:
    broker, epoch = await _expired(0.05)
    rec = await broker.recover("r", Position(0, epoch))
    assert rec.recovered is False and rec.messages == [] and rec.position == Position(1, epoch)


async def test_history_items_are_cut_from_the_stored_frames() -> None:
    broker = MemoryBroker()
    for data in (b"1", b'{"a":[true,null]}'):
        msg = await broker.publish("room/x", data, "00-abc")
    page = await broker.history("room/x", 10, 1 << 20)
    assert page.items == [
        b'{"offset":1,"epoch":"%s","data":1,"ts":%d}' % (msg.epoch.encode(), _ts(page, 0)),
        b'{"offset":2,"epoch":"%s","data":{"a":[true,null]},"ts":%d}' % (
            msg.epoch.encode(), _ts(page, 1)),
    ]
    assert not page.truncated
    hist = broker.store.get("room/x")
    assert hist is not None
    last = len(hist.entries[-1].frame)  # the budget counts stored frames (a little longer)
    small = await broker.history("room/x", 10, last)
    assert small.truncated and small.items == page.items[1:]
    assert (await broker.history("room/x", 10, last - 1)).items == []


def _ts(page: object, i: int) -> int:
    import json

    return int(json.loads(page.items[i])["ts"])  # type: ignore[attr-defined]
