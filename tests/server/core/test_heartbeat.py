"""The heartbeat wheel, driven by a fake clock: who is pinged, who is closed, and when."""

from __future__ import annotations

from typing import Any

import pytest

from wsops.server.core.heartbeat import HeartbeatWheel


class Peer:
    """A connection as the wheel sees it; ``answers`` peers reply to each ping at once."""

    def __init__(self, answers: bool = True) -> None:
        self.rx = False
        self.ping_at = 0.0
        self.beat: dict[Any, None] | None = None
        self.answers = answers
        self.pings: list[float] = []
        self.timed_out_at: float | None = None
        self.now = 0.0

    def ping(self, now: float) -> None:
        self.pings.append(now)
        self.ping_at = now
        if self.answers:
            self.data()

    def data(self) -> None:  # what WsConn.data_received does
        self.rx = True
        self.ping_at = 0.0

    def heartbeat_timeout(self) -> None:
        self.timed_out_at = self.now


def run(wheel: HeartbeatWheel, peers: list[Peer], until: float,
        chatter: Peer | None = None) -> None:
    now = 0.0
    while now < until:
        now += wheel.tick
        for p in peers:
            p.now = now
        if chatter is not None:
            chatter.data()
        wheel.advance(now)


def test_one_turn_is_half_a_period() -> None:
    wheel = HeartbeatWheel(20.0, tick=0.25)
    assert wheel.slots == 40 and wheel.tick == pytest.approx(0.25)
    small = HeartbeatWheel(0.4, tick=0.25)
    assert small.slots == 1 and small.tick == pytest.approx(0.2)
    with pytest.raises(ValueError, match="positive"):
        HeartbeatWheel(0)


def test_a_live_idle_peer_is_pinged_once_per_period_and_never_closed() -> None:
    wheel = HeartbeatWheel(2.0, tick=0.25)
    peer = Peer()
    wheel.add(peer)
    run(wheel, [peer], 20.0)
    assert peer.timed_out_at is None
    gaps = [b - a for a, b in zip(peer.pings, peer.pings[1:], strict=False)]
    assert len(peer.pings) == 10 and all(g == pytest.approx(2.0) for g in gaps)


def test_a_chatty_peer_is_never_pinged() -> None:
    wheel = HeartbeatWheel(2.0, tick=0.25)
    peer = Peer()
    wheel.add(peer)
    run(wheel, [peer], 20.0, chatter=peer)
    assert peer.pings == [] and peer.timed_out_at is None


def test_a_dead_peer_is_closed_between_one_and_one_and_a_half_periods_after_it_went_quiet() -> None:
    period = 2.0
    wheel = HeartbeatWheel(period, tick=0.25)
    peers = [Peer(answers=False) for _ in range(12)]
    now = 0.0
    for p in peers:  # joined at different moments: every bucket
        wheel.add(p)
        now += wheel.tick
        for q in peers:
            q.now = now
        wheel.advance(now)
    joined = {id(p): i * wheel.tick for i, p in enumerate(peers)}
    t = now
    while t < 10.0:
        t += wheel.tick
        for p in peers:
            p.now = t
        wheel.advance(t)
    for p in peers:
        assert p.timed_out_at is not None and len(p.pings) == 1
        quiet = p.timed_out_at - joined[id(p)]
        assert period - 1e-9 <= quiet <= 1.5 * period + wheel.tick, quiet
    assert len(wheel) == 0  # the closed are gone from the wheel


def test_removed_connections_are_not_visited() -> None:
    wheel = HeartbeatWheel(1.0, tick=0.25)
    peer = Peer(answers=False)
    wheel.add(peer)
    wheel.remove(peer)
    wheel.remove(peer)  # twice is harmless
    run(wheel, [peer], 5.0)
    assert peer.pings == [] and peer.beat is None


def test_a_zero_tick_is_refused_and_a_short_period_still_has_one_slot() -> None:
    with pytest.raises(ValueError, match="positive"):
        HeartbeatWheel(1.0, tick=0)
    wheel = HeartbeatWheel(0.1, tick=0.25)
    assert wheel.slots == 1 and wheel.tick == pytest.approx(0.05)
