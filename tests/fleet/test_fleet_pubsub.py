"""Three real nodes on one Redis, behind HAProxy: pub/sub, presence and history agree everywhere."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.fleet.conftest import clients, close_all, connect_all, connections
from tests.support.waits import until
from wsops.client import Client, Message
from wsops.server.broker.redis import list_nodes

ROOM = "chat"
PER_PUBLISHER = 20


async def test_messages_presence_and_history_agree_on_every_node(fleet: Any) -> None:
    got: dict[int, list[Message]] = {i: [] for i in range(12)}
    direct = [Client(n.url, request_timeout=10.0, on_message=got[i].append)  # one per node
              for i, n in enumerate(fleet.nodes)]
    balanced = [clients(fleet.url, 1, on_message=got[i].append)[0]  # through HAProxy
                for i in range(len(direct), len(got))]
    everyone = direct + balanced
    try:
        await connect_all(everyone)
        per_node = await connections(fleet)
        assert sum(per_node) == len(everyone) and min(per_node) >= 2, per_node  # spread out
        await asyncio.gather(*(c.subscribe(ROOM) for c in everyone))

        async def publish(k: int) -> list[int]:
            return [(await direct[k].publish(ROOM, f"{k}-{n}")).offset
                    for n in range(PER_PUBLISHER)]

        acked = await asyncio.gather(*(publish(k) for k in range(len(direct))))
        total = PER_PUBLISHER * len(direct)
        assert sorted(o for offsets in acked for o in offsets) == list(range(1, total + 1))
        for offsets in acked:  # each publisher's messages keep their order
            assert offsets == sorted(offsets)

        # A marker behind them: whatever came before it (a repeat too) is all that came.
        await direct[0].publish(ROOM, "end")
        await until(lambda: all(g and g[-1].data == "end" for g in got.values()), 20.0,
                    what="the marker on every client")
        reference = [(m.offset, m.data) for m in got[0]]
        assert [o for o, _ in reference] == list(range(1, total + 2))
        for i, mine in got.items():
            assert [(m.offset, m.data) for m in mine] == reference, i
        assert len({m.epoch for g in got.values() for m in g}) == 1

        # History and presence read on each node are the same fleet-wide answer.
        histories = await asyncio.gather(*(c.history(ROOM, 1000) for c in direct))
        for h in histories:
            assert [(m.offset, m.data) for m in h] == reference
        presences = await asyncio.gather(*(c.presence(ROOM) for c in direct))
        assert all(p == presences[0] for p in presences) and len(presences[0]) == len(everyone)

        # One client leaving is seen on every node.
        await balanced[0].close()

        async def one_less_everywhere() -> bool:
            seen = await asyncio.gather(*(c.presence(ROOM) for c in direct))
            return all(len(p) == len(everyone) - 1 for p in seen)

        await until(one_less_everywhere, 10.0)

        # The registry lists the three nodes with their admin URLs.
        nodes = await list_nodes(fleet.redis_url)
        assert sorted(n["admin_url"] for n in nodes) == sorted(n.admin_url for n in fleet.nodes)
    finally:
        await close_all(everyone)
