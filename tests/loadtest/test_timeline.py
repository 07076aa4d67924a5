"""The load test over time (``wsops.loadtest.timeline``, pure): shard ticks merged per second,
connections opened lined up on the shards' clocks, server CPU between readings, histogram bins
(what ``wsops loadtest --report`` charts)."""

from __future__ import annotations

from typing import Any

import pytest

from wsops.loadtest.latency import Latencies, bucket_of, bucket_upper
from wsops.loadtest.timeline import histogram_bins, opened_over_time, per_second, server_over_time


def _lat(*seconds: float) -> dict[str, int]:
    lat = Latencies()
    for s in seconds:
        lat.add(s)
    return {str(k): n for k, n in lat.counts.items()}


def _ms(seconds: float) -> float:
    """What a percentile reports for a sample of ``seconds``: its bucket's bound, in ms."""
    return round(bucket_upper(bucket_of(seconds)) * 1000, 3)


def test_shards_ticks_merge_into_one_point_per_second() -> None:
    a = {"ticks": [
        {"t": 0.3, "open": 5, "published": 10, "received": 40, "latency": _lat(0.001, 0.002)},
        {"t": 2.02, "open": 5, "published": 20, "received": 80, "latency": _lat(0.004)},
        {"t": 2.4, "open": 4, "published": 20, "received": 90, "latency": _lat(0.010)},
        {"t": 4.1, "open": 4, "published": 20, "received": 95, "latency": {}}]}
    b = {"ticks": [
        {"t": 0.98, "open": 3, "published": 6, "received": 12, "latency": _lat(0.003)},
        {"t": 2.0, "open": 3, "published": 9, "received": 30, "latency": _lat(0.010, 0.010)},
        {"t": 3.0, "open": 3, "published": 9, "received": 30, "latency": _lat(0.020)}]}
    points = per_second([a, b])
    assert [p["t"] for p in points] == [1, 2, 3, 4]  # (a's tick at 0.3 is second 1's)
    assert [p["open"] for p in points] == [8, 7, 7, 7]  # a shard's last count held
    assert [p["received"] for p in points] == [52, 120, 120, 125]
    assert [p["deliveries_per_second"] for p in points] == [52, 68, 0, 5]
    assert [p["latency_count"] for p in points] == [3, 4, 1, 0]
    assert points[0]["p50_ms"] == _ms(0.002) and points[0]["p99_ms"] == _ms(0.003)
    # Second 2: 4 ms (a), 10 ms (a's second tick) and 10 ms twice (b): the same bucket added up.
    assert (points[1]["p50_ms"], points[1]["p99_ms"]) == (_ms(0.010), _ms(0.010))
    assert points[2]["p999_ms"] == _ms(0.020)
    assert points[3]["p50_ms"] is None
    gap = per_second([{"ticks": [
        {"t": 1, "open": 1, "published": 10, "received": 10, "latency": {}},
        {"t": 4, "open": 1, "published": 20, "received": 30, "latency": {}}]}])
    assert [(p["t"], p["published_per_second"], p["deliveries_per_second"]) for p in gap] == [
        (1, 10, 10), (4, 3.3, 6.7)]  # per second over the 3 s between them
    assert per_second([{"ticks": []}, {}]) == []


def test_connections_opened_are_lined_up_on_the_shards_clocks() -> None:
    shards = [{"open_started": 100.0, "opened_at": {"0": 2, "2": 1}},
              {"open_started": 100.2, "opened_at": {"0": 4}},
              {"open_started": 0.0, "opened_at": {"0": 9}}]  # never began: not placed
    assert opened_over_time(shards) == [
        {"t": 0.0, "opened": 0}, {"t": 0.1, "opened": 2}, {"t": 0.2, "opened": 2},
        {"t": 0.3, "opened": 7}]
    assert opened_over_time([{"open_started": 5.0, "opened_at": {}}]) == []
    assert opened_over_time([{"open_started": 5.0}]) == []
    assert opened_over_time([]) == []


def test_server_cpu_is_a_share_of_a_core_between_readings() -> None:
    readings: list[dict[str, Any]] = [
                {"at": 10.0, "cpu_seconds": 1.0, "rss_bytes": 5, "connections": 2},
                {"at": 13.1234, "cpu_seconds": 2.1, "rss_bytes": 6, "connections": 3},
                {"error": "down"}, {"at": 14.0, "error": "refused"},
                {"at": 13.1234, "cpu_seconds": 2.5, "rss_bytes": 6},
                {"at": 13.5, "cpu_seconds": 2.52, "connections": 3},  # 0.38 s: too short
                {"at": 14.0, "cpu_seconds": 2.7, "connections": 3}]
    assert server_over_time(readings) == [
        {"t": 0.0, "cpu_percent": None, "rss_bytes": 5, "connections": 2},
        {"t": 3.12, "cpu_percent": 35.2, "rss_bytes": 6, "connections": 3},
        {"t": 3.12, "cpu_percent": None, "rss_bytes": 6, "connections": None},
        {"t": 3.5, "cpu_percent": None, "rss_bytes": None, "connections": 3},
        {"t": 4.0, "cpu_percent": 36.0, "rss_bytes": None, "connections": 3}]
    assert server_over_time([{"error": "down"}]) == []


def test_the_histogram_bins_hold_every_sample_in_tenths_of_a_decade() -> None:
    lat = Latencies()
    near_top = bucket_upper(593) * 0.999  # its bucket's bound 125.864 ms: just under 125.893
    near_bottom = bucket_upper(407) * 0.999  # 3.16424 ms: just over the edge 3.16228
    for s in (0.00105, 0.0011, 0.0019, 0.0095, near_bottom, near_top):
        lat.add(s)
    bins = histogram_bins(lat)
    assert bins == [[1.0, 1.258925, 2], [1.584893, 1.995262, 1],
                    [3.162278, 3.981072, 1], [7.943282, 10.0, 1], [100.0, 125.892541, 1]]
    for low, high, _ in bins:
        assert high == pytest.approx(low * 10 ** 0.1, rel=1e-6)
    assert histogram_bins(Latencies()) == []
