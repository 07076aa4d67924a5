"""Recent rates and quantiles from cumulative counters sampled once a second (pure)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from wsops.admin.contract import finite


@dataclass(frozen=True)
class Sample:
    t: float
    messages_in: int
    messages_out: int
    delivery_counts: tuple[int, ...]  # per-bucket (not cumulative) counts of the histogram


def quantile(bounds: Sequence[float], counts: Sequence[int], q: float) -> float | None:
    """Upper bound of the bucket holding quantile ``q``; None with no observations."""
    total = sum(counts)
    if total <= 0:
        return None
    rank, acc = q * total, 0
    for i, n in enumerate(counts):
        acc += n
        if acc >= rank:
            return bounds[i] if i < len(bounds) else float("inf")
    return float("inf")


class StatsWindow:
    """Keeps the last ``horizon`` seconds of samples; rates are newest minus oldest."""

    def __init__(self, bounds: Sequence[float], horizon: float = 10.0) -> None:
        self.bounds = list(bounds)
        self.horizon = horizon
        self._samples: deque[Sample] = deque()

    def add(self, sample: Sample) -> None:
        self._samples.append(sample)
        while len(self._samples) > 2 and sample.t - self._samples[0].t > self.horizon:
            self._samples.popleft()

    def summary(self) -> dict[str, float | None]:
        """Messages per second in and out, and the delivery p99 over the window."""
        if len(self._samples) < 2:
            return {"messages_in_per_second": 0.0, "messages_out_per_second": 0.0,
                    "delivery_p99_seconds": None, "window_seconds": 0.0}
        old, new = self._samples[0], self._samples[-1]
        dt = max(new.t - old.t, 1e-9)
        deltas = [b - a for a, b in zip(old.delivery_counts, new.delivery_counts, strict=True)]
        return {
            "messages_in_per_second": (new.messages_in - old.messages_in) / dt,
            "messages_out_per_second": (new.messages_out - old.messages_out) / dt,
            "delivery_p99_seconds": finite(quantile(self.bounds, deltas, 0.99)),
            "window_seconds": dt,
        }
