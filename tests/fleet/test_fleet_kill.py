"""kill -9 of a node behind HAProxy: its clients resume elsewhere from history, presence clears."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.fleet.conftest import (
    Watched,
    close_all,
    connect_all,
    connections,
    percentile,
    wait_open,
)
from tests.support.artifacts import record
from tests.support.waits import until
from wsops.client import Client

SUBSCRIBERS = 150
ROOM = "orders"


@pytest.mark.slow
async def test_a_killed_node_loses_no_message_and_its_users_leave_presence(fleet: Any) -> None:
    watched = Watched(fleet.url, SUBSCRIBERS)
    subs, got, gaps = watched.clients, watched.got, watched.gaps
    closed_at = watched.closed_at
    # The publisher talks to a node that survives: publishes are at-least-once across a crash.
    publisher = Client(fleet.nodes[2].url, request_timeout=10.0)
    acked: list[int] = []
    stop = asyncio.Event()

    async def publish() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            await publisher.publish(ROOM, n)
            acked.append(n)
            await asyncio.sleep(0.02)

    try:
        await connect_all([*subs, publisher])
        before = await connections(fleet)
        assert min(before) >= 20, before
        await asyncio.gather(*(c.subscribe(ROOM) for c in subs))
        # A subscriber joins presence just after its subscribe reply (PROTOCOL.md): the last
        # joins may land a few ms after the last reply.
        present: set[str] = set()

        async def everyone() -> bool:
            present.clear()
            present.update(await publisher.presence(ROOM))
            return len(present) == SUBSCRIBERS

        await until(everyone, 5.0)
        publishing = asyncio.create_task(publish())
        await asyncio.sleep(0.5)  # traffic flows a while before the kill

        fleet.kill_node(0)
        killed = time.monotonic()
        await until(lambda: len(closed_at) >= before[0], 10.0)
        await wait_open(subs, 30)
        all_open = time.monotonic() - killed
        assert len(closed_at) == before[0]  # exactly the dead node's clients moved
        after = await connections(fleet)
        assert after[0] == 0 and sum(after) == SUBSCRIBERS + 1, after

        # The dead node's users leave presence (3 broker heartbeats of 0.5 s); the moved
        # clients are back under new anonymous ids, everyone else is unchanged.
        async def presence_settled() -> bool:
            now = set(await publisher.presence(ROOM))
            return len(now) == SUBSCRIBERS and len(now & present) == SUBSCRIBERS - before[0]

        await until(presence_settled, 15.0)
        presence_clear = time.monotonic() - killed
        await asyncio.sleep(0.5)  # traffic goes on a while after the move
        stop.set()
        await publishing

        expected = [(n, n) for n in acked]
        history = await publisher.history(ROOM, 1000)
        assert [(m.offset, m.data) for m in history] == expected
        # A marker behind the stream: whatever came before it (a repeat too) is all that came.
        end = await publisher.publish(ROOM, "end")
        await until(lambda: all(g and g[-1].data == "end" for g in got), 20.0,
                    what="the marker on every subscriber")
        for i, mine in enumerate(got):
            assert [(m.offset, m.data) for m in mine] == [*expected, (end.offset, "end")], i
        assert gaps == []
        await until(lambda: fleet.up() == {1, 2}, 5.0)

        reconnect = watched.reconnect_seconds()
        record("fleet-kill.json", {
            "clients": SUBSCRIBERS, "moved": len(closed_at), "per_node_before": before,
            "per_node_after": after, "messages": len(acked),
            "all_open_after_kill_seconds": round(all_open, 3),
            "presence_clear_after_kill_seconds": round(presence_clear, 3),
            "reconnect_p50_seconds": round(percentile(reconnect, 0.5), 3),
            "reconnect_max_seconds": round(max(reconnect), 3),
        })
    finally:
        stop.set()
        await close_all([*subs, publisher])
