"""A mergeable latency histogram: log-spaced buckets, 2% wide, from 1 us to ~30 minutes.

Each worker process fills its own and ships ``counts`` (a dict: bucket index -> count) home,
where they add up exactly; percentiles are then read from the merged counts, so p99 over
several processes is the p99 of all samples (to within a bucket), not an average of p99s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

GROWTH = 1.02
FLOOR = 1e-6  # seconds: everything faster lands in bucket 0
_LOG = math.log(GROWTH)


def bucket_of(seconds: float) -> int:
    if seconds <= FLOOR:
        return 0
    return 1 + int(math.log(seconds / FLOOR) / _LOG)


def bucket_upper(index: int) -> float:
    """The upper bound of a bucket, in seconds (what a percentile reports)."""
    return FLOOR * GROWTH ** index


@dataclass
class Latencies:
    counts: dict[int, int] = field(default_factory=dict)
    total: int = 0
    sum: float = 0.0
    max: float = 0.0

    def add(self, seconds: float) -> None:
        i = bucket_of(seconds)
        self.counts[i] = self.counts.get(i, 0) + 1
        self.total += 1
        self.sum += seconds
        if seconds > self.max:
            self.max = seconds

    def merge(self, other: Latencies) -> None:
        for i, n in other.counts.items():
            self.counts[i] = self.counts.get(i, 0) + n
        self.total += other.total
        self.sum += other.sum
        self.max = max(self.max, other.max)

    def percentile(self, q: float) -> float | None:
        """The smallest bucket bound with at least ``q`` (0..1) of the samples at or below it."""
        if not self.total:
            return None
        rank = max(1, math.ceil(q * self.total))
        seen = 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            if seen >= rank:
                return min(bucket_upper(i), self.max)
        return self.max

    def summary(self) -> dict[str, float | int | None]:
        """Count, mean, p50, p99, p99.9 and max, in milliseconds."""
        def ms(v: float | None) -> float | None:
            return None if v is None else round(v * 1000, 3)
        return {
            "count": self.total,
            "mean_ms": ms(self.sum / self.total) if self.total else None,
            "p50_ms": ms(self.percentile(0.5)), "p99_ms": ms(self.percentile(0.99)),
            "p999_ms": ms(self.percentile(0.999)), "max_ms": ms(self.max if self.total else None),
        }

    def to_wire(self) -> dict[str, object]:
        return {"counts": {str(k): v for k, v in self.counts.items()}, "total": self.total,
                "sum": self.sum, "max": self.max}

    @classmethod
    def from_wire(cls, data: Mapping[str, object]) -> Latencies:
        counts = data.get("counts", {})
        assert isinstance(counts, dict)
        total, total_sum, top = data.get("total", 0), data.get("sum", 0.0), data.get("max", 0.0)
        assert isinstance(total, int) and isinstance(total_sum, float | int)
        assert isinstance(top, float | int)
        return cls({int(k): int(v) for k, v in counts.items()}, total, float(total_sum),
                   float(top))

    @classmethod
    def merged(cls, parts: Iterable[Latencies]) -> Latencies:
        out = cls()
        for p in parts:
            out.merge(p)
        return out
