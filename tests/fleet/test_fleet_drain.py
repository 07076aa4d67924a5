"""Zero-loss drain behind HAProxy: 500+ clients, one node drained with ``wsops drain``."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.fleet.conftest import (
    Watched,
    clients,
    close_all,
    connect_all,
    connections,
    percentile,
    wait_open,
)
from tests.support.artifacts import record
from tests.support.runcli import cli
from tests.support.waits import until

SUBSCRIBERS = 510
ROOM = "ticker"
BATCH, INTERVAL = 50, 0.2


@pytest.mark.slow
async def test_draining_a_node_moves_every_client_with_every_message_exactly_once(
    fleet: Any,
) -> None:
    watched = Watched(fleet.url, SUBSCRIBERS)
    subs, got, gaps = watched.clients, watched.got, watched.gaps
    closed_at, reopened_at = watched.closed_at, watched.reopened_at
    publisher = clients(fleet.url, 1)[0]  # through HAProxy too: it may be the one drained
    everyone = [*subs, publisher]
    acked: list[int] = []
    stop = asyncio.Event()

    async def publish() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            await publisher.publish(ROOM, n, timeout=30)  # waits out a reconnect in its queue
            acked.append(n)
            await asyncio.sleep(0.05)

    try:
        await connect_all(everyone)
        before = await connections(fleet)
        assert sum(before) == len(everyone) and min(before) > SUBSCRIBERS // 6, before
        await asyncio.gather(*(c.subscribe(ROOM) for c in subs))
        publishing = asyncio.create_task(publish())
        await asyncio.sleep(1.0)  # traffic flows a while before the drain

        drained = fleet.nodes[0]
        started = time.monotonic()
        result = await cli("drain", drained.admin_url, "--batch", str(BATCH), "--interval",
                           str(INTERVAL), "--deadline", "60", "--json")
        drain_wall = time.monotonic() - started
        assert result.exit_code == 0, result.output
        drain = json.loads(result.stdout)["drain"]
        assert (drain["state"], drain["total"], drain["forced"], drain["remaining"]) == (
            "drained", before[0], 0, 0)
        await wait_open(everyone, 30)
        settled = time.monotonic() - started
        # HAProxy sees /readyz 503 within two checks; until then the node's 503 answers to
        # handshakes are retried on another node (retry-on 503), so no client lands there.
        await until(lambda: fleet.up() == {1, 2}, 5.0)

        after = await connections(fleet)
        assert after[0] == 0 and sum(after) == len(everyone), after
        moved = set(closed_at)
        assert len(moved) >= before[0] - 1, (len(moved), before)  # (the publisher may move)
        assert all(reopened_at.get(i, 0) > closed_at[i] for i in moved)
        assert {tuple(subs[i].close_codes) for i in moved} == {(1012,)}

        # Traffic goes on after the move: ten more publishes acknowledged (a count, not a
        # time: on a loaded machine the publisher is slower, not wrong).
        moved_at = len(acked)
        await until(lambda: len(acked) >= moved_at + 10, 30.0)
        stop.set()
        await publishing

        # Every subscriber has every message exactly once, in order, and no gap.
        assert acked == list(range(1, len(acked) + 1)) and len(acked) >= moved_at + 10
        history = await subs[-1].history(ROOM, 1000)
        expected = [(m.offset, m.data) for m in history]
        assert expected == [(n, n) for n in acked], "a publish was stored twice or lost"
        # A marker behind the stream: whatever came before it (a repeat too) is all that came.
        end = await publisher.publish(ROOM, "end")
        await until(lambda: all(g and g[-1].data == "end" for g in got), 20.0,
                    what="the marker on every subscriber")
        for i, mine in enumerate(got):
            assert [(m.offset, m.data) for m in mine] == [*expected, (end.offset, "end")], i
        assert gaps == []

        reconnect = watched.reconnect_seconds()
        record("fleet-drain.json", {
            "clients": len(everyone), "moved": len(moved), "per_node_before": before,
            "per_node_after": after, "messages": len(acked),
            "deliveries": len(acked) * SUBSCRIBERS,
            "drain_seconds": round(drain_wall, 3), "until_all_open_seconds": round(settled, 3),
            "close_spread_seconds": round(max(closed_at.values()) - min(closed_at.values()), 3),
            "reconnect_p50_seconds": round(percentile(reconnect, 0.5), 3),
            "reconnect_p99_seconds": round(percentile(reconnect, 0.99), 3),
            "reconnect_max_seconds": round(max(reconnect), 3),
            "batch": BATCH, "interval": INTERVAL,
        })
    finally:
        stop.set()
        await close_all(everyone)
