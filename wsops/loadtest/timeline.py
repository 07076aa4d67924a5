"""The load test over time (pure): the shards' ticks merged into one point per second, the
connections opened per 100 ms, the server's CPU and RSS between readings, and the latency
histogram in bins people can draw. What ``wsops loadtest --report`` charts, in the JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from wsops.loadtest.latency import Latencies, bucket_upper

OPEN_STEPS = 10  # steps per second of the connections-opened curve (the shards' unit)
BINS_PER_DECADE = 10


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 3)


def per_second(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A point per second of the run that some shard reported: connections open, publishes and
    deliveries so far and per second since the point before, and the percentiles of the
    latencies seen meanwhile (of every shard)."""
    shards: list[dict[int, dict[str, Any]]] = []
    for r in results:
        mine: dict[int, dict[str, Any]] = {}
        for tick in r.get("ticks") or ():
            i = max(1, round(float(tick["t"])))
            seen = mine.get(i)
            fresh: dict[str, int] = dict(seen["latency"]) if seen else {}
            for k, n in tick["latency"].items():
                fresh[k] = fresh.get(k, 0) + n
            mine[i] = {**tick, "latency": fresh}  # counts so far: the later tick's
        shards.append(mine)
    points: list[dict[str, Any]] = []
    held: list[dict[str, Any] | None] = [None] * len(shards)
    before, since = {"published": 0, "received": 0}, 0
    for i in sorted({i for mine in shards for i in mine}):
        lat = Latencies()
        for s, mine in enumerate(shards):
            tick = mine.get(i)
            if tick is None:
                continue
            held[s] = tick
            for k, n in tick["latency"].items():
                lat.counts[int(k)] = lat.counts.get(int(k), 0) + n
                lat.total += n
        lat.max = bucket_upper(max(lat.counts)) if lat.counts else 0.0
        now = {key: sum(int(h[key]) for h in held if h) for key in
               ("open", "published", "received")}
        points.append({
            "t": i, **now,
            "published_per_second": round((now["published"] - before["published"])
                                          / (i - since), 1),
            "deliveries_per_second": round((now["received"] - before["received"])
                                           / (i - since), 1),
            "latency_count": lat.total, "p50_ms": _ms(lat.percentile(0.5)),
            "p99_ms": _ms(lat.percentile(0.99)), "p999_ms": _ms(lat.percentile(0.999)),
        })
        before, since = now, i
    return points


def opened_over_time(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Connections opened so far, every 100 ms from the first shard's start (shards lined up
    on the wall clock)."""
    started = [r for r in results if r.get("open_started")]  # (0: a shard that never began)
    if not started:
        return []
    first = min(float(r["open_started"]) for r in started)
    steps: dict[int, int] = {}
    for r in started:
        shift = round((float(r["open_started"]) - first) * OPEN_STEPS)
        for k, n in (r.get("opened_at") or {}).items():
            step = int(k) + shift
            steps[step] = steps.get(step, 0) + int(n)
    if not steps:
        return []
    out, total = [{"t": 0.0, "opened": 0}], 0
    for k in range(0, max(steps) + 1):
        total += steps.get(k, 0)
        out.append({"t": (k + 1) / OPEN_STEPS, "opened": total})
    return out


MIN_CPU_SECONDS = 0.5
"""The shortest interval between two readings the server's CPU share is given for: CPU time
is counted in 10 ms ticks, so over a few ms (the reading as the load begins, taken just after
one of the opening's) a share would be mostly rounding."""


def server_over_time(readings: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The server's CPU (percent of one core, between consecutive readings at least
    ``MIN_CPU_SECONDS`` apart, else None), RSS and connections at each reading; ``t`` in
    seconds from the first one."""
    ok = [r for r in readings if "cpu_seconds" in r and "at" in r]
    if not ok:
        return []
    t0 = float(ok[0]["at"])
    out = []
    for prev, cur in zip([None, *ok], ok, strict=False):
        cpu = None
        if prev is not None and float(cur["at"]) - float(prev["at"]) >= MIN_CPU_SECONDS:
            cpu = round(100 * (float(cur["cpu_seconds"]) - float(prev["cpu_seconds"]))
                        / (float(cur["at"]) - float(prev["at"])), 1)
        out.append({"t": round(float(cur["at"]) - t0, 2), "cpu_percent": cpu,
                    "rss_bytes": cur.get("rss_bytes"), "connections": cur.get("connections")})
    return out


def histogram_bins(lat: Latencies, per_decade: int = BINS_PER_DECADE) -> list[list[float]]:
    """[low ms, high ms, count] bins, ``per_decade`` to each power of ten (each of the
    histogram's 2% buckets counted in the bin holding its upper bound)."""
    bins: dict[int, int] = {}
    for i, n in lat.counts.items():
        upper_ms = bucket_upper(i) * 1000
        b = math.ceil(math.log10(upper_ms) * per_decade - 1e-9)  # (an edge is its bin's top)
        bins[b] = bins.get(b, 0) + n
    return [[round(10 ** ((b - 1) / per_decade), 6), round(10 ** (b / per_decade), 6), n]
            for b, n in sorted(bins.items())]
