"""A histogram's bucket counts and sum: the pure-Python ``Counts``, and which one wsops uses.

``_counting.c`` is the same class compiled (setup.py builds it when a C compiler is there;
``COMPILED`` says whether it was): the instrumentation's hot paths call these methods once per
message, and a call of the compiled ``observe`` costs ~110 instructions against ~670 for the
same update written inline in Python (bench/tracecost.py). The tests run both classes through
the same cases.

Bounds are inclusive upper bounds (Prometheus' ``le``), increasing; the last bucket counts
what lies above them all (``+Inf``). ``counts`` is a copy: assign a list to replace them.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Any

MAX_BOUNDS = 64
_perf = time.perf_counter

TraceId = int | str | bytes


class Counts:
    """Bucket counts and sum of a histogram with fixed ``bounds``."""

    __slots__ = ("_bounds", "_counts", "_first", "exemplars", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        given = list(bounds)
        if not 1 <= len(given) <= MAX_BOUNDS:
            raise ValueError(f"a histogram takes 1 to {MAX_BOUNDS} bounds, not {len(given)}")
        if given[0] != given[0] or any(not b > a for a, b in pairwise(given)):
            raise ValueError(f"histogram bounds must increase, not {given!r}")
        self._bounds = given
        self._first = given[0]
        self._counts = [0] * (len(given) + 1)
        self.sum = 0.0
        # bucket -> trace id, value, when (time.time()) of its last traced observation
        self.exemplars: dict[int, tuple[TraceId, float, float]] = {}

    @property
    def bounds(self) -> list[float]:
        return list(self._bounds)

    @property
    def counts(self) -> list[int]:
        """Per-bucket (not cumulative) counts, a copy."""
        return list(self._counts)

    @counts.setter
    def counts(self, counts: Sequence[int]) -> None:
        if len(counts) != len(self._counts):
            raise ValueError(f"{len(counts)} counts for {len(self._counts)} buckets")
        self._counts = [int(n) for n in counts]

    @property
    def count(self) -> int:
        """Observations in all."""
        return sum(self._counts)

    def index(self, value: float) -> int:
        """The bucket of ``value``."""
        return 0 if value <= self._first else bisect_left(self._bounds, value)

    def observe(self, value: float) -> None:
        self._counts[0 if value <= self._first else bisect_left(self._bounds, value)] += 1
        self.sum += value

    def observe_n(self, value: float, n: int) -> None:
        """``n`` observations of the same ``value`` (a fan-out of one frame to ``n``)."""
        if n < 0:
            raise ValueError("observe_n: n must be >= 0")
        self._counts[0 if value <= self._first else bisect_left(self._bounds, value)] += n
        self.sum += value * n

    def observe_since(self, start: float) -> None:
        """One observation of ``time.perf_counter() - start``."""
        value = _perf() - start
        self._counts[0 if value <= self._first else bisect_left(self._bounds, value)] += 1
        self.sum += value

    def observe_elapsed(self, now: float, starts: Sequence[float]) -> None:
        """One observation of ``now - start`` per start (a flush of many publishes)."""
        counts, bounds, first, total = self._counts, self._bounds, self._first, 0.0
        elapsed = [now - start for start in starts]  # all numbers, or nothing counted
        for took in elapsed:
            counts[0 if took <= first else bisect_left(bounds, took)] += 1
            total += took  # in order, as the compiled class adds (not sum(): 3.12 compensates)
        self.sum += total

    def observe_traced(self, value: float, trace_id: TraceId, at: float | None = None) -> None:
        """Observe ``value`` and keep ``trace_id`` (an int, its 32 hex digits or its 16 bytes)
        as its bucket's exemplar, observed at ``at`` (``time.time()``; read here when not
        given)."""
        i = 0 if value <= self._first else bisect_left(self._bounds, value)
        self.exemplars[i] = (trace_id, value, time.time() if at is None else at)
        self._counts[i] += 1
        self.sum += value


def compiled_module() -> Any:
    """``wsops.instrumentation._counting`` (also the node observer's compiled hooks,
    ``_hooks.c``), or None where it was not built."""
    try:
        from wsops.instrumentation import _counting
    except ImportError:  # no compiler when wsops was installed
        return None
    return _counting


COMPILED = compiled_module() is not None
if TYPE_CHECKING:
    Fast = Counts
else:
    Fast = compiled_module().Counts if COMPILED else Counts
