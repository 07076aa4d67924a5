"""Heartbeats of every connection of a node from one timer: a wheel, sans-I/O.

A connection sits in one bucket of the wheel; one bucket is visited per tick and a whole turn
takes half a heartbeat period, so each connection is visited every ``period / 2``:

- data arrived since the last visit (``rx``; a pong is data): alive, nothing to send;
- silent, no ping outstanding: ping now;
- silent since the ping of the last visit: dead (``heartbeat_timeout``).

So an idle live peer is pinged once per period, a silent one after ``period / 2`` to
``period`` of silence, and a dead one is closed ``period`` to ``1.5 * period`` after the last
bytes it sent. Per tick the work is one bucket (connections / slots), flat over time: no timer
per connection, no burst of pings at one instant (at 10K connections and a 20 s period, a tick
of 50 ms pings at most 50 and then reads their pongs; at 250 ms the burst of 250 pongs moved
the chat benchmark's p99 by ~1.5 ms). Per received chunk the connection only sets ``rx``.
"""

from __future__ import annotations

from typing import Protocol


class Beating(Protocol):
    """What the wheel reads and calls on a connection."""

    rx: bool
    ping_at: float
    beat: dict[Beating, None] | None

    def ping(self, now: float) -> None:
        """Send a ping (and set ``ping_at = now``)."""

    def heartbeat_timeout(self) -> None:
        """No bytes since the last ping: the peer is gone."""


class HeartbeatWheel:
    """``advance(now)`` once per ``tick`` seconds (the caller's timer) visits one bucket."""

    def __init__(self, period: float, tick: float = 0.05) -> None:
        if period <= 0 or tick <= 0:
            raise ValueError("the heartbeat period and tick must be positive")
        self.slots = max(1, round(period / 2 / tick))
        self.tick = period / 2 / self.slots
        self.buckets: list[dict[Beating, None]] = [{} for _ in range(self.slots)]
        self.cursor = 0

    def __len__(self) -> int:
        return sum(map(len, self.buckets))

    def add(self, conn: Beating) -> None:
        """First visited a whole turn from now (the bucket just visited)."""
        bucket = self.buckets[self.cursor - 1]
        bucket[conn] = None
        conn.beat = bucket

    @staticmethod
    def remove(conn: Beating) -> None:
        bucket = conn.beat
        if bucket is not None:
            bucket.pop(conn, None)
            conn.beat = None

    def advance(self, now: float) -> None:
        bucket = self.buckets[self.cursor]
        self.cursor = (self.cursor + 1) % self.slots
        for conn in list(bucket):
            if conn.rx:
                conn.rx = False
            elif conn.ping_at:
                self.remove(conn)
                conn.heartbeat_timeout()
            else:
                conn.ping(now)
