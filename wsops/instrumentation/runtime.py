"""Runtime health of the instrumented process: event-loop lag, memory, CPU, fds, GC, tracemalloc.

One custom collector that the caller registers on its own ``CollectorRegistry``. Process figures
are read only at scrape time (``collect()`` ~0.2 ms), so between scrapes they cost nothing; what
runs continuously is a lag sampler that wakes once per ``lag_interval`` (~0.4 us of work) and a GC
callback pair: ~2 us per collection, the same as a no-op callback, i.e. CPython's own cost of
calling back. Cheap enough to leave on in production.
"""

from __future__ import annotations

import asyncio
import bisect
import errno
import gc
import math
import os
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, cast

import psutil  # type: ignore[import-untyped]  # no stubs unless types-psutil is installed
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from wsops.memory_per_connection import memory_per_connection

LAG_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
LAG_WINDOW_SECONDS = 60.0
GC_PAUSE_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Bounds of ``wsops_gc_pause_duration_seconds``: a pause over 10 ms shows in every p99."""
"""How far back ``snapshot()["loop_lag_p99_seconds"]`` looks: recent, not since start."""

# Bucket labels formatted exactly as prometheus_client's own Histogram does (the helper is untyped).
_go_float = cast(Callable[[float], str], floatToGoString)


def open_fds(proc: Any) -> float:
    """Open descriptors of ``proc``: O(1) on Linux >= 6.2, which reports them as the size of
    ``/proc/PID/fd``; else psutil lists that folder (O(fds): 22 ms at 18K descriptors, a stall
    of the event loop on every scrape)."""
    try:
        size = os.stat(f"/proc/{proc.pid}/fd").st_size
    except OSError:
        size = 0
    return float(size) if size > 0 else float(proc.num_fds())


FROZEN_EVERY = 30.0
"""Seconds between two counts of the objects frozen out of collections: ``gc.get_freeze_count``
walks the whole permanent generation (at ~300K objects ~4.5 ms, two thirds of the CPU of a
``/metrics`` scrape, measured with py-spy), and the figure moves at the pace of connections
coming and going, not from one scrape to the next."""


class RuntimeCollector:
    """Prometheus collector (``collect``/``describe``) plus a dict ``snapshot`` for JSON stats.

    ``wsops_memory_per_connection_bytes`` is RSS above the process's RSS when the collector
    started (before the app served connections), divided by ``live_connections()``; 0 when
    there are no connections, which keeps the series continuous (no NaN, no gaps) while never
    tripping a ``>`` threshold. ``wsops.memory_per_connection`` says why, and from how many
    connections people are shown it (the gauge carries it from one up).
    """

    def __init__(
        self,
        *,
        live_connections: Callable[[], int],
        lag_interval: float = 0.5,
        lag_buckets: Sequence[float] = LAG_BUCKETS,
        process: psutil.Process | None = None,
        frozen_every: float = FROZEN_EVERY,
    ) -> None:
        if lag_interval <= 0:
            raise ValueError("lag_interval must be positive")
        self._frozen_every = frozen_every
        self._frozen_at = -math.inf
        self._frozen_count = 0
        self._live = live_connections
        self._interval = lag_interval
        self._proc: Any = process if process is not None else psutil.Process()
        self._bounds = sorted({float(b) for b in lag_buckets if not math.isinf(b)})
        self._bucket_counts = [0] * (len(self._bounds) + 1)  # the last one is +Inf
        self._lag_sum = 0.0
        self._recent: deque[float] = deque(maxlen=max(1, round(LAG_WINDOW_SECONDS / lag_interval)))
        self._gc_counts = [0, 0, 0]
        self._gc_pause = [0.0, 0.0, 0.0]
        # Pauses by generation and bucket (the last one is +Inf).
        self._gc_buckets = [[0] * (len(GC_PAUSE_BUCKETS) + 1) for _ in range(3)]
        self._gc_started: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_process = (0.0, 0.0, 0.0, math.inf, 0.0)
        self.process = ProcessFamilies(self._process, float(self._proc.create_time()))
        # RSS before any connection: read again by the first start(), just before serving.
        self.baseline_rss = float(self._proc.memory_info().rss)
        self._started = False

    async def start(self) -> None:
        """Start the lag sampler on the running loop and hook GC; sampling when this returns.

        The first start takes the process's RSS as the baseline of memory per connection."""
        if not self._started:
            self._started = True
            self.baseline_rss = float(self._proc.memory_info().rss)
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._sample_lag(), name="wsops-loop-lag")
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)
        await asyncio.sleep(0)  # lets the sampler arm its first sleep before the caller goes on

    async def stop(self) -> None:
        """Stop the sampler and unhook GC; counters keep their values. Safe to call twice."""
        while self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        self._gc_started = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})  # unlike ``await task``, never swallows our own cancel

    async def _sample_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            self._observe(max(0.0, loop.time() - expected))

    def _observe(self, lag: float) -> None:
        self._bucket_counts[bisect.bisect_left(self._bounds, lag)] += 1  # le is inclusive
        self._lag_sum += lag
        self._recent.append(lag)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        # Collections hold the GIL and never nest, so one start timestamp is enough.
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            generation = min(info["generation"], 2)
            pause = time.perf_counter() - self._gc_started
            self._gc_pause[generation] += pause
            self._gc_buckets[generation][bisect.bisect_left(GC_PAUSE_BUCKETS, pause)] += 1
            self._gc_counts[generation] += 1
            self._gc_started = None

    def _process(self) -> tuple[float, float, float, float, float]:
        """RSS, CPU seconds, open fds, the soft fd limit and virtual memory, in one /proc pass
        where possible.

        With every descriptor in use /proc cannot be read: the last reading stands, with the
        open fds at the limit, so a scrape still answers (and the fd alert fires) when the node
        is out of descriptors instead of failing with a 500.
        """
        try:
            with self._proc.oneshot():
                mem = self._proc.memory_info()
                times = self._proc.cpu_times()
                cpu = float(times.user + times.system)
                fds = open_fds(self._proc)
            soft = self._proc.rlimit(psutil.RLIMIT_NOFILE)[0]
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            rss, cpu, _, limit, vms = self._last_process
            return rss, cpu, limit, limit, vms
        self._last_process = (float(mem.rss), cpu, fds, math.inf if soft == psutil.RLIM_INFINITY
                              else float(soft), float(mem.vms))
        return self._last_process

    def _per_connection(self, rss: float) -> float:
        return memory_per_connection(rss, self.baseline_rss, self._live())

    def describe(self) -> Iterable[Metric]:
        """Every family this collector may emit, without samples, so registering reads nothing."""
        return list(self._families(sample=False))

    def collect(self) -> Iterable[Metric]:
        """Read the process and the accumulated samplers; called by the registry per scrape."""
        return self._families(sample=True)

    def _families(self, *, sample: bool) -> Iterator[Metric]:
        per_conn = self._per_connection(self._process()[0]) if sample else None
        yield GaugeMetricFamily(
            "wsops_memory_per_connection_bytes",
            "Resident memory above the process's at start (before it had connections), "
            "divided by live connections; 0 with no connections.",
            per_conn,
        )
        lag = HistogramMetricFamily(
            "wsops_event_loop_lag_seconds", "How late a sleep of lag_interval woke up."
        )
        gen_doc = " since the collector started, by generation."
        collections = CounterMetricFamily(
            "wsops_gc_collections_total", "Garbage collections" + gen_doc, labels=["generation"]
        )
        pauses = CounterMetricFamily(
            "wsops_gc_pause_seconds_total", "Time spent in GC" + gen_doc, labels=["generation"]
        )
        durations = HistogramMetricFamily(
            "wsops_gc_pause_duration_seconds", "Single garbage collections by how long each "
            "paused the process" + gen_doc, labels=["generation"])
        if sample:
            lag.add_metric([], self._cumulative(), self._lag_sum)
            for gen in range(3):
                collections.add_metric([str(gen)], float(self._gc_counts[gen]))
                pauses.add_metric([str(gen)], self._gc_pause[gen])
                durations.add_metric([str(gen)], self._cumulative_pauses(gen),
                                     self._gc_pause[gen])
        yield from (lag, collections, pauses, durations)
        yield GaugeMetricFamily(
            "wsops_gc_frozen_objects", "Objects frozen out of garbage collections (gc.freeze: "
            "state that lives as long as its connection; wsops serve freezes it).",
            value=self._frozen() if sample else None)
        if not sample or tracemalloc.is_tracing():
            traced, peak = tracemalloc.get_traced_memory() if sample else (None, None)
            doc = " by tracemalloc (only while it is tracing)."
            yield GaugeMetricFamily("wsops_tracemalloc_traced_bytes", "Memory traced" + doc, traced)
            yield GaugeMetricFamily(
                "wsops_tracemalloc_peak_bytes", "Peak memory traced" + doc, peak
            )

    def _frozen(self) -> int:
        """``gc.get_freeze_count()``, counted again at most every ``frozen_every`` seconds."""
        now = time.monotonic()
        if now - self._frozen_at >= self._frozen_every:
            self._frozen_count = gc.get_freeze_count()
            self._frozen_at = now
        return self._frozen_count

    def _cumulative_pauses(self, generation: int) -> list[tuple[str, float]]:
        out, total = [], 0
        bounds = [*GC_PAUSE_BUCKETS, math.inf]
        for bound, count in zip(bounds, list(self._gc_buckets[generation]), strict=True):
            total += count
            out.append((_go_float(bound), float(total)))
        return out

    def _cumulative(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, count in zip([*self._bounds, math.inf], list(self._bucket_counts), strict=True):
            total += count
            out.append((_go_float(bound), float(total)))
        return out

    def snapshot(self) -> dict[str, float | None]:
        """The same figures as a flat dict for a JSON stats endpoint (tracemalloc ones None when
        not tracing); ``loop_lag_p99_seconds`` is exact over the last ``LAG_WINDOW_SECONDS``."""
        rss, cpu, fds, max_fds, _ = self._process()
        recent = sorted(self._recent)
        p99 = recent[math.ceil(0.99 * len(recent)) - 1] if recent else 0.0
        traced, peak = tracemalloc.get_traced_memory() if tracemalloc.is_tracing() else (None, None)
        return {
            "rss_bytes": rss,
            "cpu_seconds": cpu,
            "open_fds": fds,
            "max_fds": max_fds,
            "loop_lag_p99_seconds": p99,
            "memory_per_connection_bytes": self._per_connection(rss),
            "gc_collections": float(sum(self._gc_counts)),
            "gc_pause_seconds": sum(self._gc_pause),
            "tracemalloc_traced_bytes": None if traced is None else float(traced),
            "tracemalloc_peak_bytes": None if peak is None else float(peak),
        }


class ProcessFamilies:
    """The standard ``process_*`` families (the names prometheus-client's ``ProcessCollector``
    and generic dashboards use) read from the runtime collector's one /proc pass, with its O(1)
    fd count. A collector of its own, so that a registry which already has a process collector
    (the global ``REGISTRY``) keeps that one: registering this one there raises ``ValueError``.
    """

    def __init__(self, read: Callable[[], tuple[float, float, float, float, float]],
                 started: float) -> None:
        self._read = read  # RuntimeCollector._process
        self._started = started

    def describe(self) -> Iterable[Metric]:
        return list(self._families(sample=False))

    def collect(self) -> Iterable[Metric]:
        return self._families(sample=True)

    def _families(self, *, sample: bool) -> Iterator[Metric]:
        rss = cpu = fds = max_fds = vms = started = None
        if sample:
            rss, cpu, fds, max_fds, vms = self._read()
            started = self._started
        yield GaugeMetricFamily("process_resident_memory_bytes", "Resident memory size in bytes.",
                                rss)
        yield GaugeMetricFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                                vms)
        yield GaugeMetricFamily("process_start_time_seconds",
                                "Start time of the process since unix epoch in seconds.", started)
        yield CounterMetricFamily("process_cpu_seconds_total",
                                  "Total user and system CPU time spent in seconds.", cpu)
        yield GaugeMetricFamily("process_open_fds", "Number of open file descriptors.", fds)
        yield GaugeMetricFamily("process_max_fds", "Maximum number of open file descriptors "
                                "(the soft RLIMIT_NOFILE).", max_fds)
