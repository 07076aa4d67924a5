"""The node's garbage-collection policy: long-lived state frozen out of the collector's walks.

A full collection walks every GC-tracked object; a node holding 10K connections and their rooms'
history held ~1.2M of them, so one full collection paused every connection for ~0.3 s. Most of
that state lives as long as its connection or its history entry and is freed by reference
counting (the connection state is acyclic by construction, tests/server/test_handoff.py).

So every ``interval`` seconds (0.25 by default) the node collects what is new (everything
not yet frozen: one interval's worth of survivors) and then freezes it (``gc.freeze()``: moved
into the permanent generation, which no collection walks). A pause is then bounded by what one
interval allocated, not by the number of connections: at 10K chat-shaped connections and 10K
publishes/s ~2-3 ms each, none over 10 ms (BENCHMARKS.md, issue #17); a 1 s interval made
fewer, longer ones that showed in the p99 at 2,000 publishes/s (3.7-3.9 ms against 3.0-3.1).
Frozen objects are still freed by reference counting when they die.

The risk is a reference cycle that was alive at a freeze and dies later: the collector no
longer sees it. ``valve`` seconds apart (default an hour) the node unfreezes everything first,
so such garbage is collected in that one full collection; the gauge
``wsops_gc_frozen_objects`` and ``wsops leaks`` show state that outlives its connections.
No freeze while the node drains (its state is going away).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

VALVE_SECONDS = 3600.0


class GcFreezer:
    """Collect, then freeze, every ``interval`` seconds (``run``, or ``step`` by hand)."""

    def __init__(self, interval: float, *, paused: Callable[[], bool] = lambda: False,
                 valve: float = VALVE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if interval <= 0 or valve <= 0:
            raise ValueError("the freeze interval and the valve must be positive")
        self.interval = interval
        self.valve = valve
        self.paused = paused
        self.clock = clock
        self.freezes = 0
        self.valves = 0
        self._last_valve = clock()

    def step(self) -> None:
        if self.paused():
            return
        now = self.clock()
        if now - self._last_valve >= self.valve:
            gc.unfreeze()  # cycles that died while frozen are collected just below
            self._last_valve = now
            self.valves += 1
        gc.collect()
        gc.freeze()
        self.freezes += 1

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.step()
