"""A connection's core state holds no reference cycle: when a connection ends, reference
counting frees it at once, and the cyclic garbage collector (the latency tail at 10K
connections, BENCHMARKS.md) has nothing of it to find. Checked by counting what the collector
finds unreachable after a connection's whole life with the collector off."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator

import pytest

from tests.server.core.fakes import Closes, Ticks, connect
from tests.server.core.test_hub import live, msg
from wsops.server.broker.memory import MemoryBroker
from wsops.server.core.hub import Conn, Hub
from wsops.server.core.identity import Identity
from wsops.server.core.session import Session


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def hub_life() -> None:
    """Connections that join, get messages, resume, watch presence, are resynced, slow, and
    leave: every path that links a connection to rooms and buffers."""
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    a, _ = connect(hub, closes)
    b, _ = connect(hub, closes, limit=400)
    c, _ = connect(hub, closes)
    live(hub, a, "r")
    live(hub, b, "r")
    hub.join_room(c, "r", presence_events=True)  # resuming: messages held for it
    for offset in range(1, 6):
        hub.on_message(msg("r", offset))  # b becomes a slow consumer
    hub.on_presence("r", "join", "u")
    hub.finish_sync(c, "r", 2, "e1")
    live(hub, a, "other")
    hub.on_resync("other")
    ticks.run()
    for conn in (a, b, c):
        hub.remove(conn)


def test_a_connections_hub_state_is_freed_without_the_cyclic_collector(collector_off: None
                                                                       ) -> None:
    hub_life()
    assert gc.collect() == 0


def self_closing_conn() -> None:
    """A connection whose closer closes over the connection itself (as the endpoint's lambda
    did): conn -> lambda -> cell -> conn."""
    hub = Hub(schedule=Ticks())
    conn = Conn(hub, 1, "u", None, Closes(), 100)  # type: ignore[arg-type]
    conn.closer = lambda _conn, code, reason: print(conn, code, reason)


def test_the_check_sees_a_connection_that_holds_a_closure_of_itself(collector_off: None
                                                                    ) -> None:
    self_closing_conn()
    assert gc.collect() > 0


async def test_a_sessions_whole_life_leaves_nothing_for_the_cyclic_collector(
        collector_off: None) -> None:
    ticks, closes = Ticks(), Closes()
    hub = Hub(schedule=ticks)
    broker = MemoryBroker()
    broker.listener = hub
    sessions = []
    for user in ("alice", "bob"):
        conn, _ = connect(hub, closes, user=user)
        sessions.append(Session(conn, Identity(user, ("*",)), hub, broker, max_rooms=4,
                                rate=1000, burst=1000, strikes=3))
    alice, bob = sessions
    frames = [{"op": "subscribe", "id": 1, "room": "r", "presence": True},
              {"op": "publish", "id": 2, "room": "r", "data": {"n": 1}},
              {"op": "history", "id": 3, "room": "r"},
              {"op": "presence", "id": 4, "room": "r"},
              {"op": "subscribe", "id": 5, "room": "r", "since": {"offset": 0, "epoch": "x"}},
              {"op": "unsubscribe", "id": 6, "room": "nope"},
              {"op": "publish", "id": 7, "room": "", "data": 1}]
    for frame in frames:
        await alice.handle(json.dumps(frame))
        await bob.handle(json.dumps(frame))
        ticks.run()
    gc.collect()  # what the event loop and the test framework left so far
    for session in sessions:
        await session.close()
        hub.remove(session.conn)
    del sessions, alice, bob, session
    ticks.run()
    assert gc.collect() == 0
