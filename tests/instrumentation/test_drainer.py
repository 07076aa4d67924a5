"""The drainer's decisions without sockets: hub connections on recording sinks, closed in
shuffled batches with 1012, the rest forced at the deadline, a cancel, and the counts."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from tests.server.core.fakes import Closes, Ticks, connect
from wsops.admin.contract import MAX_CLOSES_LOG, CloseLog, merge_closes
from wsops.instrumentation.drainer import SERVICE_RESTART, Drainer
from wsops.server.core.hub import Conn, Hub


def node(n: int, *, gone_on_close: bool = True) -> tuple[Hub, Closes, list[Conn]]:
    """A hub with ``n`` connections; a closed one leaves the hub (as its handler's end does)
    unless ``gone_on_close`` is False (a peer that never finishes its close handshake)."""
    hub, closes = Hub(schedule=Ticks()), Closes()
    conns = []
    for _ in range(n):
        conn, _ = connect(hub, closes)
        conns.append(conn)
    if gone_on_close:

        def close(conn: Conn, code: int, reason: str) -> None:
            closes(conn, code, reason)
            hub.conns.pop(conn.id, None)

        for conn in conns:
            conn.closer = close
    return hub, closes, conns


async def test_connections_are_closed_1012_in_batches_and_the_count_adds_up() -> None:
    hub, closes, conns = node(10)
    drainer = Drainer(hub.conns.values, random.Random(1))
    assert not drainer.draining
    task = drainer.start(batch=3, interval=0.01, deadline=5.0)
    assert drainer.draining and drainer.status.state == "draining"
    status = await task
    assert status.state == "drained" and drainer.draining  # still refusing: the node goes
    assert (status.total, status.closed, status.forced, status.batches) == (10, 10, 0, 4)
    assert sorted(i for i, _, _ in closes.calls) == sorted(c.id for c in conns)
    assert set(closes.codes()) == {SERVICE_RESTART}
    # The default asks each client to spread its reconnect over 5 s (PROTOCOL.md).
    assert {reason for _, _, reason in closes.calls} == {"draining; reconnect=5000"}
    assert status.finished_at is not None and status.started_at is not None


async def test_the_log_holds_each_batch_its_time_and_its_closes() -> None:
    hub, _, conns = node(10)
    conns[4].closing = True  # already closing: counted in no batch
    status = await Drainer(hub.conns.values, random.Random(1)).start(
        batch=4, interval=0.05, deadline=5.0)
    assert status.total == 9 and status.batches == 3
    log = status.closes.as_list()
    assert [(c["batches"], c["sent"]) for c in log] == [(1, 4), (1, 4), (1, 1)]
    times = [c["t"] for c in log]
    assert 0 <= times[0] < 0.05 and all(b - a >= 0.02 for a, b in itertools.pairwise(times))
    assert sum(c["sent"] for c in log) == status.closed


def test_a_long_log_groups_batches_evenly_and_still_adds_up() -> None:
    log, n = CloseLog(), MAX_CLOSES_LOG * 5 + 3
    for k in range(n):
        log.add(k / 10, k % 7)
    entries = log.as_list()
    assert len(entries) <= MAX_CLOSES_LOG and log.stride == 8
    assert sum(c["batches"] for c in entries) == n
    assert sum(c["sent"] for c in entries) == sum(k % 7 for k in range(n))
    # Every entry but the last holds the same number of batches, timed by its first.
    assert {c["batches"] for c in entries[:-1]} == {8} and entries[-1]["batches"] <= 8
    assert [c["t"] for c in entries[:2]] == [0.0, 0.8]
    # Workers' logs as one node's: times from the earliest start, in order, bounded.
    merged = merge_closes([(100.0, [{"t": 0.0, "batches": 1, "sent": 5},
                                    {"t": 1.0, "batches": 1, "sent": 5}]),
                           (100.5, [{"t": 0.0, "batches": 1, "sent": 3}])])
    assert merged == [{"t": 0.0, "batches": 1, "sent": 5}, {"t": 0.5, "batches": 1, "sent": 3},
                      {"t": 1.0, "batches": 1, "sent": 5}]
    assert merge_closes([]) == []
    many = merge_closes([(0.0, entries), (0.05, entries), (0.02, entries)])
    assert len(many) <= MAX_CLOSES_LOG and sum(c["batches"] for c in many) == 3 * n


@pytest.mark.parametrize(("code", "spread", "reason"), [
    (SERVICE_RESTART, 2.5, "draining; reconnect=2500"),
    (SERVICE_RESTART, 0.0, "draining"),
    (1001, 2.5, "draining"),  # only a 1012 carries the hint
])
async def test_the_close_reason_carries_the_reconnect_hint(code: int, spread: float,
                                                           reason: str) -> None:
    hub, closes, _ = node(4)
    await Drainer(hub.conns.values).start(batch=4, interval=0, deadline=5.0, code=code,
                                          spread=spread)
    assert {r for _, _, r in closes.calls} == {reason}
    assert set(closes.codes()) == {code}


async def test_the_batches_are_shuffled_so_reconnects_do_not_follow_connection_order() -> None:
    hub, closes, conns = node(50)
    await Drainer(hub.conns.values, random.Random(7)).start(batch=50, interval=0, deadline=5)
    assert [i for i, _, _ in closes.calls] != [c.id for c in conns]


async def test_what_is_still_open_at_the_deadline_is_forced_and_counted_once() -> None:
    hub, _, conns = node(4, gone_on_close=False)  # nobody finishes the close handshake
    sinks = [c.transport for c in conns]
    status = await Drainer(hub.conns.values, random.Random(1)).start(
        batch=2, interval=0.01, deadline=0.2)
    assert status.total == 4 and status.closed == 0 and status.forced == 4
    assert all(s.is_closing() for s in sinks)  # aborted


async def test_a_gap_past_the_deadline_forces_the_rest_without_another_batch() -> None:
    hub, closes, _ = node(6, gone_on_close=False)
    status = await Drainer(hub.conns.values, random.Random(1)).start(
        batch=2, interval=10.0, deadline=0.1)
    assert status.batches == 1 and len(closes.calls) >= 2
    assert status.closed + status.forced == 6 and status.forced == 6


async def test_a_cancelled_drain_takes_connections_again_and_a_second_start_is_the_same_drain(
) -> None:
    hub, closes, _ = node(6)
    drainer = Drainer(hub.conns.values, random.Random(1))
    task = drainer.start(batch=1, interval=0.5, deadline=30)
    assert drainer.start(batch=100, interval=0, deadline=1) is task  # options of the first
    await asyncio.sleep(0)
    assert drainer.cancel()
    assert not drainer.draining and drainer.status.state == "cancelled"
    assert not drainer.cancel()
    await drainer.wait()
    assert len(closes.calls) <= 1


def test_options_out_of_range_are_refused() -> None:
    hub, _, _ = node(1)
    drainer = Drainer(hub.conns.values)
    for batch, interval, deadline in ((0, 0.1, 1), (1, -1, 1), (1, 0.1, 0)):
        with pytest.raises(ValueError, match="drain needs"):
            drainer.start(batch, interval, deadline)
    for spread in (-0.1, 60.1):
        with pytest.raises(ValueError, match="spread of 0-60 s"):
            drainer.start(1, 0.1, 1, spread=spread)
    assert drainer.status.state == "idle"


async def test_a_connection_serving_a_request_is_closed_after_its_reply() -> None:
    hub, closes, (busy, idle) = node(2)
    busy.busy = True
    status = await Drainer(hub.conns.values, random.Random(1)).start(
        batch=2, interval=0, deadline=0.2)
    assert [i for i, _, _ in closes.calls] == [idle.id]  # the busy one waits for its reply
    assert busy.deferred_close == (SERVICE_RESTART, "draining; reconnect=5000")
    assert status.forced == 1  # and, still open at the deadline, is dropped


async def test_the_node_log_says_when_a_drain_starts_ends_or_is_cancelled(
        caplog: pytest.LogCaptureFixture) -> None:
    """Whoever started it (a signal, the admin API, ``wsops drain``), the node's own log tells
    the operator what the drain does and how it ended: forced connections as a warning."""
    caplog.set_level("INFO", logger="wsops.drain")
    hub, _, _ = node(3)
    await Drainer(hub.conns.values, random.Random(1)).start(batch=2, interval=0, deadline=5)
    hub, _, _ = node(2, gone_on_close=False)
    await Drainer(hub.conns.values, random.Random(1)).start(batch=2, interval=0, deadline=0.1)
    hub, _, _ = node(4)
    drainer = Drainer(hub.conns.values, random.Random(1))
    drainer.start(batch=1, interval=5, deadline=30)
    await asyncio.sleep(0.01)
    drainer.cancel()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "wsops.drain"]
    assert [level for level, _ in lines] == ["INFO", "INFO", "INFO", "WARNING", "INFO", "INFO"]
    assert lines[0][1].startswith("drain started: 3 connections open, closed 2 at a time")
    assert "3 closed, 0 forced" in lines[1][1]
    assert "0 closed, 2 forced" in lines[3][1]
    assert lines[5][1].startswith("drain cancelled after") and "(1 closed)" in lines[5][1]
