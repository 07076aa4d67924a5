"""RuntimeCollector: loop lag, process figures, GC hooks and tracemalloc on an injected registry."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import psutil  # type: ignore[import-untyped]
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.waits import until
from wsops.instrumentation.instrument import instrument
from wsops.instrumentation.runtime import RuntimeCollector, open_fds

MiB = 1 << 20
GAUGES = {
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
    "wsops_memory_per_connection_bytes",
    "wsops_gc_frozen_objects",
}
COUNTERS = {"process_cpu_seconds", "wsops_gc_collections", "wsops_gc_pause_seconds"}
TRACEMALLOC = {"wsops_tracemalloc_traced_bytes", "wsops_tracemalloc_peak_bytes"}


@dataclass
class Rig:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    live: int = 0
    calls: int = 0
    collector: RuntimeCollector = field(init=False)

    def __post_init__(self) -> None:
        self.collector = RuntimeCollector(live_connections=self.count, lag_interval=0.02)
        self.registry.register(self.collector)
        self.registry.register(self.collector.process)

    def count(self) -> int:
        self.calls += 1
        return self.live

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def parsed(self) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        """Family name -> {labels: value}, through prometheus_client's own text parser."""
        text = generate_latest(self.registry).decode()
        out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        for family in text_string_to_metric_families(text):
            assert family.type in {"gauge", "counter", "histogram"}
            for s in family.samples:
                out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
        return out


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    rig = Rig()
    await rig.collector.start()
    yield rig
    await rig.collector.stop()


def test_registering_describes_without_collecting() -> None:
    rig = Rig()
    assert rig.calls == 0
    with pytest.raises(ValueError, match="Duplicated"):
        rig.registry.register(RuntimeCollector(live_connections=lambda: 0))


def test_process_families_are_the_standard_names_and_yield_to_an_existing_collector() -> None:
    """The names prometheus-client's own ProcessCollector uses (generic dashboards find them);
    instrument() on a registry that has that collector already keeps it and adds none of its
    own (the scrape has each series once)."""
    ours = RuntimeCollector(live_connections=lambda: 0).process
    theirs = CollectorRegistry()
    ProcessCollector(registry=theirs)
    standard = {f.name for f in text_string_to_metric_families(generate_latest(theirs).decode())}
    assert {f.name for f in ours.describe()} == standard
    instrument(web.Application(), registry=theirs)
    text = generate_latest(theirs).decode()
    assert text.count("\nprocess_start_time_seconds ") == 1
    assert "wsops_event_loop_lag_seconds_count" in text
    fresh = CollectorRegistry()
    instrument(web.Application(), registry=fresh)
    assert fresh.get_sample_value("process_start_time_seconds") == psutil.Process().create_time()


async def test_exposition_parses_with_every_family_and_matches_get_sample_value(rig: Rig) -> None:
    assert not tracemalloc.is_tracing()
    text = generate_latest(rig.registry).decode()
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert families == {
        **dict.fromkeys(GAUGES, "gauge"),
        **dict.fromkeys(COUNTERS, "counter"),
        "wsops_event_loop_lag_seconds": "histogram",
        "wsops_gc_pause_duration_seconds": "histogram",
    }
    parsed = rig.parsed()
    for counter in ("wsops_gc_collections_total", "wsops_gc_pause_seconds_total"):
        assert {dict(k)["generation"] for k in parsed[counter]} == {"0", "1", "2"}
    assert parsed["process_max_fds"][()] == rig.value("process_max_fds")
    assert parsed["wsops_memory_per_connection_bytes"][()] == 0.0
    les = [dict(k)["le"] for k in parsed["wsops_event_loop_lag_seconds_bucket"]]
    assert les[-1] == "+Inf" and "0.25" in les and "1.0" in les
    count = rig.value("wsops_event_loop_lag_seconds_count")
    assert count is not None and parsed["wsops_event_loop_lag_seconds_count"][()] == count


async def test_blocking_the_loop_records_a_lag_of_at_least_the_block(rig: Rig) -> None:
    time.sleep(0.3)  # the deliberate block: the 0.02 s sleep wakes >= 0.28 s late
    await until(lambda: (rig.value("wsops_event_loop_lag_seconds_count") or 0) >= 1)
    count = rig.value("wsops_event_loop_lag_seconds_count")
    under = rig.value("wsops_event_loop_lag_seconds_bucket", le="0.25")
    assert count is not None and under is not None and count - under >= 1
    lag_sum = rig.value("wsops_event_loop_lag_seconds_sum")
    assert lag_sum is not None and lag_sum >= 0.25
    parsed = rig.parsed()
    over = parsed["wsops_event_loop_lag_seconds_count"][()]
    assert over - parsed["wsops_event_loop_lag_seconds_bucket"][(("le", "0.25"),)] >= 1
    p99 = rig.collector.snapshot()["loop_lag_p99_seconds"]
    assert p99 is not None and p99 >= 0.25


async def test_gc_collect_counts_a_generation_2_collection_and_its_pause(rig: Rig) -> None:
    before_n = rig.value("wsops_gc_collections_total", generation="2")
    before_s = rig.value("wsops_gc_pause_seconds_total", generation="2")
    before_snap = rig.collector.snapshot()
    gc.collect()
    after_n = rig.value("wsops_gc_collections_total", generation="2")
    after_s = rig.value("wsops_gc_pause_seconds_total", generation="2")
    assert before_n is not None and after_n is not None and after_n >= before_n + 1
    assert before_s is not None and after_s is not None and after_s > before_s
    parsed = rig.parsed()["wsops_gc_collections_total"]
    assert parsed[(("generation", "2"),)] >= after_n
    snap = rig.collector.snapshot()
    assert snap["gc_collections"] is not None and before_snap["gc_collections"] is not None
    assert snap["gc_collections"] > before_snap["gc_collections"]
    count = rig.value("wsops_gc_pause_duration_seconds_count", generation="2")
    assert count == after_n  # one observation per collection, its pause in the sum
    assert rig.value("wsops_gc_pause_duration_seconds_sum", generation="2") == after_s
    inf = rig.value("wsops_gc_pause_duration_seconds_bucket", generation="2", le="+Inf")
    assert inf == count


async def test_frozen_objects_are_counted_again_once_a_period() -> None:
    collector = RuntimeCollector(live_connections=lambda: 0, frozen_every=0.3)

    def frozen() -> float:
        family = next(f for f in collector.collect() if f.name == "wsops_gc_frozen_objects")
        return float(family.samples[0].value)

    gc.collect()
    gc.freeze()
    try:
        counted = gc.get_freeze_count()
        assert frozen() == counted > 0
    finally:
        gc.unfreeze()
    assert frozen() == counted  # the walk of the frozen objects is not done per scrape
    await asyncio.sleep(0.35)
    assert frozen() == 0


async def test_rss_cpu_and_fds_match_psutil(rig: Rig) -> None:
    proc = psutil.Process()
    cpu_before = sum(proc.cpu_times()[:2])
    rss = rig.value("process_resident_memory_bytes")
    cpu = rig.value("process_cpu_seconds_total")
    fds = rig.value("process_open_fds")
    assert rss is not None and cpu is not None and fds is not None
    assert abs(rss - proc.memory_info().rss) <= max(4 * MiB, 0.05 * rss)
    assert cpu_before - 0.01 <= cpu <= sum(proc.cpu_times()[:2]) + 0.01
    assert abs(fds - proc.num_fds()) <= 2
    assert rig.value("process_max_fds") == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert rig.value("process_virtual_memory_bytes") == pytest.approx(proc.memory_info().vms,
                                                                      rel=0.05)
    assert rig.value("process_start_time_seconds") == proc.create_time()
    pipes = [os.pipe() for _ in range(3)]
    try:
        more = rig.value("process_open_fds")
        assert more is not None and abs(more - fds - 6) <= 1
        assert abs(rig.parsed()["process_open_fds"][()] - more) <= 1
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)


async def test_memory_per_connection_is_rss_above_the_start_per_live_connection(
        rig: Rig) -> None:
    assert rig.value("wsops_memory_per_connection_bytes") == 0.0
    assert rig.collector.snapshot()["memory_per_connection_bytes"] == 0.0
    baseline = rig.collector.baseline_rss  # read by start(), before any "connection"
    assert 0 < baseline <= psutil.Process().memory_info().rss * 1.1
    grown = b"\x01" * (32 << 20)  # written pages: RSS grows by 32 MiB
    for live in (10, 20):
        rig.live = live
        snap = rig.collector.snapshot()
        rss = snap["rss_bytes"]
        assert rss is not None
        per_conn = snap["memory_per_connection_bytes"]
        assert per_conn is not None and per_conn == pytest.approx((rss - baseline) / live)
        assert per_conn >= 0.9 * len(grown) / live  # what grew, not the process's fixed cost
        assert per_conn < rss / live - baseline / live / 2
        scraped = rig.value("wsops_memory_per_connection_bytes")
        assert scraped == pytest.approx(
            (psutil.Process().memory_info().rss - baseline) / live, rel=0.05)
    del grown


async def test_the_baseline_is_taken_by_the_first_start_only(rig: Rig) -> None:
    first = rig.collector.baseline_rss
    await rig.collector.stop()
    kept = b"\x01" * (16 << 20)
    await rig.collector.start()
    assert rig.collector.baseline_rss == first
    del kept


async def test_tracemalloc_gauges_appear_only_while_tracing(rig: Rig) -> None:
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc already tracing (python -X tracemalloc)")
    assert rig.value("wsops_tracemalloc_traced_bytes") is None
    assert rig.collector.snapshot()["tracemalloc_traced_bytes"] is None
    tracemalloc.start()
    try:
        blob = bytearray(MiB)
        traced = rig.value("wsops_tracemalloc_traced_bytes")
        peak = rig.value("wsops_tracemalloc_peak_bytes")
        assert traced is not None and peak is not None and MiB <= traced <= peak
        assert "wsops_tracemalloc_traced_bytes" in rig.parsed()
        snap = rig.collector.snapshot()["tracemalloc_traced_bytes"]
        assert snap is not None and snap >= MiB
        del blob
    finally:
        tracemalloc.stop()
    assert rig.value("wsops_tracemalloc_peak_bytes") is None
    assert "wsops_tracemalloc_traced_bytes" not in rig.parsed()


async def test_stop_removes_the_gc_callback_and_ends_the_task() -> None:
    rig = Rig()
    hook = rig.collector._on_gc
    await rig.collector.start()
    await rig.collector.start()  # a second start neither doubles the hook nor the sampler
    assert gc.callbacks.count(hook) == 1
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "wsops-loop-lag"]
    assert len(tasks) == 1
    await rig.collector.stop()
    assert hook not in gc.callbacks
    assert tasks[0].done()
    frozen = rig.value("wsops_gc_collections_total", generation="2")
    gc.collect()
    assert rig.value("wsops_gc_collections_total", generation="2") == frozen
    await rig.collector.stop()  # idempotent
    assert rig.value("wsops_event_loop_lag_seconds_count") is not None


OUT_OF_FDS = """
import json, resource, socket, sys
from tests.support.waits import until
from wsops.instrumentation.instrument import instrument
from wsops.instrumentation.runtime import RuntimeCollector, open_fds
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
rc = RuntimeCollector(live_connections=lambda: 10)
before = rc.snapshot()
held = []
try:
    while True:
        held.append(socket.socket())
except OSError:
    pass
after = rc.snapshot()
for s in held:
    s.close()
print(json.dumps({"before": before, "after": after, "held": len(held)}))
"""


def test_out_of_descriptors_reports_the_last_reading_at_the_limit() -> None:
    """A process with every fd in use cannot open /proc: the stats still answer."""
    out = subprocess.run([sys.executable, "-c", OUT_OF_FDS], capture_output=True, text=True,
                         timeout=60, check=True)
    figures = json.loads(out.stdout)
    before, after = figures["before"], figures["after"]
    assert figures["held"] > 200
    assert after["open_fds"] == after["max_fds"] == 256
    assert after["rss_bytes"] == before["rss_bytes"] > 0


def test_open_fds_counts_like_psutil_with_thousands_open() -> None:
    proc = psutil.Process()
    held = [socket.socket() for _ in range(3000)]
    try:
        assert abs(open_fds(proc) - proc.num_fds()) <= 1
        assert open_fds(proc) >= 3000
    finally:
        for s in held:
            s.close()
